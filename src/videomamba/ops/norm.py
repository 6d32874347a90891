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


def rms_norm(x, weight, eps: float = 1e-5, out: torch.Tensor | None = None):
    """(..., D) -> (..., D) in the weight's dtype, computed in fp32.

    ``out`` (no autograd; fp32 x and weight): a contiguous tensor of x's shape that receives the
    result. The reference's operations then run in it, in the same order (the same numbers, bit
    for bit), instead of allocating a temporary of x's size for each of them.
    """
    _check(x, weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        if out is not None:
            raise ValueError("out= is for inference: it cannot be used while autograd records the op")
        return rms_norm_ref(x, weight, eps)
    if out is not None and x.dtype == weight.dtype == out.dtype == torch.float32:
        if out.shape != x.shape or not out.is_contiguous():
            raise ValueError(f"out must be contiguous of shape {tuple(x.shape)}, got {tuple(out.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            torch.pow(x, 2, out=out)
            ms = out.mean(-1, keepdim=True).add_(eps).rsqrt_()
            return torch.mul(x, ms, out=out).mul_(weight)
    res = F.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps).to(_out_dtype(x, weight))
    return res if out is None else out.copy_(res)
