"""RMSNorm with weight only and fp32 math: x * rsqrt(mean(x^2) + eps) * weight.

Measured against ``F.rms_norm`` on fp32 (L, D) = (3137, 384), (8 * 1569, 384) and (12545, 768)
here: within noise of this code either way, so the reference is the only path.
"""
from __future__ import annotations

import torch


def rms_norm_ref(x, weight, eps: float = 1e-5):
    if x.shape[-1:] != weight.shape:
        raise ValueError(f"weight must have shape (D,) = ({x.shape[-1]},), got {tuple(weight.shape)}")
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return out.to(weight.dtype if torch.is_floating_point(weight) else x.dtype)


rms_norm = rms_norm_ref
