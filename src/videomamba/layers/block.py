"""Residual block "add -> norm -> mixer", RMSNorm and drop path."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.utils.checkpoint

from ..ops import rms_norm
from .mixer import FULL_FLIP, BiMambaMixer, ScanOrder


class RMSNorm(nn.Module):
    """Weight-only RMSNorm with fp32 math (eps 1e-5 as the release)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def drop_path(x, p: float, training: bool):
    """Stochastic depth per sample (the whole residual branch is dropped)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Block(nn.Module):
    """residual = residual + drop_path(hidden); hidden = mixer(norm(residual)).

    The residual stream is kept in fp32 (``residual_in_fp32`` in the release). A block may scan
    the tokens in more than one order (spatiotemporal v2); the outputs are averaged.
    """

    # Below this many tokens per batch (B * L) "auto" keeps the mixer's activations: recomputing
    # costs more time than the memory is worth for short clips.
    RECOMPUTE_MIN_TOKENS = 4096

    def __init__(self, dim: int, mixer: BiMambaMixer, drop_path: float = 0.0, eps: float = 1e-5,
                 mixer_recompute: str = "auto"):
        super().__init__()
        self.norm = RMSNorm(dim, eps)
        self.mixer = mixer
        self.drop_path = DropPath(drop_path)
        self.mixer_recompute = mixer_recompute

    def _mix(self, h, orders):
        out = self.mixer(h, orders[0])
        for o in orders[1:]:
            out = out + self.mixer(h, o)
        return out / len(orders) if len(orders) > 1 else out

    def forward(self, hidden, residual, orders: tuple[ScanOrder, ...] = (FULL_FLIP,)):
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        residual = residual.float()
        h = self.norm(residual)
        # Memory-light backward: keep only the mixer's input and recompute its intermediates
        # (xz, conv, delta, both scans: about 24*D floats per token) during backward, as
        # mamba_ssm's fused path recomputes its cheap intermediates.
        recompute = self.mixer_recompute == "always" or (
            self.mixer_recompute == "auto" and h.shape[0] * h.shape[1] >= self.RECOMPUTE_MIN_TOKENS)
        if recompute and torch.is_grad_enabled() and h.requires_grad:
            return torch.utils.checkpoint.checkpoint(self._mix, h, orders, use_reentrant=False), residual
        return self._mix(h, orders), residual
