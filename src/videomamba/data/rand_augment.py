"""RandAugment for clips, in plain torch on uint8 ``(T, 3, H, W)``.

The policy string follows timm's ``rand-m{M}-n{N}[-mstd{S}][-mmax{X}][-p{P}][-inc{0|1}]``, e.g. the
release's ``rand-m7-n4-mstd0.5-inc1``: N ops drawn with replacement from 15, each applied with
probability P (default 0.5) at magnitude M (out of 10) plus N(0, S) noise, clipped to [0, X]. ``inc1``
selects the variants whose strength grows with the magnitude. Each op's magnitude, sign and probability
are drawn once per clip and applied to every frame; ops that measure the image (AutoContrast, Equalize,
Contrast) measure each frame, as per-frame PIL ops do in the release.

Departures from the PIL-based original, chosen for speed: geometric ops sample bilinearly (the
original picks bilinear or bicubic at random), and pixel values are rounded, not truncated.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from .transforms import IMAGENET_MEAN

_LEVEL_DENOM = 10.0
_FILL = tuple(round(255 * m) for m in IMAGENET_MEAN)  # geometric ops fill with the mean colour
_TRANSLATE_PCT = 0.45

RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
                   "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                              "TranslateXRel", "TranslateYRel")


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as PIL's convert('L') computes it: (T,3,H,W) float -> (T,1,H,W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (r * 0.299 + g * 0.587 + b * 0.114).round_()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    return _to_u8(degenerate + (x - degenerate) * factor)


# -- ops: (clip uint8 (T,3,H,W), arg) -> uint8 ---------------------------------------------------
def auto_contrast(clip, _=None):
    x = clip.float()
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    out = ((x - lo) * scale).floor_().clamp_(0, 255)
    return torch.where(hi > lo, out, x).to(torch.uint8)


def equalize(clip, _=None):
    """PIL ImageOps.equalize per frame and channel (histogram lookup table, step from the last bin)."""
    T, C, H, W = clip.shape
    flat = clip.reshape(T * C, H * W).long()
    offs = torch.arange(T * C).unsqueeze(1) * 256
    hist = torch.bincount((flat + offs).reshape(-1), minlength=T * C * 256).view(T * C, 256)
    # count of the last non-empty bin of each histogram
    nz = hist > 0
    last_bin = 255 - nz.flip(1).int().argmax(1)
    last_count = hist.gather(1, last_bin.unsqueeze(1)).squeeze(1)
    step = (hist.sum(1) - last_count) // 255
    cum = torch.cumsum(hist, 1) - hist                    # pixels strictly below each bin
    lut = ((cum + (step // 2).unsqueeze(1)) // step.clamp_min(1).unsqueeze(1)).clamp_(0, 255)
    identity = torch.arange(256).expand(T * C, 256)
    lut = torch.where((step > 0).unsqueeze(1), lut, identity)
    return lut.gather(1, flat).to(torch.uint8).view(T, C, H, W)


def invert(clip, _=None):
    return 255 - clip


def posterize(clip, bits):
    bits = int(bits)
    if bits >= 8:
        return clip
    mask = (0xFF << (8 - max(bits, 0))) & 0xFF
    return clip & mask


def solarize(clip, thresh):
    return torch.where(clip < thresh, clip, 255 - clip)


def solarize_add(clip, add, thresh=128):
    added = (clip.int() + int(add)).clamp_(0, 255).to(torch.uint8)
    return torch.where(clip < thresh, added, clip)


def color(clip, factor):
    x = clip.float()
    return _blend(_gray(x).expand_as(x), x, factor)


def contrast(clip, factor):
    x = clip.float()
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True).add_(0.5).floor_()
    return _blend(mean.expand_as(x), x, factor)


def brightness(clip, factor):
    x = clip.float()
    return _blend(torch.zeros_like(x), x, factor)


def sharpness(clip, factor):
    """Blend with PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13); border pixels stay as they are."""
    x = clip.float()
    H, W = x.shape[-2:]
    if H < 3 or W < 3:
        return clip
    # 3x3 box sum from nine shifted views: far faster on CPU than a 1-channel conv2d
    box = sum(x[..., i:H - 2 + i, j:W - 2 + j] for i in range(3) for j in range(3))
    smooth = ((box + 4 * x[..., 1:-1, 1:-1]) / 13.0).round_()
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, factor)


def affine(clip, matrix, fill=_FILL):
    """Warp with ``matrix`` (2x3, output pixel centre -> input position, pixel units, origin top-left).

    Uncovered pixels get ``fill``; PIL's Image.transform(AFFINE) uses the same convention.
    """
    T, C, H, W = clip.shape
    a, b, c, d, e, f = [float(v) for v in matrix]
    # grid_sample works in u = 2 X / W - 1 (X continuous, pixel centres at i + 0.5); substituting
    # X = (u + 1) W / 2 into X_in = a X + b Y + c gives the rows below.
    theta = torch.tensor([[a, b * H / W, a + b * H / W + 2 * c / W - 1],
                          [d * W / H, e, d * W / H + e + 2 * f / H - 1]], dtype=torch.float32)
    # every frame gets the same warp: fold time into channels and sample once
    grid = F.affine_grid(theta.unsqueeze(0), [1, 1, H, W], align_corners=False)
    x = torch.cat([clip.float().reshape(1, T * C, H, W), torch.ones(1, 1, H, W)], 1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    img, cover = out[0, :T * C].view(T, C, H, W), out[0, T * C:]
    fill_t = torch.tensor(fill, dtype=torch.float32).view(1, C, 1, 1)
    return _to_u8(img + (1 - cover) * fill_t)


def rotate_matrix(degrees: float, height: int, width: int) -> tuple:
    """Output -> input matrix of a rotation about the frame centre, as PIL's Image.rotate builds it."""
    a = -math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = width / 2.0, height / 2.0
    # input = centre + [[cos, sin], [-sin, cos]] @ (output - centre)
    return (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)


def rotate(clip, degrees):
    """Counter-clockwise on screen for positive degrees, about the frame centre (PIL Image.rotate)."""
    return affine(clip, rotate_matrix(degrees, clip.shape[-2], clip.shape[-1]))


def shear_x(clip, factor):
    return affine(clip, (1, factor, 0, 0, 1, 0))


def shear_y(clip, factor):
    return affine(clip, (1, 0, 0, factor, 1, 0))


def translate_x_rel(clip, pct):
    return affine(clip, (1, 0, pct * clip.shape[-1], 0, 1, 0))


def translate_y_rel(clip, pct):
    return affine(clip, (1, 0, 0, 0, 1, pct * clip.shape[-2]))


# -- magnitude -> argument (timm's level functions) ---------------------------------------------
def _negate(v, g):
    return -v if float(torch.rand(1, generator=g)) > 0.5 else v


def _enhance_inc(m, g):
    return max(0.1, 1.0 + _negate((m / _LEVEL_DENOM) * 0.9, g))


def _solarize_level(m):
    return min(256, int((m / _LEVEL_DENOM) * 256))


_OPS = {
    "AutoContrast": (auto_contrast, lambda m, g: None),
    "Equalize": (equalize, lambda m, g: None),
    "Invert": (invert, lambda m, g: None),
    "Rotate": (rotate, lambda m, g: _negate((m / _LEVEL_DENOM) * 30.0, g)),
    "Posterize": (posterize, lambda m, g: int((m / _LEVEL_DENOM) * 4)),
    "PosterizeIncreasing": (posterize, lambda m, g: 4 - int((m / _LEVEL_DENOM) * 4)),
    "Solarize": (solarize, lambda m, g: _solarize_level(m)),
    "SolarizeIncreasing": (solarize, lambda m, g: 256 - _solarize_level(m)),
    "SolarizeAdd": (solarize_add, lambda m, g: min(128, int((m / _LEVEL_DENOM) * 110))),
    "Color": (color, lambda m, g: (m / _LEVEL_DENOM) * 1.8 + 0.1),
    "ColorIncreasing": (color, _enhance_inc),
    "Contrast": (contrast, lambda m, g: (m / _LEVEL_DENOM) * 1.8 + 0.1),
    "ContrastIncreasing": (contrast, _enhance_inc),
    "Brightness": (brightness, lambda m, g: (m / _LEVEL_DENOM) * 1.8 + 0.1),
    "BrightnessIncreasing": (brightness, _enhance_inc),
    "Sharpness": (sharpness, lambda m, g: (m / _LEVEL_DENOM) * 1.8 + 0.1),
    "SharpnessIncreasing": (sharpness, _enhance_inc),
    "ShearX": (shear_x, lambda m, g: _negate((m / _LEVEL_DENOM) * 0.3, g)),
    "ShearY": (shear_y, lambda m, g: _negate((m / _LEVEL_DENOM) * 0.3, g)),
    "TranslateXRel": (translate_x_rel, lambda m, g: _negate((m / _LEVEL_DENOM) * _TRANSLATE_PCT, g)),
    "TranslateYRel": (translate_y_rel, lambda m, g: _negate((m / _LEVEL_DENOM) * _TRANSLATE_PCT, g)),
}


class RandAugment:
    """Callable ``(clip uint8 (T,3,H,W), generator=None) -> uint8 clip``; see the module docstring."""

    def __init__(self, ops=RAND_INCREASING_TRANSFORMS, num_ops: int = 2, magnitude: float = 10.0,
                 magnitude_std: float = 0.0, magnitude_max: float = _LEVEL_DENOM, prob: float = 0.5):
        unknown = [o for o in ops if o not in _OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; known: {sorted(_OPS)}")
        self.ops, self.num_ops, self.magnitude = tuple(ops), int(num_ops), float(magnitude)
        self.magnitude_std, self.magnitude_max, self.prob = float(magnitude_std), float(magnitude_max), prob

    @classmethod
    def from_string(cls, spec: str) -> "RandAugment":
        """Parse ``rand-m7-n4-mstd0.5-inc1`` style policies (timm's grammar, without op weights)."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment policy must start with 'rand', got {spec!r}")
        kw = dict(num_ops=2, magnitude=10.0, magnitude_std=0.0, magnitude_max=_LEVEL_DENOM, prob=0.5)
        increasing = False
        for p in parts[1:]:
            m = re.fullmatch(r"(mstd|mmax|inc|m|n|p)([0-9.]+|inf)", p)
            if not m:
                raise ValueError(f"RandAugment policy {spec!r}: cannot parse {p!r} "
                                 "(expected m<int>, n<int>, mstd<float>, mmax<float>, p<float>, inc<0|1>)")
            key, val = m.groups()
            if key == "m":
                kw["magnitude"] = float(val)
            elif key == "n":
                kw["num_ops"] = int(val)
            elif key == "mstd":
                kw["magnitude_std"] = float(val)
            elif key == "mmax":
                kw["magnitude_max"] = float(val)
            elif key == "p":
                kw["prob"] = float(val)
            elif key == "inc":
                increasing = bool(int(val))
        return cls(RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS, **kw)

    def _magnitude(self, g) -> float:
        m = self.magnitude
        if self.magnitude_std == float("inf"):
            m = float(torch.rand(1, generator=g)) * m
        elif self.magnitude_std > 0:
            m = m + float(torch.randn(1, generator=g)) * self.magnitude_std
        return max(0.0, min(m, self.magnitude_max))

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[1] != 3:
            raise ValueError(f"RandAugment expects a uint8 (T, 3, H, W) clip, got {clip.dtype} "
                             f"{tuple(clip.shape)}")
        choice = torch.randint(0, len(self.ops), (self.num_ops,), generator=generator).tolist()
        for c in choice:
            if self.prob < 1.0 and float(torch.rand(1, generator=generator)) > self.prob:
                continue
            fn, level = _OPS[self.ops[c]]
            arg = level(self._magnitude(generator), generator)
            clip = fn(clip, arg)
        return clip

    def __repr__(self):
        return (f"RandAugment(n={self.num_ops}, m={self.magnitude}, mstd={self.magnitude_std}, "
                f"p={self.prob}, ops={list(self.ops)})")
