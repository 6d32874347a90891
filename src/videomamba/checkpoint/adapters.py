"""The filter: a pure function from a parsed backbone state dict to one that fits a given model.

:func:`checkpoint_filter` runs small per-key adapters in turn, each recording what it did in the
:class:`LoadReport`: auxiliary parts skipped, ``norm`` -> ``norm_f``, 2-D -> 3-D patch kernels,
spatial / temporal resampling, factorised <-> joint position tables, head slicing or dropping.
Whatever is left must match the model exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..layers.embed import resample_joint_pos, resample_spatial_pos, resample_temporal_pos
from .formats import is_aux
from .io import CheckpointError


@dataclass
class LoadReport:
    """What happened to every key on the way from a file into a model."""

    source: str = "<state_dict>"
    format: str = "bare state dict"
    missing: list[str] = field(default_factory=list)      # model keys left at their initial values
    unexpected: list[str] = field(default_factory=list)   # checkpoint keys that fit nothing in the model
    skipped: list[str] = field(default_factory=list)      # known auxiliary parts, not used by this model
    adapted: dict[str, str] = field(default_factory=dict)  # key -> what was done to it
    config: dict[str, str] = field(default_factory=dict)   # model field -> where its value came from, when not the file

    @property
    def dropped_trained(self) -> list[str]:
        """Trained weights of the file that this model does not use (head dropped, unknown keys)."""
        heads = [k for k, v in self.adapted.items() if v.startswith("dropped")]
        return heads + list(self.unexpected)

    def __str__(self) -> str:
        lines = [f"loaded {self.source} (format: {self.format})"]
        for k, v in self.config.items():
            lines.append(f"  config {k}: {v}")
        for k, v in self.adapted.items():
            lines.append(f"  adapted {k}: {v}")
        if self.skipped:
            lines.append(f"  skipped (auxiliary parts): {_summarise(self.skipped)}")
        if self.missing:
            lines.append(f"  missing (kept at init): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {', '.join(self.unexpected)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "missing": self.missing,
                "unexpected": self.unexpected, "skipped": self.skipped, "adapted": self.adapted,
                "config": self.config}


def _summarise(keys: list[str]) -> str:
    """``clip_teacher.*`` (40 keys), ``temp``: groups by first name component."""
    groups: dict[str, int] = {}
    for k in keys:
        head = k.split(".", 1)[0]
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"{g}.* ({n} keys)" if n > 1 or g not in keys else g for g, n in groups.items())


def _square(n: int) -> int | None:
    r = math.isqrt(n) if n > 0 else 0
    return r if r > 0 and r * r == n else None


def split_pos_table(pe: torch.Tensor, cls_row: str = "head") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(1, n, D) spatial table -> (cls row (1, 1, D) or None, patch rows (1, n - c, D)).

    cls_row: where the file keeps the cls row: ``"head"`` (row 0) or ``"middle"`` (Vim: row
    (n - 1) // 2, where the token is inserted). (None, None) when the table is not spatial."""
    n = pe.shape[1]
    if _square(n - 1) and not _square(n):
        if cls_row == "middle":
            mid = (n - 1) // 2
            return pe[:, mid:mid + 1], torch.cat([pe[:, :mid], pe[:, mid + 1:]], dim=1)
        return pe[:, :1], pe[:, 1:]
    if _square(n):
        return None, pe
    return None, None


def init_joint_from_spatial(spatial: torch.Tensor, t: int, how: str) -> torch.Tensor:
    """(1, S, D) image table -> (1, t*S, D) joint table (the KAIST paper's initialisations)."""
    _, S, D = spatial.shape
    if how == "expand":                        # replicate over time (best in the paper)
        return spatial.repeat(1, t, 1)
    if how == "interpolate_spatial":           # interpolate the token axis S -> t*S
        out = F.interpolate(spatial.float().transpose(1, 2), size=t * S, mode="linear", align_corners=False)
        return out.transpose(1, 2).to(spatial.dtype)
    if how == "interpolate_dim":               # interpolate the channel axis D -> t*D, then split into frames
        out = F.interpolate(spatial.float(), size=t * D, mode="linear", align_corners=False)  # (1, S, t*D)
        return out.reshape(1, S, t, D).transpose(1, 2).reshape(1, t * S, D).to(spatial.dtype)
    raise ValueError(f"unknown joint_pos_init {how!r}")


# ------------------------------------------------------------------------------------ adapters
def _skip_aux(sd: dict, target: dict, report: LoadReport) -> None:
    for k in [k for k in sd if is_aux(k) and k not in target]:
        report.skipped.append(k)
        del sd[k]


def _rename_norm(sd: dict, target: dict, report: LoadReport) -> None:
    if "norm.weight" in sd and "norm_f.weight" not in sd and "norm_f.weight" in target:
        sd["norm_f.weight"] = sd.pop("norm.weight")
        report.adapted["norm_f.weight"] = "renamed from norm.weight (masked-pretraining / video-text layout)"


def _patch_kernel(sd: dict, target: dict, out: dict, report: LoadReport, inflate: str) -> None:
    key = "patch_embed.proj.weight"
    if key not in sd or key not in target:
        return
    w, tw = sd.pop(key), target[key]
    if w.dim() == 4:
        w = w.unsqueeze(2)
        report.adapted[key] = "2-D image kernel"
    if w.shape[:2] != tw.shape[:2] or w.shape[3:] != tw.shape[3:]:
        raise CheckpointError(f"{key}: checkpoint has shape {tuple(w.shape)}, model expects {tuple(tw.shape)} "
                              "(different width or patch size: is this checkpoint for another architecture?)")
    k_src, k = w.shape[2], tw.shape[2]
    if k_src != k:
        if k_src != 1:
            raise CheckpointError(f"{key}: cannot map a tubelet of {k_src} frames to {k}")
        if inflate == "average":
            w = w.repeat(1, 1, k, 1, 1) / k
        else:
            z = torch.zeros_like(w).repeat(1, 1, k, 1, 1)
            z[:, :, k // 2] = w[:, :, 0]
            w = z
        report.adapted[key] = (report.adapted.get(key, "") + f" inflated to {k} frames ({inflate})").strip()
    out[key] = w


def _joint_table(pe, sd, cfg, source, cls_row, note):
    """Any source table -> the model's joint (t*S) patch table, or None (random init kept)."""
    t0, h0, w0 = cfg.grid
    if source is not None and source.pos_embed == "joint":
        ts, hs, ws = source.grid
        c_src = pe.shape[1] - ts * hs * ws
        if c_src not in (0, 1):
            raise CheckpointError(f"pos_embed: checkpoint table {tuple(pe.shape)} does not fit its grid {source.grid}")
        if (ts, hs, ws) != (t0, h0, w0):
            note.append(f"joint {(ts, hs, ws)}->{(t0, h0, w0)} (linear in time, bicubic per frame)")
        return (pe[:, :1] if c_src else None), resample_joint_pos(pe[:, c_src:], (ts, hs, ws), (t0, h0, w0))
    cls, patch = split_pos_table(pe, cls_row)
    if patch is None:
        raise CheckpointError(f"pos_embed: cannot read checkpoint table {tuple(pe.shape)} as a spatial or joint table")
    sq = _square(patch.shape[1])
    sp = resample_spatial_pos(patch, (sq, sq), (h0, w0))
    if sq != h0:
        note.append(f"spatial {sq * sq}->{h0 * w0} bicubic")
    tp_src = sd.get("temporal_pos_embedding")
    if tp_src is not None:                    # factorised source: joint = spatial + temporal per frame
        tp = resample_temporal_pos(tp_src, t0)
        note.insert(0, "joint table = spatial + temporal tables of a factorised checkpoint")
        return cls, (sp.unsqueeze(1) + tp.unsqueeze(2)).reshape(1, t0 * h0 * w0, -1)
    if cfg.joint_pos_init == "random":
        note.append("image table not used (joint_pos_init='random')")
        return cls, None
    note.insert(0, f"joint table from image table ({cfg.joint_pos_init}, {t0} frames)")
    return cls, init_joint_from_spatial(sp, t0, cfg.joint_pos_init)


def _factorised_table(pe, cfg, cls_row, note):
    _, h0, w0 = cfg.grid
    cls, patch = split_pos_table(pe, cls_row)
    if patch is None:
        raise CheckpointError(f"pos_embed: checkpoint table {tuple(pe.shape)} is not a spatial (1, [1+]h*w, D) "
                              f"table; the model uses factorised positions over a {h0}x{w0} grid")
    sq = _square(patch.shape[1])
    if sq != h0 or sq != w0:
        note.append(f"spatial {patch.shape[1]}->{h0 * w0} bicubic")
    return cls, resample_spatial_pos(patch, (sq, sq), (h0, w0))


def _position_tables(sd, target, out, report, model, source, cls_row) -> None:
    cfg = model.cfg
    if "pos_embed" in sd:
        pe = sd.pop("pos_embed")
        pe = pe.unsqueeze(0) if pe.dim() == 2 else pe
        if "pos_embed" not in target:
            report.unexpected.append("pos_embed")
        else:
            note: list[str] = []
            if cfg.pos_embed == "factorised":
                cls, new = _factorised_table(pe, cfg, cls_row, note)
            else:
                cls, new = _joint_table(pe, sd, cfg, source, cls_row, note)
            if new is not None:
                if cfg.num_cls:
                    if cls is None:
                        cls = target["pos_embed"][:, :1]
                        note.append("cls row kept at init (checkpoint has none)")
                    elif cls_row == "middle":
                        note.append("cls row read from the middle of the table (Vim layout)")
                    new = torch.cat([cls.to(new.dtype), new], dim=1)
                elif cls is not None:
                    note.append("cls row dropped (model has no cls token)")
                out["pos_embed"] = new
            if note:
                report.adapted["pos_embed"] = "; ".join(note)
    key = "temporal_pos_embedding"
    if key in sd:
        tp = sd.pop(key)
        if key in target:
            new = resample_temporal_pos(tp, cfg.grid[0])
            if new.shape[1] != tp.shape[1]:
                report.adapted[key] = f"{tp.shape[1]}->{cfg.grid[0]} frames linear"
            out[key] = new
        elif cfg.pos_embed == "joint" and "pos_embed" in out:
            report.adapted[key] = "folded into the joint pos_embed"
        else:
            report.unexpected.append(key)


def _head(sd, target, out, report, head_indices) -> None:
    for key in ("head.weight", "head.bias"):
        if key not in sd:
            continue
        v = sd.pop(key)
        if key not in target:
            report.adapted[key] = f"dropped: the model has no head (checkpoint head has {v.shape[0]} classes)"
        elif v.shape == target[key].shape:
            out[key] = v
        elif head_indices is not None:
            idx = torch.as_tensor(head_indices, dtype=torch.long)
            if len(idx) != target[key].shape[0]:
                raise CheckpointError(f"head_indices has {len(idx)} entries, the model head has {target[key].shape[0]} classes")
            if v.shape[1:] != target[key].shape[1:]:
                raise CheckpointError(f"{key}: checkpoint has shape {tuple(v.shape)}, model expects {tuple(target[key].shape)}")
            out[key] = v.index_select(0, idx)
            report.adapted[key] = f"sliced {v.shape[0]}->{len(idx)} classes"
        else:
            report.adapted[key] = f"dropped: checkpoint has {v.shape[0]} classes, model {target[key].shape[0]}"


def checkpoint_filter(state_dict: dict, model, *, source=None, cls_row: str = "head", inflate: str | None = None,
                      head_indices=None, report: LoadReport | None = None) -> tuple[dict, LoadReport]:
    """Adapt a backbone ``state_dict`` to ``model`` (a VideoMamba). Pure: inputs are not modified.

    source: the file's :class:`VideoMambaConfig` when known (its grid tells how a joint table is laid
    out). cls_row: where the file's ``pos_embed`` keeps the cls row (``"middle"`` for Vim files).
    inflate: ``"centre"`` (kernel in the middle frame) or ``"average"`` (copied k times / k) for a
    2-D or one-frame kernel going into a tubelet of k frames; default ``"average"`` for joint
    position tables (KAIST) and ``"centre"`` otherwise (OpenGVLab). head_indices: class indices
    to slice from a larger head (e.g. K710 -> K400).
    """
    cfg = model.cfg
    report = report or LoadReport()
    target = model.state_dict()
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    inflate = {"center": "centre"}.get(inflate, inflate) or ("average" if cfg.pos_embed == "joint" else "centre")
    if inflate not in ("centre", "average"):
        raise ValueError(f"inflate must be 'centre' or 'average', got {inflate!r}")

    _rename_norm(sd, target, report)
    _skip_aux(sd, target, report)
    _patch_kernel(sd, target, out, report, inflate)
    _position_tables(sd, target, out, report, model, source, cls_row)
    if "cls_token" in sd and "cls_token" not in target:
        report.unexpected.append("cls_token")
        sd.pop("cls_token")
    _head(sd, target, out, report, head_indices)
    for k, v in sd.items():                   # everything else must match exactly
        if k not in target:
            report.unexpected.append(k)
            continue
        if v.shape != target[k].shape:
            raise CheckpointError(f"{k}: checkpoint has shape {tuple(v.shape)}, model expects {tuple(target[k].shape)} "
                                  "(this checkpoint is for a different architecture or size)")
        out[k] = v
    report.missing = [k for k in target if k not in out]
    blocks_missing = [k for k in report.missing if k.startswith("layers.")]
    blocks_extra = [k for k in report.unexpected if k.startswith("layers.")]
    if blocks_missing or blocks_extra:
        first = (blocks_missing or blocks_extra)[0]
        raise CheckpointError(
            f"{report.source}: checkpoint does not match the model's blocks (first mismatch: {first} "
            f"{'missing from the checkpoint' if blocks_missing else 'not in the model'}; "
            f"{len(blocks_missing)} missing, {len(blocks_extra)} unexpected block keys): "
            f"different depth or mixer? model has depth {cfg.depth}, width {cfg.embed_dim}")
    return out, report
