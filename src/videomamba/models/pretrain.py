"""Masked pretraining by alignment to a frozen teacher (UMT style, OpenGVLab).

Glossary: B batch, t x h x w token grid, S = h*w, N = t*S patch tokens, P visible patch tokens,
Lv = P (+1 with a cls token) visible sequence length, D student width, C teacher width.

The student (a VideoMamba without head) encodes only the visible tokens; the cls token is always
visible. The residual stream *entering the last block* (the release aligns that one, not the
final norm's output) plus a fixed sinusoidal position table goes through the alignment decoder
``Linear(D, C) -> LayerNorm -> L2-normalise`` (``clip_decoder.0.head`` / ``clip_decoder.0.norm``,
the release's names). The loss is mean (2 - 2 cos) against the frozen teacher's L2-normalised
features at the same positions (:mod:`videomamba.models.teachers`).

Left out, as in the release: the last block's output does not reach the loss, so the last block
is frozen during pretraining (and not run) and trained by fine-tuning; so is ``norm_f`` when one
layer is aligned.

Multi-layer alignment (the release's ``clip_return_layer`` K and ``clip_student_return_interval``
i): the student's aligned layers are ``r = depth-1, depth-1-i, ..., depth-1-(K-1)i``. Layer
``depth-1`` gives the stream entering the last block, as above; every other ``r`` gives
``norm_f`` of the stream leaving block ``r`` (the release shares the final norm for them). Each
layer has its own decoder (``clip_decoder.k``, shallow to deep) and is matched with the teacher's
k-th aligned layer (``TeacherOutput.layers``); the output is then (K, B, Lv, C).

Losses (``loss``): ``cosine`` = mean (2 - 2 cos), the release's ``l2``; ``mse`` and ``smooth_l1``
compare the unit vectors elementwise (``nn.MSELoss`` / ``nn.SmoothL1Loss``, means over all
elements), against L2-normalised teacher targets as the release's teacher returns them.

Checkpoints: :meth:`VideoMambaPretrain.state_dict` holds the backbone keys plus ``clip_decoder.*``
and no head; ``videomamba.checkpoint`` drops the decoder (and reads the release's ``norm``) when
a classifier is fine-tuned from it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import FULL_FLIP, sincos_table
from .config import VideoMambaConfig
from .distill import cosine_alignment_loss
from .masking import canonical_mask_type, make_mask, visible_positions
from .videomamba import VideoMamba


class AlignDecoder(nn.Module):
    """``Linear(D, C) -> LayerNorm(C) -> L2-normalise`` (the release's ``Linear_Decoder``)."""

    def __init__(self, embed_dim: int, output_dim: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, output_dim)
        self.norm = nn.LayerNorm(output_dim)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(self.head(x)), dim=-1)


class VideoMambaPretrain(VideoMamba):
    """VideoMamba encoder + alignment decoder. ``forward(x, mask) -> (B, Lv, C)`` unit vectors."""

    def __init__(self, cfg: VideoMambaConfig, teacher_dim: int, return_layers: int = 1, interval: int = 1):
        if cfg.scan_order != "spatial_first" or cfg.backward_order != "full_flip":
            raise ValueError("masked pretraining needs scan_order='spatial_first' and backward_order='full_flip' "
                             f"(got {cfg.scan_order!r}, {cfg.backward_order!r}): other scan orders are not "
                             "defined on a subset of tokens")
        if teacher_dim < 1:
            raise ValueError(f"teacher_dim must be a positive integer, got {teacher_dim!r}")
        if return_layers < 1 or interval < 1:
            raise ValueError(f"return_layers and interval must be positive, got {return_layers}, {interval}")
        if cfg.depth - 1 - (return_layers - 1) * interval < 0:
            raise ValueError(f"{return_layers} aligned layers every {interval} do not fit depth {cfg.depth}")
        cfg = cfg.replace(num_classes=0, extra={**cfg.extra, "pretrain_teacher_dim": int(teacher_dim)})
        super().__init__(cfg)
        self.teacher_dim = teacher_dim
        self.return_index = sorted(cfg.depth - 1 - k * interval for k in range(return_layers))
        self.clip_decoder = nn.ModuleList([AlignDecoder(cfg.embed_dim, teacher_dim) for _ in range(return_layers)])
        self._table_cache: dict = {}
        # The loss reads at most the stream entering the last block, so the last block (and norm_f
        # when only that stream is aligned) never gets a gradient. Freezing keeps optimizers and
        # DDP's unused-parameter check away; they stay at their initial values, as in the
        # release, until fine-tuning.
        frozen = [*self.layers[-1].parameters()] + ([*self.norm_f.parameters()] if return_layers == 1 else [])
        for p in frozen:
            p.requires_grad_(False)

    def layer_id(self, name: str) -> int:
        return self.cfg.depth + 1 if name.startswith("clip_decoder.") else super().layer_id(name)

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        """(t, h, w) of the student's patch tokens for input ``x``."""
        x = self._check_input(x)
        cfg = self.cfg
        T, H, W = x.shape[2:]
        return T // cfg.tubelet_size, H // cfg.patch_size, W // cfg.patch_size

    def sequence_positions(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) mask -> (B, Lv) canonical patch index of each visible token in the student's
        sequence, -1 at the cls token."""
        vis = visible_positions(mask)                                            # (B, P)
        ci = self.cls_index(vis.shape[1])
        if ci is None:
            return vis
        cls = vis.new_full((vis.shape[0], 1), -1)
        return torch.cat([vis[:, :ci], cls, vis[:, ci:]], dim=1)

    def _table(self, n: int, device) -> torch.Tensor:
        key = (n, str(device))
        if key not in self._table_cache:
            # row 0 for the cls token, row 1 + i for patch i (the release's clip_pos_embed layout)
            self._table_cache[key] = sincos_table(n + 1, self.embed_dim, device=device)[0]
        return self._table_cache[key]

    def aligned_features(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """The student features of the aligned layers (shallow -> deep), each (B, Lv, D); the
        blocks after the last one needed are not run."""
        x = self._check_input(x)
        x = self.patch_embed(x)                                                  # (B, D, t, h, w)
        B, D, t, h, w = x.shape
        x, cls = self._add_pos(x.permute(0, 2, 3, 4, 1))                         # (B, t*S, D)
        if mask.shape != (B, t * h * w) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool of shape {(B, t * h * w)}, got {mask.dtype} {tuple(mask.shape)}")
        keep = (~mask).sum(1)
        if not bool((keep == keep[0]).all()):
            raise ValueError("every sample must keep the same number of tokens")
        x = x[~mask].reshape(B, int(keep[0]), D)
        ci = self.cls_index(x.shape[1])
        if ci is not None:
            x = torch.cat([x[:, :ci], cls.expand(B, -1, -1).to(x.dtype), x[:, ci:]], dim=1)
        ckpt = True if self.grad_checkpointing and self.training and torch.is_grad_enabled() else None
        last = self.cfg.depth - 1
        feats, hidden, residual = [], x, None
        for idx, layer in enumerate(self.layers):
            residual = layer.add(hidden, residual)               # the stream entering block idx
            if idx - 1 in self.return_index:                     # = the stream leaving block idx - 1
                feats.append(self.norm_f(residual))
            if idx == last:
                feats.append(residual)                           # entering the last block, un-normalised
                break
            hidden = None
            hidden = layer.mix(residual, (FULL_FLIP,), recompute=ckpt)
        return feats

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Lv, C) unit vectors with one aligned layer, (K, B, Lv, C) with K."""
        grid = self.token_grid(x)
        N = grid[0] * grid[1] * grid[2]
        if mask is None:
            mask = torch.zeros(x.shape[0], N, dtype=torch.bool, device=x.device)
        feats = self.aligned_features(x, mask)
        rows = self.sequence_positions(mask) + 1                                 # cls -> row 0
        pos = self._table(N, x.device)[rows]                                     # (B, Lv, D), fixed
        out = [dec(f + pos.to(f.dtype)) for dec, f in zip(self.clip_decoder, feats)]
        return out[0] if len(out) == 1 else torch.stack(out)


def alignment_targets(model: VideoMambaPretrain, teacher_out, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher features in the student's visible-sequence order -> (targets (B, Lv, C), valid (Lv,)).

    ``valid`` is False at the cls position when the teacher has no cls feature.
    """
    seq = model.sequence_positions(mask)                                         # (B, Lv)
    tok = teacher_out.tokens
    B, Lv = seq.shape
    target = torch.gather(tok, 1, seq.clamp_min(0)[..., None].expand(B, Lv, tok.shape[-1]))
    is_cls = seq[0] < 0
    valid = torch.ones(Lv, dtype=torch.bool, device=seq.device)
    if bool(is_cls.any()):
        if teacher_out.cls is None:
            valid &= ~is_cls
        else:
            target[:, is_cls] = teacher_out.cls[:, None].to(target.dtype)
    return target, valid


ALIGN_LOSSES = ("cosine", "mse", "smooth_l1")


def alignment_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Student unit vectors vs teacher features (..., C): ``cosine`` mean (2 - 2 cos); ``mse`` /
    ``smooth_l1`` elementwise against the L2-normalised targets (means over all elements)."""
    if kind == "cosine":
        return cosine_alignment_loss(pred, target)
    if kind not in ALIGN_LOSSES:
        raise ValueError(f"alignment loss must be one of {ALIGN_LOSSES}, got {kind!r}")
    t = F.normalize(target.float(), dim=-1)
    if kind == "mse":
        return F.mse_loss(pred.float(), t)
    return F.smooth_l1_loss(pred.float(), t)


def masked_alignment_step(model: VideoMambaPretrain, teacher, x: torch.Tensor, mask_type: str = "tube",
                          mask_ratio: float = 0.8, sampling: str = "multinomial",
                          generator: torch.Generator | None = None, model_call=None, loss: str = "cosine",
                          loss_weight: float = 1.0) -> dict:
    """One pretraining forward: teacher targets (no grad), mask, student, loss.

    ``model_call(x, mask)``: how to call the student (e.g. through DistributedDataParallel);
    defaults to ``model(x, mask)``. ``loss``: see :func:`alignment_loss`; the result is scaled by
    ``loss_weight`` (the release's ``clip_loss_ratio``). Returns ``{"loss", "mask", "count"}``.
    """
    kind = canonical_mask_type(mask_type)
    grid = model.token_grid(x)
    with torch.no_grad():
        tout = teacher(x, grid, need_attention=kind == "attention")
    if tout.tokens.shape[-1] != model.teacher_dim:
        raise ValueError(f"teacher features have {tout.tokens.shape[-1]} channels, the decoder outputs "
                         f"{model.teacher_dim}: build VideoMambaPretrain with teacher_dim={tout.tokens.shape[-1]}")
    mask = make_mask(kind, x.shape[0], grid, mask_ratio, attention=tout.attention, sampling=sampling,
                     generator=generator, device=x.device)
    pred = (model_call or model)(x, mask)                                        # ([K,] B, Lv, C)
    K = len(model.clip_decoder)
    layers = tout.layers or [(tout.tokens, tout.cls)]
    if len(layers) != K:
        raise ValueError(f"the student aligns {K} layer(s) but the teacher returns {len(layers)}: set the same "
                         "number of return layers for both")
    preds = [pred] if K == 1 else list(pred)
    ps, ts = [], []
    for p, (tok, cls) in zip(preds, layers):
        target, valid = alignment_targets(model, type(tout)(tokens=tok, cls=cls), mask)
        ps.append(p[:, valid])
        ts.append(target[:, valid])
    value = alignment_loss(torch.stack(ps), torch.stack(ts), loss) * float(loss_weight)
    return {"loss": value, "mask": mask, "count": x.shape[0]}
