"""Self-distillation and masked pretraining through the training engine (in-memory data)."""
import pytest
import torch

import videomamba as vm
from videomamba.engine import train
from videomamba.engine.methods import DistillTask, build_method
from videomamba.engine.tasks import ClassificationTask
from videomamba.models.distill import DistillStudent

from toy import ToyVideos


def _ov(out_dir, **extra):
    o = {"model.embed_dim": 16, "model.depth": 2, "model.patch_size": 8, "data.num_frames": 4, "data.img_size": 32,
         "data.batch_size": 4, "data.num_workers": 0, "augment.mixup": 0, "augment.cutmix": 0,
         "optim.epochs": 1, "optim.lr": 1e-3, "optim.warmup_steps": 0, "train.out_dir": str(out_dir),
         "train.progress": "none", "train.plots": False, "train.threads": 2}
    o.update(extra)
    return o


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    res = train(None, _ov(out), train_dataset=ToyVideos(train=False), val_dataset=ToyVideos(8, train=False, seed=1))
    return res.export_dir


def test_distill_task_adds_the_weighted_term_and_teacher_sees_the_mixed_input():
    torch.manual_seed(0)
    cfg = vm.get_config("videomamba_tiny", embed_dim=16, depth=2, num_classes=4, num_frames=4, img_size=32,
                        patch_size=8)
    teacher = vm.VideoMamba(cfg.replace(embed_dim=8))
    seen = []
    orig = teacher.forward_features
    teacher.forward_features = lambda x, **kw: (seen.append(x.clone()), orig(x, **kw))[1]

    def mix(x, y):                                   # a deterministic "mixup": half of the flipped batch
        return 0.5 * (x + x.flip(0)), torch.nn.functional.one_hot(y, 4).float()

    task = DistillTask(ClassificationTask(4, mixup=mix), teacher, weight=0.25)
    student = DistillStudent(cfg, teacher_dim=8)
    batch = ToyVideos(2, train=False)[0], ToyVideos(2, train=False)[1]
    batch = {"video": torch.stack([b["video"] for b in batch]), "label": torch.tensor([0, 1])}
    out = task.train_step(student, batch, torch.device("cpu"))
    assert out["loss"].item() == pytest.approx(out["loss_task"].item() + 0.25 * out["loss_distill"].item(), rel=1e-6)
    x = batch["video"]
    torch.testing.assert_close(seen[0], 0.5 * (x + x.flip(0)))
    assert task.main_metric == "top1" and task.kind == "classification"


def test_distillation_run_exports_a_plain_classifier(teacher_dir, tmp_path):
    logs = []
    res = train(None, _ov(tmp_path / "s", **{"model.embed_dim": 24, "distill.teacher": str(teacher_dir),
                                             "distill.weight": 0.5, "train.progress": "log"}),
                train_dataset=ToyVideos(train=False), val_dataset=ToyVideos(8, train=False, seed=1), log=logs.append)
    assert any("self-distillation from" in line for line in logs)
    assert isinstance(res.model, DistillStudent)
    exported = vm.create_model(None, pretrained=res.export_dir)       # strict: no distill head left
    assert type(exported) is vm.VideoMamba and exported.cfg.embed_dim == 24
    from_ckpt = vm.create_model(None, pretrained=res.checkpoint).eval()                           # training checkpoint -> classifier
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(from_ckpt(x), exported.eval()(x))


def test_distill_teacher_must_produce_the_same_tokens(teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="patch_size 16 vs 8"):
        train(None, _ov(tmp_path / "s", **{"model.patch_size": 16, "distill.teacher": str(teacher_dir)}),
              train_dataset=ToyVideos(train=False), val_dataset=None)


def test_pretraining_then_fine_tuning(teacher_dir, tmp_path):
    logs = []
    res = train(None, _ov(tmp_path / "pt", **{"pretrain.teacher": str(teacher_dir), "pretrain.mask_type": "frame_row",
                                              "pretrain.mask_ratio": 0.5, "train.progress": "log"}),
                train_dataset=ToyVideos(train=False), val_dataset=ToyVideos(8, train=False, seed=1), log=logs.append)
    assert any("masked pretraining: frame_row masks at ratio 0.5" in line for line in logs)
    assert any("data.val is ignored" in line for line in logs)
    assert res.metrics == {}
    enc = vm.create_model(None, pretrained=res.export_dir)             # strict: encoder only, no decoder
    assert enc.cfg.num_classes == 0
    trained = res.model.state_dict()
    assert "clip_decoder.0.head.weight" in trained
    ft = vm.create_model(None, pretrained=res.export_dir, num_classes=4)
    assert ft.load_report.missing == ["head.weight", "head.bias"]
    torch.testing.assert_close(ft.layers[0].mixer.in_proj.weight, trained["layers.0.mixer.in_proj.weight"])
    # and through the trainer (model.pretrained): a fine-tuning run starts from the encoder
    logs = []
    train(None, _ov(tmp_path / "ft", **{"model.pretrained": str(res.export_dir), "train.progress": "log"}),
          train_dataset=ToyVideos(train=False), val_dataset=ToyVideos(8, train=False, seed=1), log=logs.append)
    assert any("missing (kept at init): head.weight, head.bias" in line for line in logs)


def test_build_method_and_config_errors(teacher_dir):
    from videomamba.engine.config import ConfigError, load_config

    assert build_method(load_config(None)) is None
    with pytest.raises(ConfigError, match="set for one of the two methods only"):
        load_config(None, {"distill.teacher": "a", "pretrain.teacher": "b"})
    with pytest.raises(ConfigError, match="pretrain.mask_ratio must be in"):
        load_config(None, {"pretrain.mask_ratio": 1.5})
    cfg = load_config(None, {"pretrain.teacher": str(teacher_dir), "pretrain.mask_type": "attention"})
    with pytest.raises(ValueError, match="needs a teacher with attention"):
        build_method(cfg)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_method(load_config(None, {"distill.teacher": "/nonexistent/teacher"}))
