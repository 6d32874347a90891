"""Causal depthwise conv1d: x (B, E, L), weight (E, K), bias (E,) -> (B, E, L)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_ref(x, weight, bias=None, activation: str | None = None):
    """Left-pad by K-1 and keep the first L outputs; optional SiLU, as ``causal_conv1d_fn``."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    E, K = weight.shape
    L = x.shape[-1]
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=K - 1, groups=E)[..., :L]
    return F.silu(out) if activation else out


causal_conv1d = causal_conv1d_ref
