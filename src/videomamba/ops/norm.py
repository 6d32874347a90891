"""RMSNorm with weight only and fp32 math: x * rsqrt(mean(x^2) + eps) * weight.

Glossary: D the normalised (last) dimension.

Without autograd, ``F.rms_norm`` on the fp32 input gives the reference's numbers (bit-identical
here) about 1.1-2x faster (benchmarks/bench_scan.py, aux section); under autograd its backward
was slower than the reference's, so training keeps the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(x, weight):
    if x.shape[-1:] != weight.shape:
        raise ValueError(f"weight must have shape (D,) = ({x.shape[-1]},), got {tuple(weight.shape)}")


def _out_dtype(x, weight):
    # The residual stream is fp32 and so is the weight: the output follows the weight.
    return weight.dtype if torch.is_floating_point(weight) else x.dtype


def rms_norm_ref(x, weight, eps: float = 1e-5):
    _check(x, weight)
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return out.to(_out_dtype(x, weight))


def rms_norm(x, weight, eps: float = 1e-5):
    """(..., D) -> (..., D) in the weight's dtype, computed in fp32."""
    _check(x, weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return rms_norm_ref(x, weight, eps)
    out = F.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps)
    return out.to(_out_dtype(x, weight))
