"""The compiled CPU kernels (selective scan, causal conv): one-off build, cache, entry points.

Glossary: B batch, E channels, L length, N state size, G groups of B/C, K conv width.

The C++ sources (``csrc/cpu_kernels.cpp``, ``csrc/cpu_allocator.cpp``) are compiled on first use (40 s measured on this
2-core machine at load average 10) with ``torch.utils.cpp_extension.load`` and cached in
torch's extension directory, or in
``$VIDEOMAMBA_EXT_DIR`` when set. The module name carries a hash of the source, the compiler
flags, torch's version and location and the CPU's feature flags: a ``-march=native`` binary is
never loaded on a CPU with other features, and each environment keeps its own build. Checkouts of
the same code in one environment share it: the build compiles copies of the sources staged in
the build directory (:func:`staged_sources`). Concurrent first builds (DataLoader workers, DDP ranks, pytest
processes) are serialised by an ``flock`` on a file next to the build, which also clears a
torch ``lock`` file left behind by a build that was killed (torch's own lock would wait on it
forever). If the build fails (no compiler, no ninja, MSVC: the source uses GCC / Clang vector
extensions), :func:`load` records why and returns ``None``; the backend selection
(``backend.py``) then falls back to the pure-torch scan with one warning.

When the kernels load they also install a CPU allocator for tensors of 1 MiB or more
(``csrc/cpu_allocator.cpp``: one mapping per block, freed blocks reused for requests of the same
size), which keeps a training step's memory near its live tensors without glibc's heap holes and
without faulting pages in again. ``VIDEOMAMBA_CPU_ALLOCATOR=system`` keeps torch's own.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import time
from pathlib import Path

import torch

from .selective_scan import check_out

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "cpu_kernels.cpp"
SOURCES = (SOURCE, SOURCE.with_name("cpu_allocator.cpp"))
EXT_DIR_ENV = "VIDEOMAMBA_EXT_DIR"
# The CPU allocator for large tensors (csrc/cpu_allocator.cpp), installed when the kernels load:
# "blocks" (default) or "system" (torch's own, i.e. glibc malloc).
ALLOCATOR_ENV = "VIDEOMAMBA_CPU_ALLOCATOR"
BLOCK_MIN_BYTES = 1 << 20
BLOCK_SLACK = 0.25  # mapped bytes <= (1 + slack) x the most bytes in use at once
# -ffp-contract=fast only lets the compiler fuse a*b+c into an FMA (torch builds with -std=c++17,
# whose ISO default is "off"); unlike -ffast-math it keeps inf/NaN semantics.
BASE_FLAGS = ["-O3", "-DNDEBUG", "-ffp-contract=fast", "-fopenmp"]
NATIVE_FLAGS = ["-march=native"]
LDFLAGS = ["-fopenmp"]  # at::parallel_for is header-only and only parallel under OpenMP

_lock = threading.Lock()
_module = None
_error: str | None = None
_build_seconds: float | None = None


def _cpu_fingerprint() -> str:
    """Feature flags of this CPU (x86 'flags' / arm 'Features'); the machine name otherwise."""
    parts = [platform.machine()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    parts.append(" ".join(sorted(line.split(":", 1)[1].split())))
                    break
    except OSError:
        parts.append(platform.processor())
    return "|".join(parts)


def _flags(native: bool) -> list[str]:
    return BASE_FLAGS + (NATIVE_FLAGS if native else [])


def extension_name(native: bool = True) -> str:
    h = hashlib.sha256()
    # torch's location too: its headers' paths go into the build file, so two environments sharing
    # the cache would otherwise rebuild each other's build in every process that alternates
    for part in (*(src.read_bytes() for src in SOURCES), " ".join(_flags(native)).encode(), torch.__version__.encode(),
                 os.path.dirname(os.path.abspath(torch.__file__)).encode(),
                 (_cpu_fingerprint() if native else platform.machine()).encode()):
        h.update(part)
        h.update(b"\0")
    return f"videomamba_cpu_{h.hexdigest()[:16]}"


def build_directory(name: str) -> str:
    root = os.environ.get(EXT_DIR_ENV)
    if root:
        path = os.path.join(root, name)
        os.makedirs(path, exist_ok=True)
        return path
    from torch.utils.cpp_extension import _get_build_directory
    return _get_build_directory(name, verbose=False)


def _library_path(name: str) -> str:
    return os.path.join(build_directory(name), f"{name}.so")


def is_built() -> bool:
    """True when a build for this CPU is already cached (loading it takes well under a second)."""
    try:
        return any(os.path.exists(_library_path(extension_name(n))) for n in (True, False))
    except Exception:  # noqa: BLE001 - a status query must never raise
        return False


class _BuildLock:
    """Inter-process lock around the build; the kernel releases an flock when a process dies."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "videomamba.lock")
        self.torch_lock = os.path.join(directory, "lock")
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: torch's own lock file is all there is
            return self
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        # Every builder of this name holds our flock first, so a torch lock file seen now was left
        # by a killed build, and torch would wait on it forever.
        if os.path.exists(self.torch_lock):
            log.warning("removing stale build lock %s", self.torch_lock)
            try:
                os.remove(self.torch_lock)
            except FileNotFoundError:
                pass
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        return False


def staged_sources(directory: str, sources=None) -> list[str]:
    """Copies of ``sources`` (default :data:`SOURCES`) in ``directory/src``, written only where missing or different.

    torch's loader writes the sources' absolute paths into the build directory's ninja file, and
    ninja rebuilds when they change: two checkouts of the same code in one environment would then
    rebuild the kernels in every process that alternates between them (20 s and the compiler's
    0.9 GB each time). The build directory is named after the sources' content, so
    compiling from copies inside it gives every such process the same paths."""
    from ..fileio import atomic_path

    staged = os.path.join(directory, "src")
    os.makedirs(staged, exist_ok=True)
    paths = []
    for src in SOURCES if sources is None else sources:
        src = Path(src)
        dst = Path(staged) / src.name
        data = src.read_bytes()
        if not dst.is_file() or dst.read_bytes() != data:
            with atomic_path(dst) as tmp:
                Path(tmp).write_bytes(data)
        paths.append(str(dst))
    return paths


def _build(native: bool):
    from torch.utils.cpp_extension import load as cpp_load

    name = extension_name(native)
    directory = build_directory(name)
    with _BuildLock(directory):
        fresh = not os.path.exists(os.path.join(directory, f"{name}.so"))
        if fresh:
            log.warning("compiling the CPU selective-scan kernel (one-off, cached in %s)", directory)
        t0 = time.perf_counter()
        mod = cpp_load(name=name, sources=staged_sources(directory), extra_cflags=_flags(native),
                       extra_ldflags=LDFLAGS, build_directory=directory, verbose=False)
        return mod, (time.perf_counter() - t0 if fresh else None)


def load():
    """The compiled module, building it on first call; ``None`` if it cannot be built."""
    global _module, _error, _build_seconds
    if _module is not None or _error is not None:
        return _module
    with _lock:
        if _module is not None or _error is not None:
            return _module
        errors = []
        # -march=native first; a compiler that rejects it still gets a portable build.
        for native in (True, False):
            try:
                mod, secs = _build(native)
            except Exception as e:  # noqa: BLE001 - any build failure means "use the fallback"
                errors.append(f"{'native' if native else 'portable'} build: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}")
                continue
            _install_allocator(mod)
            _module, _build_seconds = mod, secs
            return _module
        _error = "; ".join(errors)
        return None


_allocator_state = "not installed (the kernels are not loaded)"


def _install_allocator(mod) -> None:
    """Route CPU tensors of 1 MiB or more through the block cache, unless ``$VIDEOMAMBA_CPU_ALLOCATOR``
    is ``system``. Called once, when the kernels load; tensors that exist already keep their memory."""
    global _allocator_state
    choice = os.environ.get(ALLOCATOR_ENV, "blocks").strip().lower() or "blocks"
    if choice == "system":
        _allocator_state = f"system ({ALLOCATOR_ENV}=system)"
    elif choice != "blocks":
        raise ValueError(f"{ALLOCATOR_ENV} must be 'blocks' or 'system', got {choice!r}")
    elif mod.install_allocator(BLOCK_MIN_BYTES, BLOCK_SLACK):
        _allocator_state = f"blocks (tensors of {BLOCK_MIN_BYTES >> 20} MiB or more)"
    else:
        _allocator_state = "system (another CPU allocator has priority)"


def allocator_state() -> str:
    """Which CPU allocator serves large tensors: ``blocks (...)`` or ``system (why)``."""
    return _allocator_state


def allocator_stats() -> dict:
    """The block cache's counters (``installed``, ``hits``, ``misses``, ``unmapped``, and bytes
    ``in_use`` / ``cached`` / ``peak_in_use`` / ``peak_mapped``); ``{"installed": False}`` without it."""
    return dict(_module.allocator_stats()) if _module is not None else {"installed": False}


def allocator_empty_cache() -> None:
    """Return every cached block to the system (the blocks in use stay)."""
    if _module is not None:
        _module.allocator_empty_cache()


def load_error() -> str | None:
    """Why the kernel could not be built (after :func:`load` returned ``None``)."""
    return _error


def build_seconds() -> float | None:
    """Seconds the first build took in this process, ``None`` if it came from the cache."""
    return _build_seconds


def _kernel_out(out: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``out`` when the kernel can write into it directly (``like``'s dtype, fp32 or bf16, each row
    of L contiguous; any batch and channel strides, e.g. half of a (B, 2E, L) buffer), else None:
    the result is then computed apart and copied into ``out``."""
    if out is None or out.dtype != like.dtype or like.dtype not in (torch.float32, torch.bfloat16):
        return None
    return out if out.shape[-1] <= 1 or out.stride(-1) == 1 else None


def _grouped(X: torch.Tensor) -> torch.Tensor:
    return X.unsqueeze(1) if X.dim() == 3 else X


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, *, reverse=False, out=None):
    """Compiled CPU scan (arguments validated by :func:`videomamba.ops.selective_scan`).

    ``reverse`` scans t = L-1 .. 0 natively; ``out`` (no autograd) receives the result and may be
    the memory of u, delta or z. Under autograd, ``torch.compile`` or ``torch.export`` the scan
    runs as the custom op ``videomamba::selective_scan_fwd`` (``library.py``), whose backward
    saves only the inputs and recomputes the states; eager inference into ``out`` calls the
    kernel directly, so that it can write over an input.
    """
    from .library import is_tracing, selective_scan_op

    args = (u, delta, A, B, C, D, z, delta_bias)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args)
    check_out(out, u, *args)
    if out is None or grad or is_tracing():
        res = selective_scan_op(*args, delta_softplus=bool(delta_softplus),
                                return_last_state=bool(return_last_state), reverse=bool(reverse))
        if out is None:
            return res
        res, last = res if return_last_state else (res, None)
        res = out.copy_(res)
        return (res, last) if return_last_state else res
    direct = _kernel_out(out, u)
    res, last = load().fwd(u, delta, A, _grouped(B), _grouped(C), D, z, delta_bias,
                           bool(delta_softplus), bool(return_last_state), bool(reverse), direct)
    if direct is None:
        res = out.copy_(res)
    return (res, last) if return_last_state else res


def causal_conv1d_cpu(x, weight, bias=None, activation=None, *, reverse=False, out=None):
    """Compiled causal depthwise conv1d: x (B, E, L), weight (E, K), bias (E,) -> x's dtype.

    ``reverse``: causal along t = L-1 .. 0; ``out`` (no autograd) receives the result and may be
    x's own memory. As the scan: the custom op ``videomamba::causal_conv1d_fwd`` except for eager
    inference into ``out``."""
    from .library import causal_conv1d_op, is_tracing

    silu = activation in ("silu", "swish")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    check_out(out, x, x, weight, bias)
    if out is None or grad or is_tracing():
        res = causal_conv1d_op(x, weight, bias, silu, reverse=bool(reverse))
        return res if out is None else out.copy_(res)
    direct = _kernel_out(out, x)
    res = load().conv_fwd(x, weight, bias, silu, bool(reverse), direct)
    return res if direct is not None else out.copy_(res)
