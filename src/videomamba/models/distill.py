"""Self-distillation (OpenGVLab): a student learns from a frozen, trained teacher's tokens.

The student is a VideoMamba with one extra head, ``distill_head = RMSNorm -> Linear(D_student,
D_teacher)`` (the release's parameter names ``distill_head.0`` / ``distill_head.1``), applied to
every final token. The teacher is a frozen VideoMamba that sees the same (mixed) input.

    loss = task loss + w * mean over tokens of (2 - 2 cos(student_i, teacher_i))

with both token sets L2-normalised (2 - 2 cos is the squared distance of unit vectors). Works for
video and image models alike; student and teacher must produce the same tokens (same frames,
resolution, patch, tubelet and cls placement).

The distill head only exists for training: :meth:`DistillStudent.to_classifier` returns the plain
VideoMamba, and the checkpoint filter drops ``distill_head.*`` keys when a classifier loads them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import RMSNorm
from .config import VideoMambaConfig
from .videomamba import VideoMamba


def cosine_alignment_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """mean of (2 - 2 cos) over all leading dims; inputs (..., C), normalised here in fp32."""
    if student.shape != teacher.shape:
        raise ValueError(f"student features {tuple(student.shape)} and teacher features "
                         f"{tuple(teacher.shape)} must have the same shape")
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    return (2.0 - 2.0 * (s * t).sum(-1)).mean()


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients: a teacher never trains (dropout / drop path off too)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class DistillStudent(VideoMamba):
    """A VideoMamba classifier with a distillation head on its final tokens.

    ``forward(x)`` returns logits as any classifier (evaluation needs nothing special);
    ``forward(x, distill=True)`` returns ``(logits, features)`` with features (B, L, D_teacher),
    not normalised. The flag goes through ``forward`` so that DistributedDataParallel sees the call.
    """

    def __init__(self, cfg: VideoMambaConfig, teacher_dim: int):
        super().__init__(cfg)
        if teacher_dim < 1:
            raise ValueError(f"teacher_dim must be a positive integer, got {teacher_dim!r}")
        self.teacher_dim = teacher_dim
        self.distill_head = nn.Sequential(RMSNorm(cfg.embed_dim, cfg.norm_eps), nn.Linear(cfg.embed_dim, teacher_dim))
        nn.init.trunc_normal_(self.distill_head[1].weight, std=0.02)
        nn.init.zeros_(self.distill_head[1].bias)

    @classmethod
    def from_classifier(cls, model: VideoMamba, teacher_dim: int) -> "DistillStudent":
        """Wrap an existing (e.g. pretrained) classifier, keeping its weights."""
        student = cls(model.cfg, teacher_dim)
        student.load_state_dict(model.state_dict(), strict=False)
        return student.to(next(model.parameters()).device)

    def to_classifier(self) -> VideoMamba:
        """The plain VideoMamba with the same weights (distill head dropped)."""
        model = VideoMamba(self.cfg).to(self.norm_f.weight.device)
        sd = {k: v for k, v in self.state_dict().items() if not k.startswith("distill_head.")}
        model.load_state_dict(sd)
        return model

    def layer_id(self, name: str) -> int:
        return self.cfg.depth + 1 if name.startswith("distill_head.") else super().layer_id(name)

    def forward(self, x: torch.Tensor, distill: bool = False):
        tokens = self.forward_features(x)                                        # (B, L, D)
        logits = self.forward_head(tokens)
        if not distill:
            return logits
        return logits, self.distill_head(tokens)                                 # (B, L, D_teacher)


def teacher_tokens(teacher: VideoMamba, x: torch.Tensor) -> torch.Tensor:
    """The frozen teacher's final (normalised) tokens (B, L, D_teacher), without gradients."""
    with torch.no_grad():
        return teacher.forward_features(x)


def check_compatible(student: VideoMamba, teacher: VideoMamba) -> None:
    """Fail early, naming the setting, when the two models cannot produce matching tokens."""
    s, t = student.cfg, teacher.cfg
    problems = []
    if s.patch_size != t.patch_size:
        problems.append(f"patch_size {s.patch_size} vs {t.patch_size}")
    if s.tubelet_size != t.tubelet_size:
        problems.append(f"tubelet_size {s.tubelet_size} vs {t.tubelet_size}")
    if s.cls_position != t.cls_position:
        problems.append(f"cls_position {s.cls_position!r} vs {t.cls_position!r}")
    if s.image != t.image:
        problems.append(f"image {s.image} vs {t.image}")
    if problems:
        raise ValueError("student and teacher must produce the same tokens for token distillation; "
                         "they differ in " + ", ".join(problems))


class DistillLoss(nn.Module):
    """mean (2 - 2 cos) between the student's distill features and the teacher's tokens on the
    same input (the caller weights it).

    The teacher is frozen here (eval, no grad) and kept out of ``parameters()`` and
    ``state_dict()`` of whoever owns this loss, so that no optimizer or checkpoint sees it.
    """

    def __init__(self, teacher: VideoMamba):
        super().__init__()
        self._teacher = [freeze(teacher)]      # a list hides it from module registration

    @property
    def teacher(self) -> VideoMamba:
        return self._teacher[0]

    def to(self, *args, **kwargs):
        self._teacher[0] = self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def forward(self, student_features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.teacher.training:      # someone called .train() on a parent: the teacher stays frozen
            self.teacher.eval()
        target = teacher_tokens(self.teacher, x)
        if student_features.shape[:2] != target.shape[:2]:
            raise ValueError(
                f"student has {student_features.shape[1]} tokens, teacher {target.shape[1]}: token "
                "distillation needs the same number of frames, resolution, patch size, tubelet and "
                "cls placement in both models")
        if student_features.shape[-1] != target.shape[-1]:
            raise ValueError(f"distill head outputs {student_features.shape[-1]} channels, teacher tokens have "
                             f"{target.shape[-1]}: build the student with teacher_dim={target.shape[-1]}")
        return cosine_alignment_loss(student_features, target)
