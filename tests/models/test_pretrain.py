"""Masked pretraining: visible-token student, alignment decoder, targets, gradients, checkpoints."""
import pytest
import torch

import videomamba as vm
from videomamba.models.pretrain import VideoMambaPretrain, alignment_targets, masked_alignment_step
from videomamba.models.teachers import TeacherOutput, VideoMambaTeacher

SMALL = dict(embed_dim=32, depth=3, num_classes=5, num_frames=4, img_size=32)   # grid (4, 2, 2)


def cfg(**kw):
    return vm.get_config("videomamba_tiny", **{**SMALL, **kw})


class CodedTeacher(torch.nn.Module):
    """Teacher whose token i is the basis-like vector code(i): targets are easy to check by hand."""

    def __init__(self, dim=16, with_cls=True):
        super().__init__()
        self.dim, self.with_cls = dim, with_cls

    def forward(self, x, grid, need_attention=False):
        B, N = x.shape[0], grid[0] * grid[1] * grid[2]
        tok = torch.zeros(B, N, self.dim)
        tok[:, torch.arange(N), torch.arange(N) % self.dim] = 1.0 + torch.arange(N).float()
        cls = torch.full((B, self.dim), -1.0) if self.with_cls else None
        return TeacherOutput(tokens=tok, cls=cls)


def test_forward_shapes_and_unit_norm():
    torch.manual_seed(0)
    model = VideoMambaPretrain(cfg(), teacher_dim=16)
    assert model.cfg.num_classes == 0 and isinstance(model.head, torch.nn.Identity)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [1, 2, 5, 6, 9, 10, 13, 14]] = True
    out = model(torch.randn(2, 3, 4, 32, 32), mask)
    assert out.shape == (2, 1 + 8, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 9))
    names = [n for n, _ in model.named_parameters() if n.startswith("clip_decoder")]
    assert names == ["clip_decoder.0.head.weight", "clip_decoder.0.head.bias",
                     "clip_decoder.0.norm.weight", "clip_decoder.0.norm.bias"]


@pytest.mark.parametrize("cls_position,expected", [
    ("head", [-1, 0, 3, 4, 7]), ("middle", [0, 3, -1, 4, 7]), ("none", [0, 3, 4, 7])])
def test_cls_is_always_visible_at_its_place(cls_position, expected):
    model = VideoMambaPretrain(cfg(cls_position=cls_position), teacher_dim=8)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, [0, 3, 4, 7]] = False
    assert model.sequence_positions(mask)[0].tolist() == expected


def test_targets_are_the_teachers_tokens_at_visible_positions():
    model = VideoMambaPretrain(cfg(), teacher_dim=16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, [2, 5, 11, 15]] = False
    mask[1, [0, 1, 8, 9]] = False
    tout = CodedTeacher()(torch.zeros(2, 3, 4, 32, 32), (4, 2, 2))
    target, valid = alignment_targets(model, tout, mask)
    assert valid.tolist() == [True] * 5
    for b, vis in enumerate([[2, 5, 11, 15], [0, 1, 8, 9]]):
        assert target[b, 0].tolist() == [-1.0] * 16                             # teacher cls
        for j, i in enumerate(vis, start=1):
            assert target[b, j].argmax().item() == i % 16 and target[b, j].max().item() == 1.0 + i
    _, valid = alignment_targets(model, CodedTeacher(with_cls=False)(torch.zeros(2, 3, 4, 32, 32), (4, 2, 2)), mask)
    assert valid.tolist() == [False, True, True, True, True]                     # no teacher cls: skipped


def test_loss_is_zero_when_prediction_equals_target():
    model = VideoMambaPretrain(cfg(), teacher_dim=16)
    teacher = CodedTeacher()
    x = torch.randn(2, 3, 4, 32, 32)

    def perfect(x, mask):                     # a student that predicts the teacher exactly
        target, _ = alignment_targets(model, teacher(x, (4, 2, 2)), mask)
        return torch.nn.functional.normalize(target, dim=-1)

    out = masked_alignment_step(model, teacher, x, "random", 0.5, model_call=perfect)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)
    out = masked_alignment_step(model, teacher, x, "random", 0.5)
    assert 0.0 < out["loss"].item() <= 4.0


def test_gradients_reach_student_and_decoder_not_teacher():
    torch.manual_seed(0)
    teacher_model = vm.VideoMamba(cfg(embed_dim=16))
    teacher = VideoMambaTeacher(teacher_model)
    model = VideoMambaPretrain(cfg(), teacher_dim=16)
    model.train()
    teacher.train()                              # must stay frozen anyway
    out = masked_alignment_step(model, teacher, torch.randn(2, 3, 4, 32, 32), "tube", 0.5)
    out["loss"].backward()
    assert not teacher.training and not teacher_model.training
    assert all(p.grad is None and not p.requires_grad for p in teacher_model.parameters())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("layers.2.", "norm_f."))}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.clip_decoder[0].head.weight.grad.abs().sum() > 0
    assert out["mask"].sum(1).tolist() == [8, 8]


def test_unsupported_scan_order_is_rejected():
    with pytest.raises(ValueError, match="spatial_first"):
        VideoMambaPretrain(cfg(scan_order="temporal_first"), teacher_dim=8)


def test_teacher_width_mismatch_is_a_clear_error():
    model = VideoMambaPretrain(cfg(), teacher_dim=8)
    with pytest.raises(ValueError, match="teacher_dim=16"):
        masked_alignment_step(model, CodedTeacher(16), torch.randn(1, 3, 4, 32, 32))


@pytest.mark.parametrize("layout", ["ours", "release"])
def test_pretrain_checkpoint_fine_tunes_through_the_filter(tmp_path, layout):
    torch.manual_seed(0)
    pre = VideoMambaPretrain(cfg(), teacher_dim=16)
    sd = pre.state_dict()
    if layout == "release":          # the release names the final norm `norm` and wraps in 'model'
        sd = {("norm.weight" if k == "norm_f.weight" else k): v for k, v in sd.items()}
        sd = {"model": sd}
    torch.save(sd, tmp_path / "pt.pth")
    model = vm.create_model("videomamba_tiny", pretrained=tmp_path / "pt.pth", **SMALL)
    rep = model.load_report
    assert rep.missing == ["head.weight", "head.bias"]
    assert rep.unexpected == []                      # the decoder is a known auxiliary part: skipped
    assert sorted(rep.skipped) == ["clip_decoder.0.head.bias", "clip_decoder.0.head.weight",
                                   "clip_decoder.0.norm.bias", "clip_decoder.0.norm.weight"]
    ref = pre.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, ref[k]), k
    # the fine-tuned model computes the same tokens as the pretrained encoder
    x = torch.randn(1, 3, 4, 32, 32)
    pre.eval(), model.eval()
    torch.testing.assert_close(model.forward_features(x), pre.forward_features(x))


def test_pretrain_directory_fine_tunes_with_new_head(tmp_path):
    from videomamba.checkpoint import save_pretrained

    pre = VideoMambaPretrain(cfg(), teacher_dim=16)
    save_pretrained(pre, tmp_path / "pt")
    model = vm.create_model(None, pretrained=tmp_path / "pt", num_classes=7)
    assert model.cfg.num_classes == 7 and model.head.out_features == 7
    assert model.load_report.missing == ["head.weight", "head.bias"]
    assert torch.equal(model.layers[0].mixer.in_proj.weight, pre.layers[0].mixer.in_proj.weight)
