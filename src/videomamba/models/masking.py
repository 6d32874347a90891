"""Token masks for masked pretraining (UMT style, OpenGVLab).

Glossary: B batch, t token frames (T / tubelet), h x w token grid per frame, S = h*w, N = t*S.

Every mask is bool (B, N) over the *patch* tokens in canonical frame-major order (index i*S + s),
True = masked (dropped from the student's input). The cls token is not part of the mask: it is
always visible. Every sample masks exactly the same number of tokens, which the student needs to
batch the visible tokens as one (B, N_vis, D) tensor.

Counts follow the release's generators (int() truncates, so the visible share is never below
1 - ratio; the count is int(ratio * N) with N multiplied out first, as there: 0.7 * 3 * 20
truncates to 41 but 0.7 * 60 to 42):

- ``random``:    int(ratio * N) tokens anywhere in the clip.
- ``tube``:      int(ratio * S) locations, the same in every frame ("tube" through time).
- ``frame_row``: int(ratio * h) whole rows per frame, drawn independently for each frame
                 (the release's ``TubeRowMaskingGenerator``).
- ``clip_row``:  int(ratio * h) whole rows, the same rows in every frame.
- ``random_row``: t * int(ratio * h) whole rows drawn over all t*h rows of the clip, so a frame can
                 lose more or fewer rows than another (the release's ``RandomRowMaskingGenerator``,
                 its ``random_row``).
- ``attention``: per frame, keep S - int(ratio * S) tokens drawn from the teacher's cls
                 attention by multinomial sampling without replacement (UMT: tokens the teacher
                 finds salient are kept more often, but not always). ``sampling="topk"`` keeps the
                 highest-attention tokens deterministically.

Row masks keep runs of visible tokens contiguous along the scan, which suits the mixer's causal
1-D convolution (it sees real neighbours rather than tokens from far apart).
"""
from __future__ import annotations

import torch

MASK_TYPES = ("random", "tube", "frame_row", "clip_row", "random_row", "attention")
_ALIASES = {"frame-row": "frame_row", "clip-row": "clip_row", "tube-row": "frame_row",
            "row": "frame_row", "attn": "attention"}


def canonical_mask_type(kind: str) -> str:
    k = _ALIASES.get(str(kind).lower(), str(kind).lower())
    if k not in MASK_TYPES:
        raise ValueError(f"mask type {kind!r} is not valid; expected one of {', '.join(MASK_TYPES)}")
    return k


def _check(grid, ratio: float) -> tuple[int, int, int]:
    if len(grid) != 3 or not all(isinstance(g, int) and g >= 1 for g in grid):
        raise ValueError(f"grid must be (t, h, w) positive integers, got {grid!r}")
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1) (the fraction of patch tokens dropped), got {ratio!r}")
    return tuple(grid)


def _choose(scores: torch.Tensor, k: int) -> torch.Tensor:
    """bool mask of the same shape as ``scores`` (..., n) with True at the k largest entries."""
    out = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k > 0:
        out.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return out


def num_masked(kind: str, grid: tuple[int, int, int], ratio: float) -> int:
    """How many of the t*h*w patch tokens a mask of this kind drops (the same for every sample)."""
    t, h, w = _check(grid, ratio)
    kind = canonical_mask_type(kind)
    S = h * w
    if kind == "random":
        return int(ratio * (t * S))
    if kind in ("tube", "attention"):
        return t * int(ratio * S)
    return t * int(ratio * h) * w                        # frame_row, clip_row, random_row


def make_mask(kind: str, batch_size: int, grid: tuple[int, int, int], ratio: float = 0.8, *,
              attention: torch.Tensor | None = None, sampling: str = "multinomial",
              generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A bool mask (B, t*h*w), True = masked. See the module docstring for the kinds.

    ``attention``: for ``kind="attention"``, non-negative weights (B, t*S) or (B, t, S) on the
    same grid, e.g. a teacher's last-layer cls-to-patch attention averaged over heads.
    ``generator``: a CPU generator, for reproducible masks; the result is moved to ``device``.
    """
    t, h, w = _check(grid, ratio)
    kind = canonical_mask_type(kind)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    S, B = h * w, batch_size
    device = device if device is not None else (attention.device if attention is not None else "cpu")

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    if kind == "random":
        mask = _choose(rand(B, t * S), int(ratio * (t * S)))
    elif kind == "tube":
        mask = _choose(rand(B, 1, S), int(ratio * S)).expand(B, t, S).reshape(B, t * S)
    elif kind == "frame_row":
        rows = _choose(rand(B, t, h), int(ratio * h))                                  # (B, t, h)
        mask = rows[..., None].expand(B, t, h, w).reshape(B, t * S)
    elif kind == "random_row":
        rows = _choose(rand(B, t * h), t * int(ratio * h))                            # (B, t*h)
        mask = rows.reshape(B, t, h, 1).expand(B, t, h, w).reshape(B, t * S)
    elif kind == "clip_row":
        rows = _choose(rand(B, 1, h), int(ratio * h))                                  # (B, 1, h)
        mask = rows[..., None].expand(B, t, h, w).reshape(B, t * S)
    else:
        mask = _attention_mask(attention, B, t, S, ratio, sampling, generator)
    return mask.to(device)


def _attention_mask(attention, B, t, S, ratio, sampling, generator) -> torch.Tensor:
    if attention is None:
        raise ValueError("mask type 'attention' needs attention= weights (B, t*S) from the teacher; "
                         "only teachers with attention (transformers ViT/CLIP models) provide them")
    if sampling not in ("multinomial", "topk"):
        raise ValueError(f"sampling must be 'multinomial' or 'topk', got {sampling!r}")
    if tuple(attention.shape) not in ((B, t * S), (B, t, S)):
        raise ValueError(f"attention must have shape {(B, t * S)} or {(B, t, S)} to match the token grid, "
                         f"got {tuple(attention.shape)}")
    a = attention.detach().float().reshape(B * t, S).cpu()
    if not torch.isfinite(a).all() or (a < 0).any():
        raise ValueError("attention weights must be finite and non-negative")
    keep = S - int(ratio * S)
    if sampling == "topk":
        kept = _choose(a, keep)
    else:
        # A relative floor lets multinomial draw `keep` distinct tokens even when fewer than
        # `keep` have non-zero attention, without visibly changing the others' odds.
        a = a + 1e-6 * a.sum(-1, keepdim=True).clamp_min(1e-30) / S
        idx = torch.multinomial(a, keep, replacement=False, generator=generator)      # (B*t, keep)
        kept = torch.zeros(B * t, S, dtype=torch.bool).scatter_(-1, idx, True)
    return (~kept).reshape(B, t * S)


def visible_positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) bool mask -> (B, N_vis) canonical indices of the visible tokens, in scan order."""
    B = mask.shape[0]
    keep = (~mask).sum(1)
    if not bool((keep == keep[0]).all()):
        raise ValueError("every sample must keep the same number of tokens")
    idx = torch.arange(mask.shape[1], device=mask.device).expand(B, -1)
    return idx[~mask].reshape(B, int(keep[0]))
