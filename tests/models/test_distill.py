"""Self-distillation: loss values, zero loss for identical models, gradient flow, token checks."""
import pytest
import torch

import videomamba as vm
from videomamba.checkpoint import load_checkpoint
from videomamba.models.distill import DistillLoss, DistillStudent, cosine_alignment_loss

SMALL = dict(depth=2, num_classes=5, num_frames=4, img_size=32)


def cfg(**kw):
    return vm.get_config("videomamba_tiny", **{**SMALL, "embed_dim": 32, **kw})


def test_cosine_alignment_loss_hand_computed():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 1.0], [-2.0, 0.0], [4.0, 3.0]])
    # 2 - 2cos: orthogonal 2, opposite 4, cos = 24/25 -> 2 - 48/25 = 0.08
    expected = (2.0 + 4.0 + 0.08) / 3
    assert cosine_alignment_loss(s, t).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        cosine_alignment_loss(s, t[:2])


def test_loss_is_zero_when_student_equals_teacher():
    torch.manual_seed(0)
    teacher = vm.VideoMamba(cfg())
    student = DistillStudent.from_classifier(teacher, teacher_dim=32)
    with torch.no_grad():                       # distill head = RMSNorm (scale only) -> identity
        student.distill_head[1].weight.copy_(torch.eye(32))
        student.distill_head[1].bias.zero_()
    student.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    _, feats = student(x, distill=True)
    assert DistillLoss(teacher)(feats, x).item() == pytest.approx(0.0, abs=1e-5)


def test_gradients_reach_student_and_head_never_teacher():
    torch.manual_seed(0)
    teacher = vm.VideoMamba(cfg(embed_dim=24))
    student = DistillStudent(cfg(), teacher_dim=24)
    loss_fn = DistillLoss(teacher)
    assert list(loss_fn.parameters()) == []                 # the teacher is not registered
    student.train()
    loss_fn.train()
    x = torch.randn(2, 3, 4, 32, 32)
    logits, feats = student(x, distill=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])) + 0.5 * loss_fn(feats, x)
    loss.backward()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert [n for n, p in student.named_parameters() if p.grad is None] == []
    assert student.distill_head[1].weight.grad.abs().sum() > 0


def test_plain_forward_returns_logits_for_evaluation():
    student = DistillStudent(cfg(), teacher_dim=16)
    out = student(torch.randn(1, 3, 4, 32, 32))
    assert out.shape == (1, 5)


def test_image_models():
    torch.manual_seed(0)
    icfg = vm.get_config("videomamba_image_tiny", embed_dim=32, depth=2, num_classes=3, img_size=32)
    teacher = vm.VideoMamba(icfg.replace(embed_dim=16))
    student = DistillStudent(icfg, teacher_dim=16)
    x = torch.randn(2, 3, 32, 32)
    logits, feats = student(x, distill=True)
    assert logits.shape == (2, 3) and feats.shape == (2, 1 + 4, 16)
    assert DistillLoss(teacher)(feats, x).item() > 0


def test_token_mismatch_is_a_clear_error():
    teacher = vm.VideoMamba(cfg(tubelet_size=2, embed_dim=16))
    student = DistillStudent(cfg(), teacher_dim=16)
    x = torch.randn(1, 3, 4, 32, 32)
    _, feats = student(x, distill=True)
    with pytest.raises(ValueError, match=r"student has 17 tokens, teacher 9"):
        DistillLoss(teacher)(feats, x)
    wide = DistillStudent(cfg(), teacher_dim=8)
    _, feats = wide(x, distill=True)
    with pytest.raises(ValueError, match="teacher_dim=16"):
        DistillLoss(vm.VideoMamba(cfg(embed_dim=16)))(feats, x)


def test_classifier_round_trip_drops_the_distill_head(tmp_path):
    torch.manual_seed(0)
    student = DistillStudent(cfg(), teacher_dim=16)
    torch.save(student.state_dict(), tmp_path / "student.pth")
    model = vm.VideoMamba(cfg())
    report = load_checkpoint(model, tmp_path / "student.pth")
    assert report.missing == []
    assert report.unexpected == []                   # the distillation head is a known auxiliary part
    assert sorted(report.skipped) == ["distill_head.0.weight", "distill_head.1.bias", "distill_head.1.weight"]
    x = torch.randn(1, 3, 4, 32, 32)
    student.eval(), model.eval()
    torch.testing.assert_close(model(x), student(x))
    torch.testing.assert_close(student.to_classifier()(x), student(x))
