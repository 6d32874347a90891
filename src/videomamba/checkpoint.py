"""Checkpoint loading: one pure filter from any released format to a given model, plus our own format.

``checkpoint_filter(state_dict, model, ...) -> (state_dict, LoadReport)`` is a pure function: it
renames, inflates, resamples and drops keys so that the result fits ``model``, and records every
change. ``load_checkpoint`` reads a file safely, runs the filter and loads the result.

Formats understood (SPEC §1 "Checkpoints"):
- bare state dicts (video checkpoints) and ``{'model'|'module'|'state_dict': ...}`` wrappers,
  with ``module.`` / ``backbone.`` / ``encoder.`` / ``model.`` prefixes;
- image checkpoints: 2-D patch kernel (D, 3, p, p), no temporal table -> inflated to k frames;
- masked-pretraining checkpoints: final norm called ``norm``, ``clip_decoder.*`` keys, no head;
- Vim image checkpoints with the cls row in the middle of ``pos_embed``;
- pickles containing ``argparse.Namespace`` (loaded with ``weights_only`` and an allow-list);
- our own directory format: ``model.safetensors`` + ``config.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .fileio import atomic_path, atomic_write_text
from .layers.embed import resample_joint_pos, resample_spatial_pos, resample_temporal_pos

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
_WRAPPER_KEYS = ("model", "module", "state_dict", "model_state", "model_ema", "ema")
_PREFIXES = ("module.", "backbone.", "encoder.", "model.", "vision_encoder.")
# Keys of auxiliary heads that a classifier never uses (masked-pretrain decoders, distill heads).
_AUX_PREFIXES = ("clip_decoder.", "clip_pos_embed", "clip_img_pos_embed", "final_fc.", "distill_head.",
                 "decoder.", "mask_token", "text_", "vision_proj.", "itm_head.", "temp")


class CheckpointError(ValueError):
    """A checkpoint that cannot be made to fit the model; the message says which key and why."""


@dataclass
class LoadReport:
    source: str = "<state_dict>"
    format: str = "bare"
    missing: list[str] = field(default_factory=list)      # model keys left at their initial values
    unexpected: list[str] = field(default_factory=list)   # checkpoint keys not used
    adapted: dict[str, str] = field(default_factory=dict)  # key -> what was done to it

    def __str__(self) -> str:
        lines = [f"loaded {self.source} (format: {self.format})"]
        for k, v in self.adapted.items():
            lines.append(f"  adapted {k}: {v}")
        if self.missing:
            lines.append(f"  missing (kept at init): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {', '.join(self.unexpected)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "missing": self.missing,
                "unexpected": self.unexpected, "adapted": self.adapted}


# ---------------------------------------------------------------------------------------- reading
def _safe_globals():
    import collections
    return [argparse.Namespace, collections.OrderedDict, set, frozenset]


def load_state_dict_file(path: str | os.PathLike, allow_unsafe: bool = False) -> dict:
    """Read a ``.pth``/``.pt``/``.bin``/``.safetensors`` file without arbitrary unpickling.

    ``torch.load(weights_only=True)`` with an allow-list (``argparse.Namespace`` and friends).
    ``allow_unsafe=True`` falls back to full unpickling: only for files you trust.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except SafetensorError as e:
            raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: {e}") from None
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if allow_unsafe:
            return torch.load(path, map_location="cpu", weights_only=False)
        raise CheckpointError(f"checkpoint {path} contains Python objects outside the safe allow-list "
                              f"({str(e).splitlines()[0][:200]}). If you trust this file, load it with "
                              f"allow_unsafe=True (CLI: --allow-unsafe-pickle).") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} could not be read (truncated or not a PyTorch file): "
                              f"{str(e).splitlines()[0][:200]}") from None


def unwrap_state_dict(obj) -> tuple[dict, str, dict]:
    """Find the tensor dict inside wrappers and strip common prefixes -> (state_dict, format, meta)."""
    fmt, meta = [], {}
    while isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        for k in ("args", "config", "cfg"):
            if k in obj:
                meta[k] = obj[k]
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            raise CheckpointError(f"no state dict found in checkpoint; top-level keys: {sorted(obj)[:20]}")
        fmt.append(key)
        obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                fmt.append(f"prefix {p!r}")
                changed = True
    return sd, " / ".join(fmt) or "bare", meta


# ---------------------------------------------------------------------------------------- filter
def _square(n: int) -> int | None:
    r = math.isqrt(n)
    return r if r * r == n else None


def _split_pos_table(pe: torch.Tensor, cls_position: str) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(1, n, D) -> (cls row (1, 1, D) or None, patch rows (1, n - c, D)) for a spatial table."""
    n = pe.shape[1]
    if _square(n - 1) and not _square(n):
        if cls_position == "middle":
            mid = (n - 1) // 2
            return pe[:, mid:mid + 1], torch.cat([pe[:, :mid], pe[:, mid + 1:]], dim=1)
        return pe[:, :1], pe[:, 1:]
    if _square(n):
        return None, pe
    return None, None  # not a spatial table (e.g. a joint one)


def _init_joint_from_spatial(spatial: torch.Tensor, t: int, how: str) -> torch.Tensor:
    """(1, S, D) image table -> (1, t*S, D) joint table (KAIST §4.2 initialisations)."""
    _, S, D = spatial.shape
    if how == "expand":                        # replicate over time (best in KAIST Table 3)
        return spatial.repeat(1, t, 1)
    if how == "interpolate_spatial":           # interpolate the token axis S -> t*S
        out = F.interpolate(spatial.float().transpose(1, 2), size=t * S, mode="linear", align_corners=False)
        return out.transpose(1, 2).to(spatial.dtype)
    if how == "interpolate_dim":               # interpolate the channel axis D -> t*D, then split into frames
        out = F.interpolate(spatial.float(), size=t * D, mode="linear", align_corners=False)  # (1, S, t*D)
        return out.reshape(1, S, t, D).transpose(1, 2).reshape(1, t * S, D).to(spatial.dtype)
    raise ValueError(f"unknown joint_pos_init {how!r}")


def checkpoint_filter(state_dict: dict, model, *, inflate: str | None = None,
                      source_cls_position: str = "head", head_indices=None,
                      source_grid: tuple[int, int, int] | None = None, report: LoadReport | None = None) -> tuple[dict, LoadReport]:
    """Adapt ``state_dict`` (already unwrapped) to ``model``. Pure: inputs are not modified.

    inflate: 'centre' (kernel in the middle frame, zeros elsewhere) or 'average' (copied k times
    / k) for a 2-D patch kernel going into a tubelet of k frames; default 'average' for joint
    position tables (KAIST) and 'centre' otherwise (OpenGVLab).
    source_cls_position: where the checkpoint's cls row sits in ``pos_embed`` ('head' or
    'middle' for Vim).
    head_indices: class indices to slice from a larger head (e.g. K710 -> K400).
    source_grid: the checkpoint's (t, h, w) token grid when known (our own format records it);
    without it a joint table's grid is inferred from its length and the model's spatial grid.
    """
    cfg = model.cfg
    report = report or LoadReport()
    target = model.state_dict()
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    inflate = inflate or ("average" if cfg.pos_embed == "joint" else "centre")
    if inflate not in ("centre", "center", "average"):
        raise ValueError(f"inflate must be 'centre' or 'average', got {inflate!r}")
    t0, h0, w0 = cfg.grid

    # masked-pretraining files name the final norm `norm`
    if "norm.weight" in sd and "norm_f.weight" not in sd:
        sd["norm_f.weight"] = sd.pop("norm.weight")
        report.adapted["norm_f.weight"] = "renamed from norm.weight (masked-pretraining checkpoint)"
    for k in [k for k in sd if k.startswith(_AUX_PREFIXES) and k not in target]:
        report.unexpected.append(k)
        sd.pop(k)

    # patch embedding: 2-D kernel -> tubelet of k frames; or k_src=1 video kernel into k>1
    key = "patch_embed.proj.weight"
    if key in sd and key in target:
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

    # position tables
    if "pos_embed" in sd:
        pe = sd.pop("pos_embed")
        if pe.dim() == 2:
            pe = pe.unsqueeze(0)
        if "pos_embed" not in target:
            report.unexpected.append("pos_embed")
        else:
            tpe = target["pos_embed"]
            c = cfg.num_cls
            cls_row, patch = _split_pos_table(pe, source_cls_position)
            if cfg.pos_embed == "factorised":
                if patch is None:
                    raise CheckpointError(f"pos_embed: checkpoint table {tuple(pe.shape)} is not a spatial "
                                          f"(1, [1+]h*w, D) table; the model uses factorised positions {tuple(tpe.shape)}")
                new = resample_spatial_pos(patch, (_square(patch.shape[1]),) * 2, (h0, w0))
                note = [] if patch.shape[1] == h0 * w0 else [f"spatial {patch.shape[1]}->{h0 * w0} bicubic"]
            else:  # joint
                tp_src = sd.get("temporal_pos_embedding")
                if source_grid is not None and source_grid[0] > 1:
                    ts, hs, ws = source_grid
                    c_src = pe.shape[1] - ts * hs * ws
                    if c_src not in (0, 1):
                        raise CheckpointError(f"pos_embed: checkpoint table {tuple(pe.shape)} does not fit "
                                              f"the stated source grid {tuple(source_grid)}")
                    cls_row, patch = (pe[:, :1] if c_src else None), None
                    new = resample_joint_pos(pe[:, c_src:], (ts, hs, ws), (t0, h0, w0))
                    note = [] if (ts, hs, ws) == (t0, h0, w0) else [f"joint {(ts, hs, ws)}->{(t0, h0, w0)} trilinear"]
                elif patch is not None:
                    sq = _square(patch.shape[1])
                    sp = resample_spatial_pos(patch, (sq, sq), (h0, w0))
                    note = [] if sq == h0 else [f"spatial {sq * sq}->{h0 * w0} bicubic"]
                    if tp_src is not None:      # factorised source: joint = spatial + temporal per frame
                        tp = resample_temporal_pos(tp_src, t0)
                        new = (sp.unsqueeze(1) + tp.unsqueeze(2)).reshape(1, t0 * h0 * w0, -1)
                        note.insert(0, "joint table = spatial + temporal tables of a factorised checkpoint")
                    elif cfg.joint_pos_init == "random":
                        new, note = None, ["image table not used (joint_pos_init='random')"]
                    else:
                        new = _init_joint_from_spatial(sp, t0, cfg.joint_pos_init)
                        note.insert(0, f"joint table from image table ({cfg.joint_pos_init}, {t0} frames)")
                else:
                    n, S = pe.shape[1], h0 * w0
                    c_src = 1 if (n - 1) % S == 0 and n % S else 0
                    cls_row = pe[:, :1] if c_src else None
                    if (n - c_src) % S:
                        raise CheckpointError(f"pos_embed: cannot read checkpoint table {tuple(pe.shape)} as "
                                              f"t*{S} joint positions (pass source_grid=(t, h, w))")
                    t_src = (n - c_src) // S
                    new = resample_joint_pos(pe[:, c_src:], (t_src, h0, w0), (t0, h0, w0))
                    note = [] if t_src == t0 else [f"joint {t_src}->{t0} frames trilinear"]
            if new is not None:
                if c:
                    row = cls_row if cls_row is not None else tpe[:, :1]
                    if cls_row is None:
                        note.append("cls row kept at init (checkpoint has none)")
                    elif source_cls_position == "middle":
                        note.append("cls row moved from the middle (Vim) to the head")
                    new = torch.cat([row.to(new.dtype), new], dim=1)
                elif cls_row is not None:
                    note.append("cls row dropped (model has no cls token)")
                out["pos_embed"] = new
                if note:
                    report.adapted["pos_embed"] = "; ".join(note)
            else:
                report.adapted["pos_embed"] = "; ".join(note)
    key = "temporal_pos_embedding"
    if key in sd:
        tp = sd.pop(key)
        if key in target:
            new = resample_temporal_pos(tp, t0)
            if new.shape[1] != tp.shape[1]:
                report.adapted[key] = f"{tp.shape[1]}->{t0} frames linear"
            out[key] = new
        elif cfg.pos_embed == "joint" and "pos_embed" in out:
            report.adapted[key] = "folded into the joint pos_embed"
        else:
            report.unexpected.append(key)
    if "cls_token" in sd and "cls_token" not in target:
        report.unexpected.append("cls_token")
        sd.pop("cls_token")

    # classifier head
    for key in ("head.weight", "head.bias"):
        if key not in sd:
            continue
        v = sd.pop(key)
        if key not in target:
            report.unexpected.append(key)
        elif v.shape == target[key].shape:
            out[key] = v
        elif head_indices is not None:
            idx = torch.as_tensor(head_indices, dtype=torch.long)
            if len(idx) != target[key].shape[0]:
                raise CheckpointError(f"head_indices has {len(idx)} entries, model head has {target[key].shape[0]} classes")
            out[key] = v.index_select(0, idx)
            report.adapted[key] = f"sliced {v.shape[0]}->{len(idx)} classes"
        else:
            report.adapted[key] = f"dropped: checkpoint has {v.shape[0]} classes, model {target[key].shape[0]}"

    # everything else must match exactly
    for k, v in sd.items():
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
            f"checkpoint does not match the model's blocks (first mismatch: {first} "
            f"{'missing from the checkpoint' if blocks_missing else 'not in the model'}; "
            f"{len(blocks_missing)} missing, {len(blocks_extra)} unexpected block keys): "
            f"different depth or mixer? model has depth {cfg.depth}, width {cfg.embed_dim}")
    return out, report


def load_checkpoint(model, path_or_state_dict, strict: bool = False, allow_unsafe: bool = False,
                    **filter_kwargs) -> LoadReport:
    """Load any supported checkpoint into ``model`` through :func:`checkpoint_filter`.

    strict=True: every model key must come from the checkpoint and every checkpoint key must be
    used (after adaptation); otherwise missing keys keep their initial values and are reported.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        raw, source = load_state_dict_file(path_or_state_dict, allow_unsafe), str(path_or_state_dict)
    else:
        raw, source = path_or_state_dict, "<state_dict>"
    sd, fmt, meta = unwrap_state_dict(raw)
    args = meta.get("args")
    if "source_cls_position" not in filter_kwargs and getattr(args, "use_middle_cls_token", False):
        filter_kwargs["source_cls_position"] = "middle"
    report = LoadReport(source=source, format=fmt)
    sd, report = checkpoint_filter(sd, model, report=report, **filter_kwargs)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"strict load of {source} failed: missing {report.missing}, unexpected {report.unexpected}")
    ref = model.state_dict()
    sd = {k: v.to(dtype=ref[k].dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=False)
    return report


# ---------------------------------------------------------------------------------------- own format
def save_pretrained(model, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (atomically) so that
    ``create_model(pretrained=directory)`` rebuilds this exact model."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "library": "videomamba"})
    cfg = model.cfg.to_dict()
    if extra:
        cfg["extra"] = {**cfg.get("extra", {}), **extra}
    atomic_write_text(directory / CONFIG_NAME, json.dumps(cfg, indent=2, sort_keys=True))
    return directory


def load_config_dir(directory: str | os.PathLike):
    from .models.config import VideoMambaConfig

    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}; expected a directory written by save_pretrained")
    try:
        return VideoMambaConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def load_pretrained_dir(directory: str | os.PathLike, name_or_config=None, **overrides):
    """Rebuild the model saved in ``directory``; ``overrides`` (e.g. num_frames, num_classes)
    are applied on top and the weights adapted through the filter when shapes change."""
    from .models.videomamba import VideoMamba

    cfg = load_config_dir(directory)
    if overrides:
        cfg = cfg.replace(**overrides)
    model = VideoMamba(cfg)
    src = load_config_dir(directory)
    report = load_checkpoint(model, Path(directory) / WEIGHTS_NAME, strict=not overrides,
                             source_grid=src.grid if src.pos_embed == "joint" else None)
    model.load_report = report
    return model
