"""Recipe features on a tiny model: accumulation, checkpointing, bf16, EMA, regression, fine-tuning."""
import pytest
import torch

from videomamba.apps.evaluate import EvalOptions, evaluate
from videomamba.apps.predict import predict
from videomamba.engine import ConfigError, train
from videomamba.engine.ema import ModelEMA

from toy import TINY_MODEL, ToyVideos


def _ov(out_dir, **extra):
    o = {**TINY_MODEL, "data.num_frames": 4, "data.img_size": 32, "data.batch_size": 4, "data.num_workers": 0,
         "augment.mixup": 0, "augment.cutmix": 0, "augment.label_smoothing": 0.0, "optim.epochs": 1,
         "optim.lr": 1e-3, "optim.warmup_steps": 0, "optim.layer_decay": 1.0, "train.out_dir": str(out_dir),
         "train.deterministic": True, "train.progress": "none", "train.plots": False}
    o.update(extra)
    return o


def _weights(res):
    return {k: v.clone() for k, v in res.model.state_dict().items()}


def test_grad_accumulation_equals_large_batch(tmp_path):
    # Adam's first steps are ~lr * sign(grad), which amplifies rounding in near-zero gradients;
    # eps=1 makes the update ~lr * grad, so the weights compare the accumulated gradients themselves.
    lin = {"optim.eps": 1.0, "optim.lr": 0.1, "train.max_steps": 2}
    a = train(None, _ov(tmp_path / "a", **lin), train_dataset=ToyVideos(16))
    b = train(None, _ov(tmp_path / "b", **lin, **{"data.batch_size": 2, "optim.accum_steps": 2}),
              train_dataset=ToyVideos(16))
    wa, wb = _weights(a), _weights(b)
    assert a.step == b.step == 2
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=2e-6, rtol=1e-5), k
    # and a different batch split (half the batch, no accumulation) is a different run
    c = train(None, _ov(tmp_path / "c", **lin, **{"data.batch_size": 2}), train_dataset=ToyVideos(16))
    assert any(not torch.allclose(wa[k], v, atol=2e-6, rtol=1e-5) for k, v in _weights(c).items())


def test_grad_checkpointing_gives_the_same_run(tmp_path):
    extra = {"model.drop_path_rate": 0.2, "train.max_steps": 3}
    a = train(None, _ov(tmp_path / "a", **extra), train_dataset=ToyVideos(16))
    b = train(None, _ov(tmp_path / "b", **extra, **{"train.grad_checkpointing": True}), train_dataset=ToyVideos(16))
    for k, v in _weights(a).items():
        assert torch.allclose(v, b.model.state_dict()[k], atol=1e-6), k


def test_bf16_autocast_on_cpu_and_no_fp16(tmp_path):
    res = train(None, _ov(tmp_path / "a", **{"train.amp": "bf16", "train.max_steps": 2}), train_dataset=ToyVideos(8),
                val_dataset=ToyVideos(4, train=False))
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values())
    assert res.model.patch_embed.proj.weight.dtype == torch.float32          # master weights stay fp32
    with pytest.raises(ConfigError, match="fp16 is not supported on CPU"):
        train(None, _ov(tmp_path / "b", **{"train.amp": "fp16"}), train_dataset=ToyVideos(8))


def test_ema_update_rule():
    m = torch.nn.Linear(2, 1)
    ema = ModelEMA(m, decay=0.9)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.module.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_is_trained_and_evaluated(tmp_path):
    res = train(None, _ov(tmp_path, **{"train.ema": True, "train.ema_decay": 0.5, "train.max_steps": 3}),
                train_dataset=ToyVideos(16), val_dataset=ToyVideos(4, train=False))
    st = torch.load(res.checkpoint, weights_only=True)
    assert st["ema"] is not None
    for k, v in st["ema"].items():
        assert torch.equal(v, res.model.state_dict()[k])                     # the returned model is the EMA
    assert any(not torch.equal(st["ema"][k], st["model"][k]) for k in st["model"])


def test_regression_task_end_to_end(tmp_path):
    res = train(None, _ov(tmp_path, **{"task.type": "regression", "optim.epochs": 2}),
                train_dataset=ToyVideos(8, regression=True), val_dataset=ToyVideos(4, train=False, regression=True))
    assert res.model.num_classes == 1 and "mse" in res.metrics and res.best["metric"] == "mse"
    ev = evaluate(res.export_dir, dataset=ToyVideos(4, train=False, regression=True, views=2),
                  options=EvalOptions(progress=False), log=None)
    assert ev["n"] == 4 and ev["mse"] >= 0 and "top1" not in ev
    with pytest.raises(ConfigError, match="mixup/cutmix"):
        train(None, _ov(tmp_path, **{"task.type": "regression", "augment.mixup": 0.8}))


def test_fine_tune_from_pretrained_with_new_head(tmp_path):
    a = train(None, _ov(tmp_path / "a", **{"train.max_steps": 2}), train_dataset=ToyVideos(8))
    b = train(None, _ov(tmp_path / "b", **{"model.pretrained": str(a.export_dir), "optim.lr": 1e-12,
                                           "train.max_steps": 1}), train_dataset=ToyVideos(8, num_classes=2))
    assert b.model.head.weight.shape == (2, 32)
    wa = a.model.state_dict()
    for k, v in b.model.state_dict().items():
        if not k.startswith("head."):
            assert torch.allclose(v, wa[k], atol=1e-6), k


def test_evaluate_multi_view_and_shuffled(tmp_path):
    res = train(None, _ov(tmp_path, **{"train.max_steps": 2}), train_dataset=ToyVideos(8))
    ds = ToyVideos(8, train=False, views=3)
    ev = evaluate(res.export_dir, dataset=ds, log=None,
                  options=EvalOptions(shuffle_frames=True, out_dir=tmp_path / "eval", progress=False))
    assert ev["n"] == 8 and sum(map(sum, ev["confusion"])) == 8 and set(ev["per_class"]) == set(ds.classes)
    assert "shuffled" in ev and (tmp_path / "eval" / "eval_results.json").is_file()
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "confusion_shuffled.png").is_file() and (tmp_path / "eval" / "per_class.csv").is_file()
    # the averaged probabilities equal a manual 3-view average of the same model
    m = res.model.eval()
    with torch.no_grad():
        manual = torch.stack([torch.softmax(m(ds[i]["video"]), -1).mean(0) for i in range(8)])
    assert ev["top1"] == pytest.approx(100.0 * float((manual.argmax(-1) == ds.labels).float().mean()))
