"""The release's pretraining crop (TSN's multi-scale crop, ``GroupMultiScaleCrop`` in
``video_sm/datasets/transforms.py``), as pure tensor functions.

With ``base = min(H, W)``, candidate sides are ``int(base * s)`` for ``s`` in ``scales`` (a side
within 3 px of the output size snaps to it); a (width, height) pair is drawn uniformly from the
pairs whose scale indices differ by at most ``max_distort``; the box's corner is drawn from 13
fixed positions on a 4 x 4 grid of the free space (corners, centre, edge centres, quarter points).
Every frame gets the same box, which is resized (bilinear) to ``size x size``.
"""
from __future__ import annotations

import torch

from . import transforms as T

RELEASE_SCALES = (1.0, 0.875, 0.75, 0.66)


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int, more: bool = True) -> list[tuple[int, int]]:
    """The candidate (left, top) corners, in the release's order."""
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    out = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    if more:
        out += [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
                (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs)]
    return out


def crop_pairs(image_w: int, image_h: int, size: int, scales=RELEASE_SCALES, max_distort: int = 1) -> list[tuple[int, int]]:
    """The candidate (crop_w, crop_h) pairs."""
    base = min(image_w, image_h)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(x - size) < 3 else x for x in sides]
    return [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]


def multiscale_crop_params(height: int, width: int, size: int, scales=RELEASE_SCALES, max_distort: int = 1,
                           generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """A box ``(top, left, h, w)`` drawn as the release draws it."""
    pairs = crop_pairs(width, height, size, scales, max_distort)
    cw, ch = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
    cw, ch = min(cw, width), min(ch, height)
    offs = fixed_offsets(width, height, cw, ch)
    left, top = offs[int(torch.randint(len(offs), (1,), generator=generator))]
    return top, left, ch, cw


def multiscale_crop(clip: torch.Tensor, size: int, scales=RELEASE_SCALES, max_distort: int = 1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, size, size): one multi-scale box for every frame, resized."""
    top, left, h, w = multiscale_crop_params(clip.shape[-2], clip.shape[-1], size, scales, max_distort, generator)
    return T.resize(T.crop(clip, top, left, h, w), (size, size))
