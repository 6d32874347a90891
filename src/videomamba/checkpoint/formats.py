"""The format table: what is inside a checkpoint file, read once.

:func:`parse` turns whatever a file holds into a :class:`Checkpoint`: one flat state dict with
per-key wrapper prefixes removed, the kind of model it came from, and the metadata saved beside it
(``args`` Namespace, EasyDict / dict ``config``, our own model config). Known layouts:

| layout | how it is recognised |
|---|---|
| our directory | ``config.json`` + ``model.safetensors`` |
| our training checkpoint | ``{"format": TRAIN_FORMAT, "model", "ema", "model_config", ...}`` |
| wrapped files | ``{"model" | "module" | "state_dict" | "model_state" | "model_ema" | "ema": {...}, "args"?, "config"?}`` |
| per-key prefixes | ``module.``, ``model.``, ``backbone.``, ``encoder.``: removed key by key |
| video-text (``videomamba_m16_{5M,17M,25M}``) | ``vision_encoder.*`` beside ``text_encoder.*`` |
| vision tower of a video-text file | every key under ``vision_encoder.`` (prefix removed) |
| masked pretraining, Vim, image, video | plain backbone keys; told apart by the tensors and ``args`` |

Auxiliary parts that a classifier never uses are listed once, in :data:`AUX_EXACT` and
:data:`AUX_PREFIXES`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .io import CheckpointError, plain, read_config_dir, read_file

TRAIN_FORMAT = "videomamba-train-v1"          # the training engine's checkpoint files
WRAPPER_KEYS = ("model", "module", "state_dict", "model_state", "model_ema", "ema")
EMA_KEYS = ("model_ema", "ema")
META_KEYS = ("args", "config", "cfg")
KEY_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
# Parts of original files that a classifier does not use: masked-pretraining decoders, distillation
# heads, the video-text model's text tower, heads and CLIP teacher. Exact names, then prefixes.
AUX_EXACT = ("temp", "mask_token", "clip_pos_embed", "clip_img_pos_embed")
AUX_PREFIXES = ("clip_decoder.", "clip_teacher.", "decoder.", "final_fc.", "distill_head.", "text_encoder.",
                "text_proj.", "vision_proj.", "itm_head.", "pool_norm.")
VISION_PREFIX = "vision_encoder."


def is_aux(key: str) -> bool:
    return key in AUX_EXACT or key.startswith(AUX_PREFIXES)


@dataclass
class Checkpoint:
    """One parsed file. ``state_dict``: flat tensors, wrapper and per-key prefixes removed.

    kind: ``"backbone"`` (VideoMamba / Vim / masked-pretraining keys) or ``"video_text"`` (the
    release's video-text layout, ``vision_encoder.*`` kept). ``config``: our saved config dict when
    the file is ours (directory or training checkpoint); ``meta``: ``args`` / ``config`` saved by the
    original scripts, as plain dicts."""

    state_dict: dict[str, torch.Tensor]
    source: str = "<state_dict>"
    format: str = "bare state dict"
    kind: str = "backbone"
    config: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def args(self) -> dict:
        return self.meta.get("args") or {}

    @property
    def release_config(self) -> dict:
        return self.meta.get("config") or self.meta.get("cfg") or {}


def is_video_text_config(cfg: dict) -> bool:
    return cfg.get("architecture") == "VideoTextModel" or cfg.get("model_type") == "video_text"


def _tensors(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def _strip_prefixes(sd: dict, fmt: list[str]) -> dict:
    """Remove wrapper prefixes key by key (a file may mix ``module.x`` and ``y``)."""
    out, seen = {}, set()
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in KEY_PREFIXES:
                if k.startswith(p) and len(k) > len(p):
                    k, changed = k[len(p):], True
                    seen.add(p)
        if k in out:
            raise CheckpointError(f"two checkpoint keys map to {k!r} once prefixes {sorted(seen)} are removed")
        out[k] = v
    fmt += [f"prefix {p!r}" for p in KEY_PREFIXES if p in seen]
    return out


def parse(obj, source: str = "<state_dict>", use_ema: bool | None = None) -> Checkpoint:
    """Whatever a checkpoint file holds -> :class:`Checkpoint`.

    use_ema: take the EMA weights when the file has them (``model_ema`` / ``ema``). ``None``: our
    training checkpoints follow their config (EMA when training evaluated with it), original files
    use their raw weights."""
    if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
        return _parse_training(obj, source, use_ema)
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {source} holds a {type(obj).__name__}, expected a dict of tensors "
                              "or a dict wrapping one")
    fmt, meta = [], {}
    while not _tensors(obj):
        for k in META_KEYS:
            if k in obj and obj[k] is not None and k not in meta:
                meta[k] = plain(obj[k])
        order = (EMA_KEYS + WRAPPER_KEYS) if use_ema else WRAPPER_KEYS
        key = next((k for k in order if isinstance(obj.get(k), dict) and obj[k]), None)
        if key is None:
            raise CheckpointError(f"checkpoint {source}: no state dict found; top-level keys {sorted(map(str, obj))[:20]} "
                                  f"(expected tensors, or one of the wrappers {', '.join(WRAPPER_KEYS)})")
        if use_ema and key not in EMA_KEYS and not fmt:
            raise CheckpointError(f"checkpoint {source} has no EMA weights (no {' / '.join(EMA_KEYS)} entry); "
                                  "load it without use_ema")
        fmt.append(key)
        obj = obj[key]
    sd = _tensors(obj)
    if len(sd) != len(obj):
        others = sorted(str(k) for k in obj if not torch.is_tensor(obj[k]))
        raise CheckpointError(f"checkpoint {source}: state dict has non-tensor entries {others[:10]}")
    sd = _strip_prefixes(sd, fmt)
    kind = "backbone"
    if any(k.startswith("text_encoder.") for k in sd) and any(k.startswith(VISION_PREFIX) for k in sd):
        kind = "video_text"
        fmt.append("video-text")
    elif sd and all(k.startswith(VISION_PREFIX) for k in sd):
        sd = {k[len(VISION_PREFIX):]: v for k, v in sd.items()}
        fmt.append(f"prefix {VISION_PREFIX!r}")
    return Checkpoint(sd, source, " / ".join(fmt) or "bare state dict", kind, None, meta)


def _parse_training(obj: dict, source: str, use_ema: bool | None) -> Checkpoint:
    has_ema = obj.get("ema") is not None
    if use_ema is None:
        train = (obj.get("train_config") or {}).get("train") or {}
        use_ema = has_ema and bool(train.get("ema_eval", True))
    if use_ema and not has_ema:
        raise CheckpointError(f"training checkpoint {source} has no EMA weights; load it without use_ema")
    sd = obj["ema"] if use_ema else obj["model"]
    cfg = dict(obj.get("model_config") or {})
    if not cfg:
        raise CheckpointError(f"training checkpoint {source} has no model_config")
    return Checkpoint(dict(sd), source, "videomamba training checkpoint" + (" (EMA weights)" if use_ema else ""),
                      "video_text" if is_video_text_config(cfg) else "backbone", cfg,
                      {"train_config": obj.get("train_config") or {}})


def read_checkpoint(path_or_obj, use_ema: bool | None = None, allow_unsafe: bool = False) -> Checkpoint:
    """Read a saved directory, a file in any known layout, or an in-memory dict, exactly once."""
    if isinstance(path_or_obj, Checkpoint):
        return path_or_obj
    if not isinstance(path_or_obj, (str, os.PathLike)):
        return parse(path_or_obj, use_ema=use_ema)
    path = Path(path_or_obj)
    if path.is_dir():
        cfg = read_config_dir(path)
        sd = read_file(path, allow_unsafe)
        kind = "video_text" if is_video_text_config(cfg) else "backbone"
        return Checkpoint(sd, str(path), "videomamba directory", kind, cfg)
    return parse(read_file(path, allow_unsafe), str(path), use_ema)
