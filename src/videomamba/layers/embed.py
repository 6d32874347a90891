"""Patch embedding and position-embedding tables, with resampling to other grids.

Shapes: spatial table (1, S, D) over an h x w grid, temporal table (1, t, D), joint table
(1, t*S, D) frame-major. Resampling keeps the cls row apart; callers slice it off first.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """Conv3d with kernel (k, p, p) and stride (k, s, s), s = p unless overlapping patches are asked
    for (Vim's stride-8 models): (B, C, T, H, W) -> (B, D, t, h, w), h = (H - p) // s + 1."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 1, in_chans: int = 3, embed_dim: int = 192,
                 stride: int | None = None):
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.stride = stride or patch_size
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=(tubelet_size, self.stride, self.stride))

    def forward(self, x):
        return self.proj(x)


def resample_spatial_pos(pos: torch.Tensor, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> torch.Tensor:
    """(1, h*w, D) -> (1, h'*w', D), bicubic (align_corners=False), as the release's loader."""
    if tuple(old_hw) == tuple(new_hw):
        return pos
    D = pos.shape[-1]
    grid = pos.reshape(1, old_hw[0], old_hw[1], D).permute(0, 3, 1, 2)            # (1, D, h, w)
    grid = F.interpolate(grid.float(), size=tuple(new_hw), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], D).to(pos.dtype)


def resample_temporal_pos(pos: torch.Tensor, new_t: int) -> torch.Tensor:
    """(1, t, D) -> (1, t', D), linear (align_corners=False)."""
    if pos.shape[1] == new_t:
        return pos
    out = F.interpolate(pos.float().transpose(1, 2), size=new_t, mode="linear", align_corners=False)
    return out.transpose(1, 2).to(pos.dtype)


def resample_joint_pos(pos: torch.Tensor, old_thw: tuple[int, int, int], new_thw: tuple[int, int, int]) -> torch.Tensor:
    """(1, t*h*w, D) frame-major -> (1, t'*h'*w', D): linear in time, then bicubic over each frame's
    (h, w) grid, both align_corners=False, as the release's loader resamples joint tables. A joint
    table built from factorised ones (spatial + temporal) thus resamples exactly as they do."""
    if tuple(old_thw) == tuple(new_thw):
        return pos
    (t, h, w), (t2, h2, w2) = old_thw, new_thw
    D = pos.shape[-1]
    x = pos.float().reshape(t, h * w, D)                                           # (t, S, D)
    if t != t2:
        x = F.interpolate(x.permute(1, 2, 0), size=t2, mode="linear", align_corners=False).permute(2, 0, 1)
    if (h, w) != (h2, w2):
        grid = x.reshape(t2, h, w, D).permute(0, 3, 1, 2)                          # (t', D, h, w)
        grid = F.interpolate(grid, size=(h2, w2), mode="bicubic", align_corners=False)
        x = grid.permute(0, 2, 3, 1)
    return x.reshape(1, t2 * h2 * w2, D).to(pos.dtype)


def sincos_table(n: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 1-D sinusoidal table (1, n, dim) (Vaswani et al.): sin on even, cos on odd channels."""
    position = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table.unsqueeze(0)
