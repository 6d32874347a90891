"""Analytic parameter and multiply-add counts (the unit fvcore and the papers call "FLOPs").

Two conventions:
- ``papers``: what the papers' tables count. The scan runs in an opaque kernel that fvcore does
  not see, so only the ops around it count: patch embedding, in_proj, out_proj and the head.
  OpenGVLab's tables also count the two depthwise conv1d per block (with them the IN-1K figures
  1.1 / 4.3 / 12.7 G come out exactly; without them S and M give 4.2 / 12.6 G). KAIST's figures
  (34.2 / 68.5 G) are patch + in_proj + out_proj only. The convention follows the model family:
  joint position tables (KAIST) use KAIST's rule, the rest OpenGVLab's.
- ``full``: every linear and conv, plus the selective scan at 9*L*E*N per direction (mamba_ssm's
  own estimate).
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import VideoMambaConfig


@dataclass
class Counts:
    params: int
    tokens: int
    papers: float           # multiply-adds, papers' convention
    full: float             # multiply-adds, full count
    breakdown: dict         # op -> multiply-adds (full count)
    convention: str         # which papers' rule was applied

    def to_dict(self) -> dict:
        return {"params": self.params, "tokens": self.tokens, "gflops_papers": self.papers / 1e9,
                "gflops_full": self.full / 1e9, "convention": self.convention,
                "breakdown_gflops": {k: v / 1e9 for k, v in self.breakdown.items()}}


def count_params(cfg: VideoMambaConfig) -> int:
    """Parameters of the model as configured (position tables at the configured grid)."""
    D, E, N, R, K = cfg.embed_dim, cfg.d_inner, cfg.d_state, cfg.rank, cfg.d_conv
    t, h, w = cfg.grid
    S = h * w
    if cfg.conv_stem:                                                          # stem convs + GroupNorm
        widths = (cfg.in_chans, *cfg.conv_stem)
        n = sum(a * b * 9 + 3 * b for a, b in zip(widths, widths[1:]))
        n += 2 * cfg.conv_stem[-1] * cfg.tubelet_size * D + D                 # tubelet projection
    else:
        n = cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2 * D + D     # patch embed
    n += cfg.num_cls * D                                                       # cls token
    if cfg.pos_embed == "factorised":
        n += (cfg.num_cls + S) * D + (0 if cfg.image else t * D)
    elif cfg.pos_embed == "joint":
        n += (cfg.num_cls + t * S) * D
    per_dir = E * K + E + E * (R + 2 * N) + R * E + E + E * N + E              # conv, x_proj, dt_proj, A, D
    block = D + D * 2 * E + E * D + 2 * per_dir                                # norm, in/out proj, 2 branches
    n += cfg.depth * block + D                                                 # + norm_f
    if cfg.num_classes:
        n += D * cfg.num_classes + cfg.num_classes
    return n


def _patch_embed_flops(cfg: VideoMambaConfig, T: int, H: int, P: int) -> int:
    """Multiply-adds of the patch embedding: the linear patch kernel, or the stem's 3x3 convs (per frame,
    square frames) and its tubelet projection of the cell and frame maxima."""
    if not cfg.conv_stem:
        return P * cfg.in_chans * cfg.tubelet_size * cfg.patch_size ** 2 * cfg.embed_dim
    widths, n, side = (cfg.in_chans, *cfg.conv_stem), 0, H
    for a, b in zip(widths, widths[1:]):
        side = (side + 1) // 2
        n += T * side * side * a * b * 9
    return n + P * 2 * cfg.conv_stem[-1] * cfg.tubelet_size * cfg.embed_dim


def count_flops(cfg: VideoMambaConfig, num_frames: int | None = None, img_size: int | None = None) -> Counts:
    T = 1 if cfg.image else (num_frames or cfg.num_frames)
    H = img_size or cfg.img_size
    D, E, N, R, K = cfg.embed_dim, cfg.d_inner, cfg.d_state, cfg.rank, cfg.d_conv
    P = (T // cfg.tubelet_size) * cfg.grid_side(H) ** 2
    L = P + cfg.num_cls
    orders = 2 if cfg.scan_order == "spatiotemporal_v2" else 1                 # v2 runs the mixer twice
    bd = {
        "patch_embed": _patch_embed_flops(cfg, T, H, P),
        "in_proj": cfg.depth * orders * L * D * 2 * E,
        "out_proj": cfg.depth * orders * L * E * D,
        "conv1d": cfg.depth * orders * 2 * L * E * K,
        "x_proj": cfg.depth * orders * 2 * L * E * (R + 2 * N),
        "dt_proj": cfg.depth * orders * 2 * L * R * E,
        "scan": cfg.depth * orders * 2 * 9 * L * E * N,
        "head": D * cfg.num_classes,
    }
    convention = "kaist" if cfg.pos_embed == "joint" else "opengvlab"
    papers = bd["patch_embed"] + bd["in_proj"] + bd["out_proj"] + bd["head"]
    if convention == "opengvlab":
        papers += bd["conv1d"]
    return Counts(count_params(cfg), L, float(papers), float(sum(bd.values())), bd, convention)
