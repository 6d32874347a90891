"""The VideoMamba backbone and classifier: one model, switches for both papers.

Glossary: B batch, C channels, T frames, H x W pixels, k tubelet, p patch, t = T/k, h = H/p,
w = W/p, S = h*w tokens per frame, D width, E = 2D inner width, L sequence length.

Canonical token layout (what position tables and outputs refer to): patch tokens frame-major
("spatial-first", index i*S + s), with the cls token inserted at index 0 ("head") or at the
middle of the patch tokens ("middle", Vim), or absent ("none", mean pooling). Other scan orders
are permutations that each mixer applies to its input and undoes on its output.
"""
from __future__ import annotations

import contextlib
import re

import torch
import torch.nn as nn

from ..layers import (FULL_FLIP, BiMambaMixer, Block, PatchEmbed, RMSNorm, ScanOrder, drop_path,
                      init_linear, workspace_for_pass,
                      resample_joint_pos, resample_spatial_pos, resample_temporal_pos, sincos_table)
from .config import VideoMambaConfig


def build_scan_orders(cfg: VideoMambaConfig, t: int, S: int, cls_index: int | None,
                      device=None) -> list[tuple[ScanOrder, ...]]:
    """Per-layer tuples of :class:`ScanOrder` for a (t, S) token grid.

    Forward orders: spatial-first (identity), temporal-first (location-major, s*t + i).
    spatiotemporal_v1 alternates the two by layer (even layers spatial-first); _v2 scans both
    in every layer and averages (2x compute).
    Backward orders are defined on the forward order: the full flip reverses it; spatial
    reversal keeps the frame order and reverses each frame's tokens; temporal reversal reverses
    the frame order and keeps the order within a frame. Formally bwd = reverse(M[fwd]) where M
    mirrors the time axis (spatial reversal), the space axis (temporal reversal) or nothing.
    cls tokens are fixed points of M, so they end the backward scan as in the release.
    """
    P = t * S
    L = P + (cls_index is not None)
    pos = torch.arange(L)
    slots = pos if cls_index is None else torch.cat([pos[:cls_index], pos[cls_index + 1:]])
    canon = slots.view(t, S)                                               # canonical position of (i, s)

    def make(kind: str) -> ScanOrder:
        fwd = pos.clone()
        if kind == "temporal_first":
            fwd[slots] = canon.t().reshape(-1)
        identity = kind == "spatial_first"
        if cfg.backward_order == "full_flip":
            return ScanOrder(None if identity else fwd, None, True).to(device) if not identity else FULL_FLIP
        mirror = pos.clone()
        mirror[canon.reshape(-1)] = (canon.flip(0) if cfg.backward_order == "spatial_reversal"
                                     else canon.flip(1)).reshape(-1)
        bwd = mirror[fwd].flip(0)
        return ScanOrder(None if identity else fwd, bwd, False).to(device)

    sf, tf = (lambda: make("spatial_first")), (lambda: make("temporal_first"))
    if cfg.scan_order == "spatial_first":
        o = sf()
        return [(o,)] * cfg.depth
    if cfg.scan_order == "temporal_first":
        o = tf()
        return [(o,)] * cfg.depth
    a, b = sf(), tf()
    if cfg.scan_order == "spatiotemporal_v1":
        return [(a,) if i % 2 == 0 else (b,) for i in range(cfg.depth)]
    return [(a, b)] * cfg.depth


class VideoMamba(nn.Module):
    """VideoMamba classifier. Input (B, 3, T, H, W) video or (B, 3, H, W) image."""

    def __init__(self, cfg: VideoMambaConfig):
        super().__init__()
        self.cfg = cfg
        D = self.embed_dim = self.num_features = cfg.embed_dim
        self.num_classes = cfg.num_classes
        t0, h0, w0 = cfg.grid
        S0 = h0 * w0
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.tubelet_size, cfg.in_chans, D, stride=cfg.patch_stride,
                                      stem=cfg.conv_stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.num_cls else None
        self.pos_embed = self.temporal_pos_embedding = None
        if cfg.pos_embed == "factorised":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_cls + S0, D))
            if not cfg.image:
                self.temporal_pos_embedding = nn.Parameter(torch.zeros(1, t0, D))
        elif cfg.pos_embed == "joint":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_cls + t0 * S0, D))
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        inter = [0.0] + rates
        self.layers = nn.ModuleList([
            Block(D, BiMambaMixer(D, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dt_rank, cfg.merge,
                                  zero_dt_bias=cfg.zero_dt_bias, depth_scale=cfg.depth, init=cfg.init),
                  drop_path=inter[i], eps=cfg.norm_eps, mixer_recompute=cfg.mixer_recompute)
            for i in range(cfg.depth)])
        self.drop_path_rate = cfg.drop_path_rate
        self.norm_f = RMSNorm(D, cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(D, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.grad_checkpointing = cfg.grad_checkpointing
        self._orders_cache: dict = {}
        self._init_weights()

    # ------------------------------------------------------------------ init / API
    @torch.no_grad()
    def _init_weights(self):
        std = self.cfg.pos_init_std
        for p in (self.pos_embed, self.cls_token, None if std is None else self.temporal_pos_embedding):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02) if std is None else nn.init.normal_(p, std=std)
        self._init_head()
        # patch_embed keeps PyTorch's conv default, as the release.

    @torch.no_grad()
    def _init_head(self):
        if isinstance(self.head, nn.Linear):
            init_linear(self.head.weight, self.cfg.init)
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay: tables, cls, A_log, D, norms, biases."""
        out = {"pos_embed", "cls_token", "temporal_pos_embedding"}
        for name, p in self.named_parameters():
            if getattr(p, "_no_weight_decay", False) or p.ndim <= 1:
                out.add(name)
        return {n for n in out if n in dict(self.named_parameters())}

    def layer_id(self, name: str) -> int:
        """Layer index for layer-wise lr decay: 0 embeddings, i+1 block i, depth+1 norm_f / head."""
        if name.startswith(("patch_embed", "cls_token", "pos_embed", "temporal_pos_embedding")):
            return 0
        m = re.match(r"layers\.(\d+)\.", name)
        return int(m.group(1)) + 1 if m else self.cfg.depth + 1

    @property
    def num_layers(self) -> int:
        return self.cfg.depth + 2

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = self.cfg.num_classes = num_classes
        dev = self.norm_f.weight.device
        self.head = nn.Linear(self.embed_dim, num_classes, device=dev) if num_classes > 0 else nn.Identity()
        self._init_head()

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if x.dim() == 4:
            x = x.unsqueeze(2)                                                   # (B, C, 1, H, W)
        if x.dim() != 5 or x.shape[1] != cfg.in_chans:
            raise ValueError(f"expected input (B, {cfg.in_chans}, T, H, W) or (B, {cfg.in_chans}, H, W), "
                             f"got {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if T % cfg.tubelet_size:
            raise ValueError(f"number of frames T={T} is not a multiple of tubelet_size={cfg.tubelet_size}")
        if min(H, W) < cfg.patch_size or (H - cfg.patch_size) % cfg.stride or (W - cfg.patch_size) % cfg.stride:
            raise ValueError(f"frame size {H}x{W} does not tile into {cfg.patch_size} px patches at stride {cfg.stride}")
        if cfg.image and T != 1:
            raise ValueError(f"image model got {T} frames; build a video model (image=False) for clips")
        return x

    def _add_pos(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, t, h, w, D) -> tokens (B, t*S, D) with positions, and the cls token (1, 1, D)."""
        cfg = self.cfg
        B, t, h, w, D = x.shape
        t0, h0, w0 = cfg.grid
        c = cfg.num_cls
        cls = self.cls_token
        if cfg.pos_embed == "factorised":
            pe = self.pos_embed
            x = x.reshape(B, t, h * w, D) + resample_spatial_pos(pe[:, c:], (h0, w0), (h, w)).unsqueeze(1)
            if self.temporal_pos_embedding is not None:
                x = x + resample_temporal_pos(self.temporal_pos_embedding, t).unsqueeze(2)
            if cls is not None:
                cls = cls + pe[:, :1]
        elif cfg.pos_embed == "joint":
            pe = self.pos_embed
            x = x.reshape(B, t * h * w, D) + resample_joint_pos(pe[:, c:], (t0, h0, w0), (t, h, w))
            if cls is not None:
                cls = cls + pe[:, :1]
        elif cfg.pos_embed == "sinusoidal":
            table = sincos_table(c + t * h * w, D, device=x.device).to(x.dtype)
            x = x.reshape(B, t * h * w, D) + table[:, c:]
            if cls is not None:
                cls = cls + table[:, :1]
        return x.reshape(B, t * h * w, D), cls

    def cls_index(self, num_patch_tokens: int) -> int | None:
        return {"head": 0, "middle": num_patch_tokens // 2, "none": None}[self.cfg.cls_position]

    def _scan_orders(self, t: int, S: int, cls_index, device):
        key = (t, S, cls_index, str(device))
        if key not in self._orders_cache:
            self._orders_cache[key] = build_scan_orders(self.cfg, t, S, cls_index, device)
        return self._orders_cache[key]

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                         return_hidden: bool = False):
        """(B, C, T, H, W) -> normalised tokens (B, L, D) in canonical layout.

        ``mask``: optional bool (B, t*S), True = token dropped (masked pretraining); every sample
        must keep the same count, and only spatial-first scans support it. ``return_hidden``:
        also return the (un-normalised) residual stream entering the last block.
        """
        x = self._check_input(x)
        x = self.patch_embed(x)                                                  # (B, D, t, h, w)
        B, D, t, h, w = x.shape
        x, cls = self._add_pos(x.permute(0, 2, 3, 4, 1))                         # (B, t*S, D)
        if mask is not None:
            if mask.shape != (B, t * h * w) or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool of shape {(B, t * h * w)}, got {mask.dtype} {tuple(mask.shape)}")
            keep = (~mask).sum(1)
            if not bool((keep == keep[0]).all()):
                raise ValueError("every sample must keep the same number of tokens")
            x = x[~mask].reshape(B, int(keep[0]), D)
        P = x.shape[1]
        ci = self.cls_index(P)
        if ci is not None:
            x = torch.cat([x[:, :ci], cls.expand(B, -1, -1).to(x.dtype), x[:, ci:]], dim=1)
        if mask is None:
            orders = self._scan_orders(t, h * w, ci, x.device)
        elif self.cfg.scan_order == "spatial_first" and self.cfg.backward_order == "full_flip":
            orders = [(FULL_FLIP,)] * self.cfg.depth
        else:
            raise NotImplementedError("masked tokens are supported with spatial_first scans and full_flip only")

        # Gradient checkpointing recomputes each block's norm and mixer and keeps only its
        # residual stream, one (B, L, D) tensor per block; a checkpoint around the whole block
        # would keep two (its hidden and residual inputs).
        ckpt = True if self.grad_checkpointing and self.training and torch.is_grad_enabled() else None
        hidden, residual = x, None
        # Without autograd the blocks share their mixers' temporaries (layers/workspace.py).
        with workspace_for_pass():
            for layer, o in zip(self.layers, orders):
                residual = layer.add(hidden, residual)
                # The previous block's output is dead once added: drop it before this block's
                # temporaries exist (one (B, L, D) tensor less at the inference peak; in training,
                # left alive between them it split glibc's free heap space, which then grew twice
                # as fast).
                hidden = None
                hidden = layer.mix(residual, o, recompute=ckpt)
        before_last = residual  # the stream entering the last block
        residual = residual + drop_path(hidden, self.drop_path_rate, self.training)
        out = self.norm_f(residual)
        return (out, before_last) if return_hidden else out

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, D): the cls token, or the mean when there is none."""
        ci = self.cls_index(x.shape[1] - self.cfg.num_cls)
        return x.mean(1) if ci is None else x[:, ci]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------ analysis
    @contextlib.contextmanager
    def record_deltas(self):
        """Inside the context every mixer keeps its last (delta_fwd, delta_bwd), each (B, E, L)
        after softplus, in canonical token order. ``collect_deltas()`` returns them per layer."""
        mixers = [blk.mixer for blk in self.layers]
        for m in mixers:
            m.record_delta, m.last_delta = True, None
        try:
            yield self
        finally:
            for m in mixers:
                m.record_delta = False

    def collect_deltas(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [blk.mixer.last_delta for blk in self.layers]

    @torch.no_grad()
    def forward_deltas(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and per-layer (delta_fwd, delta_bwd) for one input, without gradients."""
        with self.record_deltas():
            logits = self(x)
            deltas = self.collect_deltas()
        for m in (blk.mixer for blk in self.layers):
            m.last_delta = None
        return logits, deltas
