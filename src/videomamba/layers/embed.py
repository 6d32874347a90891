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
    for (Vim's stride-8 models): (B, C, T, H, W) -> (B, D, t, h, w), h = (H - p) // s + 1.

    ``stem`` (channels, not in the release): a convolutional stem first (:class:`ConvStem`). Each frame
    goes through 3x3 convolutions of stride 2 (GroupNorm, ReLU) with these widths; every patch gets the
    maximum of the last map over its own cell and over the whole frame, and a (k, 1, 1) convolution over
    the tubelet's frames projects the two to D. The grid is the plain patch embedding's. Filters shared
    across positions see an object the same wherever it falls, and the frame-wide maximum gives every
    patch the whole object when it straddles patches; small models trained from scratch then learn
    shapes in hundreds of steps instead of thousands (see ``configs/demo_retrieval.yaml``)."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 1, in_chans: int = 3, embed_dim: int = 192,
                 stride: int | None = None, stem: tuple[int, ...] = ()):
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.stride = stride or patch_size
        if stem:
            self.stem = ConvStem(in_chans, stem, pool=stem_pool(patch_size, stride, stem))
            self.proj = nn.Conv3d(2 * stem[-1], embed_dim, kernel_size=(tubelet_size, 1, 1),
                                  stride=(tubelet_size, 1, 1))
        else:
            self.stem = None
            k = (tubelet_size, patch_size, patch_size)
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=(tubelet_size, self.stride, self.stride))

    def forward(self, x):
        if self.stem is not None:
            x = self.stem(x)
        elif self._as_matmul(x):
            return self._unfolded(x)
        return self.proj(x)

    def _as_matmul(self, x) -> bool:
        """Non-overlapping patches under CPU bf16 autocast: there the same product as one matrix
        multiplication of the unfolded patches ran faster than oneDNN's bf16 conv3d at every width
        and frame count measured, up to several times at 64 frames and D >= 384
        (``benchmarks/bench_patch_embed.py``); fp32 keeps the conv."""
        return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16
                and tuple(self.proj.stride) == tuple(self.proj.kernel_size))

    def _unfolded(self, x):
        """The conv's output (B, D, t, h, w) as unfolded patches @ weight^T (a view of (B, t, h, w, D))."""
        B, C, T, H, W = x.shape
        k, p, q = self.proj.kernel_size
        t, h, w = T // k, H // p, W // q
        if t == 0 or h == 0 or w == 0:
            return self.proj(x)              # the conv's own error for an input smaller than a patch
        x = x[:, :, :t * k, :h * p, :w * q]  # the conv drops what does not fill a patch
        # (B, C, t, k, h, p, w, q) -> (B, t, h, w, C, k, p, q): the weight's (C, k, p, q) order
        patches = x.reshape(B, C, t, k, h, p, w, q).permute(0, 2, 4, 6, 1, 3, 5, 7).to(torch.bfloat16)
        D = self.proj.out_channels
        out = F.linear(patches.reshape(B * t * h * w, C * k * p * q), self.proj.weight.reshape(D, -1),
                       self.proj.bias)
        return out.view(B, t, h, w, D).permute(0, 4, 1, 2, 3)


def stem_pool(patch_size: int, stride: int | None, stem: tuple[int, ...]) -> int:
    """Cells of a conv stem's last map per patch side; ValueError for a geometry the stem cannot tile."""
    n = 2 ** len(stem)
    if stride not in (None, patch_size) or patch_size % n:
        raise ValueError(f"conv_stem of {len(stem)} stride-2 layers needs non-overlapping patches (no patch_stride) "
                         f"whose size is a multiple of {n}; got patch_size={patch_size}, patch_stride={stride}")
    return patch_size // n


class ConvStem(nn.Module):
    """(B, C, T, H, W) -> (B, 2c, T, h, w): per frame, a stride-2 3x3 conv + GroupNorm + ReLU for each
    width in ``channels`` (c the last), then for each ``pool`` x ``pool`` cell of the last map its
    maximum (channels :c) and the maximum over the whole frame (channels c:, the same for every cell).
    h = H // (2^n pool) for H a multiple of the patch."""

    def __init__(self, in_chans: int, channels: tuple[int, ...], pool: int):
        super().__init__()
        layers, c_in = [], in_chans
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(math.gcd(8, c), c), nn.ReLU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.pool = pool

    def forward(self, x):
        B, C, T, H, W = x.shape
        f = self.body(x.transpose(1, 2).reshape(B * T, C, H, W))                 # (B*T, c, H', W')
        cell = F.max_pool2d(f, self.pool) if self.pool > 1 else f                 # (B*T, c, h, w)
        frame = f.amax((2, 3), keepdim=True).expand_as(cell)
        y = torch.cat([cell, frame], 1)
        return y.reshape(B, T, *y.shape[1:]).transpose(1, 2)


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
