"""Reading checkpoint files safely, and our own directory format.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers, plus an
allow-list of the few harmless classes that real training files carry (``argparse.Namespace``,
EasyDict configs, numpy scalars in optimizer states). Nothing else is unpickled unless the caller
says the file is trusted (``allow_unsafe=True``).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
from pathlib import Path

import torch

from ..fileio import atomic_path, atomic_write_text

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or made to fit a model; the message names the file and keys."""


def _safe_globals() -> list:
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    out = [argparse.Namespace, collections.OrderedDict, set, frozenset, 
           # the original video-text configs are EasyDicts: read as ordered dicts (no package, no code)
           (collections.OrderedDict, "easydict.EasyDict"),
           (core.multiarray.scalar, "numpy.core.multiarray.scalar"),
           (core.multiarray.scalar, "numpy._core.multiarray.scalar"), np.dtype]
    out += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return out


def read_file(path: str | os.PathLike, allow_unsafe: bool = False):
    """The object stored in a ``.pth``/``.pt``/``.bin``/``.safetensors`` file (a directory: its
    ``model.safetensors``). Errors name the file and say what was expected."""
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
        first = str(e).splitlines()[0][:200]
        raise CheckpointError(f"checkpoint {path} contains Python objects outside the safe allow-list ({first}). "
                              "If you trust this file, load it with allow_unsafe=True "
                              "(CLI: --allow-unsafe-pickle).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} could not be read (truncated, or not a PyTorch / safetensors "
                              f"file): {str(e).splitlines()[0][:200]}") from None


def plain(obj):
    """Namespaces, EasyDicts and OrderedDicts -> plain dicts (recursively); other values unchanged."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------- own format
def save_pretrained(model, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (atomically) so that
    ``create_model(pretrained=directory)`` rebuilds this exact model.

    ``config.json`` holds the model's config (``model.cfg.to_dict()``) and an ``architecture`` field
    naming the model class; ``extra`` is merged into the config's ``extra`` (class names,
    preprocessing)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # tied weights (e.g. an MLM decoder sharing the word embeddings) are stored once each
    seen: dict[int, str] = {}
    for k in list(sd):
        ptr = sd[k].data_ptr()
        if ptr in seen and sd[k].numel():
            sd[k] = sd[k].clone()
        seen.setdefault(ptr, k)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "library": "videomamba"})
    cfg = model.cfg.to_dict()
    if extra:
        cfg["extra"] = {**cfg.get("extra", {}), **extra}
    cfg["architecture"] = type(model).__name__
    atomic_write_text(directory / CONFIG_NAME, json.dumps(cfg, indent=2, sort_keys=True))
    return directory


def read_config_dir(directory: str | os.PathLike) -> dict:
    """The ``config.json`` of a saved directory, as a dict (``architecture`` defaults to VideoMamba)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME}; expected a directory written by save_pretrained "
                              f"(model.safetensors + config.json)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} holds a {type(cfg).__name__}, expected a JSON object")
    cfg.setdefault("architecture", "VideoMamba")
    return cfg
