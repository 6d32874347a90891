"""A second, deliberately plain VideoMamba forward, written from the papers' definitions, to test
the model's switches against.

Glossary: B batch, C channels, T frames, k tubelet, p patch, t = T/k, h x w patch grid, S = h*w,
P = t*S patch tokens, L tokens, D width, E inner width, N state size, R dt rank.

Nothing here calls the model's own code paths: patches are folded by reshaping the video (no
Conv3d), position rows are looked up token by token, the cls token is inserted by hand, the scan
orders are spelled out with loops over (frame i, location s), each direction is gathered in its
visiting order and run through the sequential oracle ``selective_scan_ref`` with ``F.conv1d``,
and the result is scattered back. Only the parameters are shared with the model under test.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from videomamba.ops import selective_scan_ref


def fold_patches(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int, p: int) -> torch.Tensor:
    """(B, C, T, H, W) video -> (B, t, h, w, D): each k x p x p tubelet flattened (C, k, p, p) and
    multiplied by the Conv3d weight (D, C, k, p, p) read as a (D, C*k*p*p) matrix."""
    B, C, T, H, W = x.shape
    t, h, w = T // k, H // p, W // p
    cubes = x.reshape(B, C, t, k, h, p, w, p).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, t, h, w, C * k * p * p)
    return cubes @ weight.reshape(weight.shape[0], -1).t() + bias


def sinusoid(pos: int, channel: int, dim: int) -> float:
    """Vaswani et al.: PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(same angle)."""
    i = channel // 2
    angle = pos / 10000 ** (2 * i / dim)
    return math.sin(angle) if channel % 2 == 0 else math.cos(angle)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    return torch.tensor([[sinusoid(j, c, dim) for c in range(dim)] for j in range(n)], dtype=torch.float64)


def cls_slot(cls_position: str, P: int) -> int | None:
    """Where the cls token sits among L = P + 1 tokens: first (OpenGVLab), middle (Vim), none."""
    return {"head": 0, "middle": P // 2, "none": None}[cls_position]


def embeddings(model, x: torch.Tensor) -> torch.Tensor:
    """Tokens entering the first block, (B, L, D), canonical order (frame-major, cls at its slot)."""
    cfg = model.cfg
    k, p = cfg.tubelet_size, cfg.patch_size
    tok = fold_patches(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, k, p)
    B, t, h, w, D = tok.shape
    S, c = h * w, cfg.num_cls
    rows = []
    for i in range(t):
        for yy in range(h):
            for xx in range(w):
                s = yy * w + xx
                v = tok[:, i, yy, xx]
                if cfg.pos_embed == "factorised":       # spatial row c + s, temporal row i
                    v = v + model.pos_embed[0, c + s]
                    if model.temporal_pos_embedding is not None:
                        v = v + model.temporal_pos_embedding[0, i]
                elif cfg.pos_embed == "joint":          # one row per (frame, location)
                    v = v + model.pos_embed[0, c + i * S + s]
                elif cfg.pos_embed == "sinusoidal":     # fixed row c + i*S + s
                    v = v + torch.tensor([sinusoid(c + i * S + s, ch, D) for ch in range(D)], dtype=v.dtype)
                rows.append(v)
    ci = cls_slot(cfg.cls_position, len(rows))
    if ci is not None:
        cls = model.cls_token[0, 0].expand(B, D)
        if cfg.pos_embed in ("factorised", "joint"):
            cls = cls + model.pos_embed[0, 0]
        elif cfg.pos_embed == "sinusoidal":
            cls = cls + torch.tensor([sinusoid(0, ch, D) for ch in range(D)], dtype=cls.dtype)
        rows.insert(ci, cls)
    return torch.stack(rows, dim=1)


def visiting_orders(scan: str, backward: str, t: int, S: int, ci: int | None) -> tuple[list[int], list[int]]:
    """(forward, backward) visiting sequences of canonical token positions for one mixer.

    Forward: spatial-first visits frame by frame, temporal-first location by location (the frames
    of location 0, then of location 1, ...). Backward (KAIST §4.4): the full flip reverses the forward
    sequence; spatial reversal keeps the frame order and reverses the locations; temporal reversal
    reverses the frames and keeps the locations. The cls token keeps its slot ci in the forward
    sequence and takes the mirrored slot L-1-ci in the backward one (the release: scanned first and last).
    """
    if scan == "spatial_first":
        fwd_cells = [(i, s) for i in range(t) for s in range(S)]
    elif scan == "temporal_first":
        fwd_cells = [(i, s) for s in range(S) for i in range(t)]
    else:
        raise ValueError(scan)
    if backward == "full_flip":
        bwd_cells = fwd_cells[::-1]
    elif backward == "spatial_reversal":
        bwd_cells = [(i, S - 1 - s) for i, s in fwd_cells]
    elif backward == "temporal_reversal":
        bwd_cells = [(t - 1 - i, s) for i, s in fwd_cells]
    else:
        raise ValueError(backward)

    def canonical(i, s):
        q = i * S + s
        return q + 1 if ci is not None and q >= ci else q

    fwd = [canonical(i, s) for i, s in fwd_cells]
    bwd = [canonical(i, s) for i, s in bwd_cells]
    if ci is not None:
        L = t * S + 1
        fwd.insert(ci, ci)
        bwd.insert(L - 1 - ci, ci)
    return fwd, bwd


def layer_scans(scan_order: str, layer: int) -> list[str]:
    """The forward orders a layer runs: one, alternating by layer (v1), or both (v2)."""
    if scan_order == "spatiotemporal_v1":
        return ["spatial_first" if layer % 2 == 0 else "temporal_first"]
    if scan_order == "spatiotemporal_v2":
        return ["spatial_first", "temporal_first"]
    return [scan_order]


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def branch(mixer, x: torch.Tensor, z: torch.Tensor, order: list[int], sfx: str) -> torch.Tensor:
    """One direction: gather (B, L, E) tokens in visiting order, conv + SiLU, projections, oracle
    scan, scatter back -> (B, L, E) canonical."""
    idx = torch.tensor(order)
    xs, zs = x[:, idx].transpose(1, 2), z[:, idx].transpose(1, 2)                   # (B, E, L)
    conv = getattr(mixer, "conv1d" + sfx)
    K = conv.weight.shape[-1]
    u = F.silu(F.conv1d(F.pad(xs, (K - 1, 0)), conv.weight, conv.bias, groups=xs.shape[1]))
    x_proj, dt_proj = getattr(mixer, "x_proj" + sfx), getattr(mixer, "dt_proj" + sfx)
    dbl = torch.einsum("ke,bel->bkl", x_proj.weight, u)
    R, N = mixer.dt_rank, mixer.d_state
    dr, Bm, Cm = dbl[:, :R], dbl[:, R:R + N], dbl[:, R + N:]
    delta = torch.einsum("er,brl->bel", dt_proj.weight, dr)
    A = -torch.exp(getattr(mixer, "A_log" if not sfx else "A_b_log"))
    Dp = getattr(mixer, "D" + sfx)
    y = selective_scan_ref(u, delta, A, Bm, Cm, Dp, z=zs, delta_bias=dt_proj.bias, delta_softplus=True)
    out = torch.empty_like(y)
    out[..., idx] = y                                  # visiting step j holds canonical token order[j]
    return out.transpose(1, 2)


def mixer_forward(mixer, h: torch.Tensor, fwd: list[int], bwd: list[int], merge: str) -> torch.Tensor:
    xz = h @ mixer.in_proj.weight.t()
    E = xz.shape[-1] // 2
    x, z = xz[..., :E], xz[..., E:]
    y = branch(mixer, x, z, fwd, "") + branch(mixer, x, z, bwd, "_b")
    if merge == "mean":
        y = y / 2
    return y @ mixer.out_proj.weight.t()


def forward(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (normalised tokens (B, L, D), logits). Eval-mode semantics (no drop path or dropout)."""
    cfg = model.cfg
    emb = embeddings(model, x)
    t = x.shape[2] // cfg.tubelet_size
    S = (x.shape[3] // cfg.patch_size) * (x.shape[4] // cfg.patch_size)
    ci = cls_slot(cfg.cls_position, t * S)
    residual, hidden = emb, None
    for li, layer in enumerate(model.layers):
        if hidden is not None:
            residual = residual + hidden
        h = rms(residual, layer.norm.weight, layer.norm.eps)
        outs = []
        for scan in layer_scans(cfg.scan_order, li):
            fwd, bwd = visiting_orders(scan, cfg.backward_order, t, S, ci)
            outs.append(mixer_forward(layer.mixer, h, fwd, bwd, cfg.merge))
        hidden = sum(outs) / len(outs)
    tokens = rms(residual + hidden, model.norm_f.weight, model.norm_f.eps)
    pooled = tokens.mean(1) if ci is None else tokens[:, ci]
    return tokens, model.head(pooled)
