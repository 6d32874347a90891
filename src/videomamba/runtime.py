"""Process-wide settings for long jobs: OpenMP's waiting policy and glibc malloc's mmap threshold.

**OpenMP waiting.** PyTorch's CPU kernels run their parallel regions on an OpenMP thread pool
(GNU libgomp in the Linux wheels). Between regions its threads spin before they sleep, and at
the end of a region every thread waits for the slowest. On a machine whose cores are all busy
(two threads on two cores next to any other CPU-bound process) the thread the scheduler has put
aside is the slowest, and the others burn the core it needs while they spin for it: a small
model's training fell from ~100 to 7-17 clips/s that way. With ``OMP_WAIT_POLICY=PASSIVE`` a
waiting thread sleeps at once and gives its core back. The policy is read once, when the OpenMP
runtime loads (with ``import torch``), so :func:`prefer_passive_openmp` must run before that; the
``videomamba`` command does it first thing (:func:`cli_process_defaults`, called on import of the
package when the process is the ``videomamba`` command). A user's own ``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` is left alone. Whether two threads beat one at all is
decided, and re-decided while training runs, by ``videomamba.engine.threads``.

**malloc.** glibc serves an allocation from its heap unless it is at least the *mmap threshold*,
which starts at 128 KiB and, each time an mmapped block is freed, rises to that block's size (up
to 32 MiB). After the first large frees, tensors of a few MB to 32 MB therefore live in the heap;
the heap only shrinks from its top, so when long-lived tensors (activations saved for backward,
the residual stream) sit between short-lived ones, the freed memory stays charged to the process.
A fixed threshold of 1 MiB (the same as starting with ``MALLOC_MMAP_THRESHOLD_=1048576``) gives
every tensor of 1 MiB or more its own mapping, returned to the system on free: peak RSS then
follows the live tensors, at a price in time (every large tensor is mapped and faulted in again).
Not lower: each mapping costs a system call and page faults, which small models feel most.
The figures, as a user runs it and tuned, are in the benchmark results
(``python benchmarks/run.py``, rows marked "malloc tuned"; ``python benchmarks/bench_malloc.py``).
Once the compiled CPU kernels load, tensors of 1 MiB or more no longer come from malloc at all:
the kernels install an allocator that maps them one by one and reuses freed blocks by size
(``videomamba.ops.cpu_kernel``, ``VIDEOMAMBA_CPU_ALLOCATOR``), which keeps the footprint near the
live tensors without the faults; the mmap threshold then matters only for smaller tensors and for
processes that never load the kernels.

:func:`tune_malloc` is applied by the ``videomamba`` commands that run models for long only when
``VIDEOMAMBA_MALLOC_TUNE=1``; benchmark children apply it only where a configuration asks for it
(the same variable), so that every other row is measured as a user runs it. Opt out with
``VIDEOMAMBA_NO_MALLOC_TUNE=1``; a ``MALLOC_MMAP_THRESHOLD_`` (or ``glibc.malloc.mmap_threshold``
tunable) already in the environment is left to glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 1024 * 1024
OPT_OUT_ENV = "VIDEOMAMBA_NO_MALLOC_TUNE"
TUNE_ENV = "VIDEOMAMBA_MALLOC_TUNE"
_M_MMAP_THRESHOLD = -3  # <malloc.h>
# a user's own choice of how OpenMP threads wait (GNU, LLVM / Intel runtimes)
OMP_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_state: str | None = None
_omp_state: str | None = None


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


def malloc_tune_requested(env=None) -> bool:
    """Whether ``VIDEOMAMBA_MALLOC_TUNE`` asks the long jobs to :func:`tune_malloc`."""
    return (os.environ if env is None else env).get(TUNE_ENV, "").strip() not in ("", "0")


def malloc_state() -> str:
    """What is in effect for malloc's mmap threshold, without changing anything."""
    if _state is not None:
        return _state
    env = os.environ
    if "MALLOC_MMAP_THRESHOLD_" in env:
        return f"environment: MALLOC_MMAP_THRESHOLD_={env['MALLOC_MMAP_THRESHOLD_']}"
    if "glibc.malloc.mmap_threshold" in env.get("GLIBC_TUNABLES", ""):
        return f"environment: GLIBC_TUNABLES={env['GLIBC_TUNABLES']}"
    return "default: glibc's own (not tuned)"


def prefer_passive_openmp(env=None, modules=None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process if nothing decided it yet; returns what is in effect.

    Only before the OpenMP runtime loads (``torch`` not imported yet): after that the variable would
    be read by nobody, and the answer says so. ``env`` / ``modules``: ``os.environ`` / ``sys.modules``
    (replaceable in tests)."""
    global _omp_state
    env = os.environ if env is None else env
    modules = sys.modules if modules is None else modules
    own = [k for k in OMP_WAIT_VARS if k in env]
    if own:
        state = "environment: " + ", ".join(f"{k}={env[k]}" for k in own)
    elif "torch" in modules:
        state = "default: spinning (torch was imported first; OpenMP has read its settings)"
    else:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        state = "OMP_WAIT_POLICY=PASSIVE"
    if env is os.environ:
        _omp_state = state
    return state


def openmp_state() -> str:
    """What :func:`prefer_passive_openmp` found or set in this process (``not set`` if never called)."""
    if _omp_state is not None:
        return _omp_state
    own = [k for k in OMP_WAIT_VARS if k in os.environ]
    return ("environment: " + ", ".join(f"{k}={os.environ[k]}" for k in own)) if own else "not set"


def is_cli_process(argv=None, orig_argv=None) -> bool:
    """True when this interpreter runs the ``videomamba`` command (console script, ``python -m
    videomamba``, ``torchrun ... -m videomamba``)."""
    argv = sys.argv if argv is None else argv
    orig = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in ("videomamba", "videomamba.exe"):
        return True
    for i, a in enumerate(orig[:-1]):
        if a == "-m":
            return orig[i + 1] == "videomamba"
    return False


def cli_process_defaults() -> str | None:
    """The settings the ``videomamba`` command applies before torch loads (passive OpenMP waiting).
    Called on import of the package; does nothing in other processes (returns None)."""
    if not is_cli_process():
        return None
    return prefer_passive_openmp()


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
