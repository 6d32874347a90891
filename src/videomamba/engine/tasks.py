"""Tasks turn a batch into a loss dict (training) or into per-video predictions (evaluation).

A batch is the data pipeline's collated dict: ``video`` (B, 3, T, H, W), or (B, V, 3, T, H, W)
with V views (repeated augmentation in training, clips x crops at test time); ``label`` (B,)
int (classification) or float (regression); ``index`` (B,); ``path``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def flatten_views(video: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B, V, 3, T, H, W) -> (B*V, 3, T, H, W), V; (B, 3, T, H, W) passes with V = 1, and so do
    image batches (B, 3, H, W)."""
    if video.dim() == 4:
        return video, 1
    if video.dim() == 6:
        B, V = video.shape[:2]
        return video.reshape(B * V, *video.shape[2:]), V
    if video.dim() != 5:
        raise ValueError(f"expected video (B, 3, T, H, W) or (B, V, 3, T, H, W), got {tuple(video.shape)}")
    return video, 1


def forward_views(model, x: torch.Tensor, view_batch: int | None, post=None) -> torch.Tensor:
    """``post(model(x))`` computed ``view_batch`` clips at a time and concatenated: peak activation
    memory follows ``view_batch``, not the number of clips x crops. ``None``: all at once."""
    post = post or (lambda out: out)
    if view_batch is None or view_batch >= x.shape[0]:
        return post(model(x))
    if view_batch < 1:
        raise ValueError(f"view_batch must be a positive integer or None, got {view_batch!r}")
    return torch.cat([post(model(chunk)) for chunk in x.split(int(view_batch))])


def shuffle_frames(video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Permute the frame axis of every clip independently: (..., C, T, H, W) -> same shape."""
    T = video.shape[-3]
    lead = video.shape[:-4]
    flat = video.reshape(-1, *video.shape[-4:])                                   # (N, C, T, H, W)
    perms = torch.argsort(torch.rand(flat.shape[0], T, generator=generator), dim=1)
    idx = perms.to(video.device)[:, None, :, None, None].expand_as(flat)
    return torch.gather(flat, 2, idx).reshape(*lead, *video.shape[-4:])


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class ClassificationTask:
    """Cross-entropy with label smoothing, or soft targets from mixup/cutmix."""

    kind = "classification"
    higher_is_better = True
    main_metric = "top1"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, mixup=None):
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = mixup  # callable (x, y) -> (x, soft targets) with smoothing folded in

    def train_step(self, model, batch: dict, device: torch.device) -> dict:
        x, V = flatten_views(batch["video"].to(device, non_blocking=True))
        y = batch["label"].to(device).long()
        if V > 1:
            y = y.repeat_interleave(V)
        if self.mixup is not None:
            x, target = self.mixup(x, y)
            logits = model(x)
            loss = soft_cross_entropy(logits, target)
            return {"loss": loss, "count": y.numel()}
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        correct = (logits.detach().argmax(-1) == y).sum()
        return {"loss": loss, "count": y.numel(), "correct": correct}

    @torch.no_grad()
    def predict(self, model, video: torch.Tensor, view_batch: int | None = None) -> torch.Tensor:
        """Softmax averaged over views: (B[, V], 3, T, H, W) -> (B, K) probabilities; the views go
        through the model ``view_batch`` at a time (:func:`forward_views`)."""
        B = video.shape[0]
        x, V = flatten_views(video)
        probs = forward_views(model, x, view_batch, lambda out: F.softmax(out.float(), dim=-1))
        return probs.reshape(B, V, -1).mean(1)


class RegressionTask:
    """Scalar regression (LVU like / views): MSE on a 1-output head, prediction averaged over views."""

    kind = "regression"
    higher_is_better = False
    main_metric = "mse"

    def __init__(self):
        self.num_classes = 1

    def train_step(self, model, batch: dict, device: torch.device) -> dict:
        x, V = flatten_views(batch["video"].to(device, non_blocking=True))
        y = batch["label"].to(device).float()
        if V > 1:
            y = y.repeat_interleave(V)
        out = model(x).float().reshape(-1)
        return {"loss": F.mse_loss(out, y), "count": y.numel()}

    @torch.no_grad()
    def predict(self, model, video: torch.Tensor, view_batch: int | None = None) -> torch.Tensor:
        B = video.shape[0]
        x, V = flatten_views(video)
        out = forward_views(model, x, view_batch, lambda o: o.float().reshape(-1))
        return out.reshape(B, V).mean(1, keepdim=True)                              # (B, 1)


def build_task(kind: str, num_classes: int, label_smoothing: float = 0.0, mixup=None):
    if kind == "regression":
        return RegressionTask()
    return ClassificationTask(num_classes, label_smoothing, mixup)
