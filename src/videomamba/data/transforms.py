"""Clip transforms as pure tensor functions (plain torch, no torchvision).

Clips are ``(T, C, H, W)`` tensors, uint8 or float in [0, 255], until :func:`normalize`, which returns
the model layout ``(C, T, H, W)`` float32. Every random transform draws its parameters once per clip,
so all frames of a clip share one crop, one flip and one erased box.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 (re-exported)


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of every frame to ``size=(h, w)``, anti-aliased when shrinking; keeps the dtype."""
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be positive, got {size}")
    if clip.shape[-2:] == (h, w):
        return clip
    x = clip.float() if clip.dtype == torch.uint8 else clip
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return _as_uint8(x) if clip.dtype == torch.uint8 else x


def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """Output size that makes the shorter side ``short`` and keeps the aspect ratio."""
    if h <= w:
        return short, max(short, int(round(w * short / h)))
    return max(short, int(round(h * short / w))), short


def resize_short_side(clip: torch.Tensor, short: int) -> torch.Tensor:
    return resize(clip, short_side_size(clip.shape[-2], clip.shape[-1], short))


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    H, W = clip.shape[-2:]
    if top < 0 or left < 0 or top + height > H or left + width > W:
        raise ValueError(f"crop ({top}, {left}, {height}, {width}) does not fit a {H}x{W} frame")
    return clip[..., top:top + height, left:left + width]


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    H, W = clip.shape[-2:]
    if size > H or size > W:
        raise ValueError(f"centre crop {size} does not fit a {H}x{W} frame")
    return crop(clip, (H - size) // 2, (W - size) // 2, size, size)


def spatial_crops(clip: torch.Tensor, size: int, num_crops: int = 3) -> list[torch.Tensor]:
    """``num_crops`` square crops spread evenly along the long side, centred on the short side.

    One crop is the centre crop; three are the usual left/centre/right (or top/centre/bottom) views.
    """
    H, W = clip.shape[-2:]
    if size > H or size > W:
        raise ValueError(f"crop {size} does not fit a {H}x{W} frame; resize the short side first")
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    if num_crops == 1:
        return [center_crop(clip, size)]
    long_room = (W if W >= H else H) - size
    short_off = ((H if W >= H else W) - size) // 2
    out = []
    for k in range(num_crops):
        off = (k * long_room) // (num_crops - 1)
        top, left = (short_off, off) if W >= H else (off, short_off)
        out.append(crop(clip, top, left, size, size))
    return out


def random_resized_crop_params(height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """Inception-style crop box ``(top, left, h, w)``: area fraction ~ U(scale), log aspect ~ U(log ratio).

    Ten tries, then the largest centred box whose aspect lies within ``ratio``.
    """
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"bad random-resized-crop range: scale={scale}, ratio={ratio}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(clip: torch.Tensor, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop one random box (the same for every frame) and resize it to ``size x size``."""
    top, left, h, w = random_resized_crop_params(clip.shape[-2], clip.shape[-1], scale, ratio, generator)
    return resize(crop(clip, top, left, h, w), (size, size))


def hflip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(-1)


# Symmetries of a clip that a dataset may declare label maps for (``meta.json`` ``label_maps``).
SYMMETRIES = ("hflip", "vflip", "transpose", "reverse")


def apply_symmetry(clip: torch.Tensor, name: str) -> torch.Tensor:
    """A ``(T, C, H, W)`` clip mirrored left-right (``hflip``), top-bottom (``vflip``), across the main
    diagonal (``transpose``: rows become columns), or played backwards (``reverse``)."""
    if name == "hflip":
        return clip.flip(-1)
    if name == "vflip":
        return clip.flip(-2)
    if name == "transpose":
        return clip.transpose(-1, -2)
    if name == "reverse":
        return clip.flip(0)
    raise ValueError(f"unknown symmetry {name!r}; expected one of {SYMMETRIES}")


def normalize(clip: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(T, C, H, W) in [0, 255] -> float32 (C, T, H, W), ``(x / 255 - mean) / std`` per channel."""
    x = clip.permute(1, 0, 2, 3).to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    return x.sub_(m).div_(s).contiguous()


def random_erasing(x: torch.Tensor, prob: float = 0.25, scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3),
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``prob`` fill one box of a normalised (C, T, H, W) clip with N(0, 1) noise.

    The box is the same on every frame (a tube): a per-frame box could be filled in from neighbouring
    frames, which makes it a weaker regulariser for a temporal model. Returns a new tensor.
    """
    if prob <= 0 or float(torch.rand(1, generator=generator)) >= prob:
        return x
    C, T, H, W = x.shape
    area = H * W
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if 0 < h < H and 0 < w < W:
            top = int(torch.randint(0, H - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, W - w + 1, (1,), generator=generator))
            out = x.clone()
            out[:, :, top:top + h, left:left + w] = torch.randn((C, T, h, w), generator=generator,
                                                                 dtype=x.dtype)
            return out
    return x
