"""Masked pretraining by alignment to a frozen teacher (UMT style, OpenGVLab; SPEC §2).

Glossary: B batch, t x h x w token grid, S = h*w, N = t*S patch tokens, P visible patch tokens,
Lv = P (+1 with a cls token) visible sequence length, D student width, C teacher width.

The student (a VideoMamba without head) encodes only the visible tokens; the cls token is always
visible. The residual stream *entering the last block* (the release aligns that one, not the
final norm's output) plus a fixed sinusoidal position table goes through the alignment decoder
``Linear(D, C) -> LayerNorm -> L2-normalise`` (``clip_decoder.0.head`` / ``clip_decoder.0.norm``,
the release's names). The loss is mean (2 - 2 cos) against the frozen teacher's L2-normalised
features at the same positions (:mod:`videomamba.models.teachers`).

Left out, as in the release: the last block's output and ``norm_f`` do not reach the loss, so
they are frozen during pretraining and trained by fine-tuning (the last block still runs: the
backbone has no early exit; that costs 1/depth of the forward). Only the final
layer is aligned (the release found that best); multi-layer alignment is not implemented.

Checkpoints: :meth:`VideoMambaPretrain.state_dict` holds the backbone keys plus ``clip_decoder.*``
and no head; ``videomamba.checkpoint`` drops the decoder (and reads the release's ``norm``) when
a classifier is fine-tuned from it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import sincos_table
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

    def __init__(self, cfg: VideoMambaConfig, teacher_dim: int):
        if cfg.scan_order != "spatial_first" or cfg.backward_order != "full_flip":
            raise ValueError("masked pretraining needs scan_order='spatial_first' and backward_order='full_flip' "
                             f"(got {cfg.scan_order!r}, {cfg.backward_order!r}): other scan orders are not "
                             "defined on a subset of tokens")
        if teacher_dim < 1:
            raise ValueError(f"teacher_dim must be a positive integer, got {teacher_dim!r}")
        cfg = cfg.replace(num_classes=0, extra={**cfg.extra, "pretrain_teacher_dim": int(teacher_dim)})
        super().__init__(cfg)
        self.teacher_dim = teacher_dim
        self.clip_decoder = nn.ModuleList([AlignDecoder(cfg.embed_dim, teacher_dim)])
        self._table_cache: dict = {}
        # The loss reads the stream entering the last block, so the last block and norm_f never
        # get a gradient. Freezing them keeps optimizers and DDP's unused-parameter check away;
        # they stay at their initial values, as in the release, until fine-tuning.
        for p in [*self.layers[-1].parameters(), *self.norm_f.parameters()]:
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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        grid = self.token_grid(x)
        N = grid[0] * grid[1] * grid[2]
        if mask is None:
            mask = torch.zeros(x.shape[0], N, dtype=torch.bool, device=x.device)
        _, hidden = self.forward_features(x, mask=mask, return_hidden=True)      # (B, Lv, D) residual stream
        rows = self.sequence_positions(mask) + 1                                 # cls -> row 0
        pos = self._table(N, x.device)[rows]                                     # (B, Lv, D), fixed
        return self.clip_decoder[0](hidden + pos.to(hidden.dtype))


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


def masked_alignment_step(model: VideoMambaPretrain, teacher, x: torch.Tensor, mask_type: str = "tube",
                          mask_ratio: float = 0.8, sampling: str = "multinomial",
                          generator: torch.Generator | None = None, model_call=None) -> dict:
    """One pretraining forward: teacher targets (no grad), mask, student, loss.

    ``model_call(x, mask)``: how to call the student (e.g. through DistributedDataParallel);
    defaults to ``model(x, mask)``. Returns ``{"loss", "mask", "count"}``.
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
    pred = (model_call or model)(x, mask)                                        # (B, Lv, C)
    target, valid = alignment_targets(model, tout, mask)
    loss = cosine_alignment_loss(pred[:, valid], target[:, valid])
    return {"loss": loss, "mask": mask, "count": x.shape[0]}
