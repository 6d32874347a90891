"""Process-wide settings for long jobs: glibc malloc's mmap threshold.

glibc serves an allocation from its heap unless it is at least the *mmap threshold*, which
starts at 128 KiB and, each time an mmapped block is freed, rises to that block's size (up to
32 MiB). After the first large frees, tensors of a few MB to 32 MB therefore live in the heap;
the heap only shrinks from its top, so when long-lived tensors (activations saved for backward,
the residual stream) sit between short-lived ones, the freed memory stays charged to the
process. A VideoMamba training step at 64 frames measured 2.6-3.8 GB peak RSS for 0.45 GB of
live tensors (benchmarks/README.md). A fixed threshold of 1 MiB (the same as starting with
``MALLOC_MMAP_THRESHOLD_=1048576``) gives every tensor of 1 MiB or more its own mapping, returned
to the system on free: peak RSS then follows the live tensors. Not lower: each mapping costs a
system call and page faults, and at 64 KiB a small model's training step (the demo's: D=64,
batch 8, 129 tokens, tensors of about 0.5-1 MB) ran 2.4x slower; at 1 MiB within
about 15 % of the default, which is within this machine's run-to-run noise
(``python benchmarks/bench_malloc.py``).

:func:`tune_malloc` is called by every benchmark child, ours and the peers alike, and by the
``videomamba`` commands that run models for long only when ``VIDEOMAMBA_MALLOC_TUNE=1``: it
costs time (a VideoMamba-Ti 64-frame training step measured 9.1-9.7 s / 3.7 GB peak RSS with
glibc's default and 16.5 s / 0.97 GB with the threshold, 2 threads). Opt out with ``VIDEOMAMBA_NO_MALLOC_TUNE=1``; a ``MALLOC_MMAP_THRESHOLD_`` (or
``glibc.malloc.mmap_threshold`` tunable) already in the environment is left to glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 1024 * 1024
OPT_OUT_ENV = "VIDEOMAMBA_NO_MALLOC_TUNE"
_M_MMAP_THRESHOLD = -3  # <malloc.h>

_state: str | None = None


def _glibc():
    """The C library if it is glibc (it has mallopt and gnu_get_libc_version), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - musl and others lack it
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc() -> str:
    """Fix glibc's mmap threshold at 1 MiB for this process (once); returns what is in effect.

    The answer, also recorded by the benchmark children: ``mallopt M_MMAP_THRESHOLD=1048576``,
    ``environment: ...`` (the user's own setting, untouched), ``default: opted out``,
    ``default: not glibc`` or ``default: mallopt failed``.
    """
    global _state
    if _state is not None:
        return _state
    env = os.environ
    if env.get(OPT_OUT_ENV, "").strip() not in ("", "0"):
        _state = f"default: opted out ({OPT_OUT_ENV})"
    elif "MALLOC_MMAP_THRESHOLD_" in env:
        _state = f"environment: MALLOC_MMAP_THRESHOLD_={env['MALLOC_MMAP_THRESHOLD_']}"
    elif "glibc.malloc.mmap_threshold" in env.get("GLIBC_TUNABLES", ""):
        _state = f"environment: GLIBC_TUNABLES={env['GLIBC_TUNABLES']}"
    else:
        libc = _glibc()
        if libc is None:
            _state = "default: not glibc"
        elif libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:
            _state = f"mallopt M_MMAP_THRESHOLD={MMAP_THRESHOLD}"
        else:
            _state = "default: mallopt failed"
    return _state


# --------------------------------------------------------------------------- device and autocast
def resolve_device(name: str = "auto", local_rank: int = 0):
    """``auto`` -> this rank's CUDA device when there is one, else the CPU; ``cuda`` -> this rank's."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available; use device=cpu or auto")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    return torch.device(name)


def resolve_amp(amp: str, device):
    """Autocast dtype for ``amp`` (auto | bf16 | fp16 | none) on ``device``: auto -> bf16 on CUDA when
    supported, fp32 (None) on CPU; fp16 is refused on CPU (orders of magnitude slower there)."""
    import torch

    if amp == "none":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("amp=fp16 is not supported on CPU (fp16 autocast is ~100x slower there); "
                             "use amp=bf16 or none")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise ValueError(f"amp={amp!r} is not valid; expected auto, bf16, fp16 or none")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
