"""Batch-level mixup / cutmix with label smoothing, producing soft targets (timm's "batch" mode).

Each call draws one decision for the whole batch: with probability ``prob`` it mixes, choosing cutmix
with probability ``switch_prob`` when both are enabled; sample i is mixed with sample B-1-i (the batch
reversed). The cutmix box is the same on every frame, and lambda is corrected to the box's real area.
"""
from __future__ import annotations

import math

import torch


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) int -> (B, K) float: ``1 - smoothing + smoothing/K`` on the label, ``smoothing/K`` elsewhere."""
    if y.dtype.is_floating_point or y.ndim != 1:
        raise ValueError(f"labels must be a 1-D integer tensor of class indices, got {y.dtype} {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, dtype=torch.float32, device=y.device)
    return out.scatter_(1, y.unsqueeze(1), 1.0 - smoothing + off)


class Mixup:
    """Callable ``(x (B, 3, T, H, W), y (B,)) -> (x mixed, soft targets (B, K))``."""

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, switch_prob: float = 0.5,
                 prob: float = 1.0, label_smoothing: float = 0.1, num_classes: int = 1000,
                 generator: torch.Generator | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= prob <= 1 or not 0 <= switch_prob <= 1:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0; prob and switch_prob in [0, 1]")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.switch_prob, self.prob = float(switch_prob), float(prob)
        self.label_smoothing, self.num_classes = float(label_smoothing), int(num_classes)
        self.generator = generator

    def _rand(self) -> float:
        return float(torch.rand(1, generator=self.generator))

    def _beta(self, alpha: float) -> float:
        # Beta(a, a) from two gammas, so the draw follows the same torch generator as everything else.
        g = _gamma(torch.tensor([alpha, alpha], dtype=torch.float64), self.generator)
        return float(g[0] / g.sum())

    def _params(self) -> tuple[float, bool]:
        """(lambda, use_cutmix); lambda 1.0 means no mixing."""
        if self.prob <= 0 or (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0) or self._rand() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = self._rand() < self.switch_prob
        else:
            cutmix = self.cutmix_alpha > 0
        return self._beta(self.cutmix_alpha if cutmix else self.mixup_alpha), cutmix

    def _box(self, H: int, W: int, lam: float) -> tuple[int, int, int, int]:
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy = int(torch.randint(0, H, (1,), generator=self.generator))
        cx = int(torch.randint(0, W, (1,), generator=self.generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        return y0, y1, x0, x1

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"Mixup expects x of shape (B, 3, T, H, W), got {tuple(x.shape)}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"batch sizes differ: x has {x.shape[0]}, y has {y.shape[0]}")
        lam, cutmix = self._params()
        if lam < 1.0:
            x = x.clone()
            if cutmix:
                y0, y1, x0, x1 = self._box(x.shape[-2], x.shape[-1], lam)
                x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / (x.shape[-2] * x.shape[-1])
            else:
                x = x * lam + x.flip(0) * (1.0 - lam)
        t = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        targets = t * lam + t.flip(0) * (1.0 - lam)
        self.last_lam = lam
        return x, targets


def _gamma(alpha: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(alpha, 1) by Marsaglia-Tsang, drawn from ``generator`` (torch's own sampler takes none)."""
    out = []
    for a in alpha.tolist():
        boost = 1.0
        if a < 1.0:
            boost = float(torch.rand(1, generator=generator, dtype=torch.float64)) ** (1.0 / a)
            a += 1.0
        d = a - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            z = float(torch.randn(1, generator=generator, dtype=torch.float64))
            v = (1.0 + c * z) ** 3
            if v <= 0:
                continue
            u = float(torch.rand(1, generator=generator, dtype=torch.float64))
            if math.log(max(u, 1e-300)) < 0.5 * z * z + d - d * v + d * math.log(v):
                out.append(d * v * boost)
                break
    return torch.tensor(out, dtype=torch.float64)
