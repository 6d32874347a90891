"""RMSNorm with weight only and fp32 math: x * rsqrt(mean(x^2) + eps) * weight."""
from __future__ import annotations

import torch


def rms_norm_ref(x, weight, eps: float = 1e-5):
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return out.to(weight.dtype if torch.is_floating_point(weight) else x.dtype)


rms_norm = rms_norm_ref
