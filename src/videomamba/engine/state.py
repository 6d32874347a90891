"""Training checkpoints: everything a resumed run needs, written atomically, last-k + best kept.

A training checkpoint is a plain dict of tensors and Python scalars, loadable with
``torch.load(weights_only=True)``. It holds the model, optimizer, schedule, grad scaler, EMA,
step / epoch / position in the epoch, every rank's RNG states, the training config and the model
config (with class names and preprocessing in ``extra``), so it also serves ``eval`` / ``predict``
through ``create_model(pretrained=...)``.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from ..checkpoint.formats import TRAIN_FORMAT as FORMAT
from ..fileio import atomic_torch_save

_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def capture_rng() -> dict:
    """This process's RNG states in a weights_only-loadable form."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    ver, py_state, py_gauss = random.getstate()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "gauss": float(gauss)},
          "python": {"version": ver, "state": list(py_state), "gauss": py_gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def step_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    d = checkpoint_dir(out_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = step_checkpoints(out_dir)
    return found[-1][1] if found else None


def save_training_checkpoint(state: dict, out_dir: str | Path, keep_last: int) -> Path:
    """Write ``checkpoints/step_XXXXXXXX.pt`` atomically, then delete all but the newest ``keep_last``."""
    path = checkpoint_dir(out_dir) / f"step_{state['step']:08d}.pt"
    atomic_torch_save({"format": FORMAT, **state}, path)
    for _, old in step_checkpoints(out_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def save_best(state: dict, out_dir: str | Path) -> Path:
    path = checkpoint_dir(out_dir) / "best.pt"
    atomic_torch_save({"format": FORMAT, **state}, path)
    return path


def load_training_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a videomamba training checkpoint (no format={FORMAT!r}); "
                         f"to fine-tune from weights, set model.pretrained instead of resuming")
    return state


def resolve_resume(resume: str | Path | bool | None, out_dir: str | Path) -> Path | None:
    """``True`` / ``"auto"``: newest step checkpoint in ``out_dir`` (None if there is none yet);
    a path: that file, or the newest checkpoint in that run directory."""
    if resume in (None, False):
        return None
    if resume is True or str(resume) == "auto":
        return latest_checkpoint(out_dir)
    p = Path(resume)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise FileNotFoundError(f"no checkpoints/step_*.pt under {p} to resume from")
        return found
    if not p.is_file():
        raise FileNotFoundError(f"resume checkpoint {p} does not exist")
    return p
