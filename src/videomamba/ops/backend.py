"""The one place that decides which kernel runs.

Backends (``backend=`` argument, else the innermost ``with use_backend(name):``, else the
``VIDEOMAMBA_SCAN_BACKEND`` environment variable, else ``auto``):

- ``auto``: mamba_ssm's CUDA kernels for CUDA tensors when they import; the compiled CPU kernel
  for CPU tensors when it builds; otherwise the pure-torch chunked scan, with one warning.
- ``ref``: the sequential oracle (slow; for tests and debugging).
- ``torch``: the pure-torch chunked scan (any device, no compiler).
- ``cpu`` / ``cuda``: that kernel or a clear error; never a silent fallback.

Every backend computes the same function; both scan directions are the caller's business and
are never dropped. The causal conv follows the same choice, except that a missing
``causal_conv1d`` under ``cuda`` falls back to torch with a warning (the scan, the costly part,
still runs its kernel). RMSNorm under autograd runs the CPU kernels' fused forward and backward
under ``auto`` / ``cpu`` for fp32 CPU tensors, its reference otherwise (``norm.py``).
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

ENV_VAR = "VIDEOMAMBA_SCAN_BACKEND"
BACKENDS = ("auto", "ref", "torch", "cpu", "cuda")
_warned: set[str] = set()
_import_cache: dict[str, tuple[object, str | None]] = {}


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def _reset() -> None:
    """Forget warnings and import probes (tests)."""
    _warned.clear()
    _import_cache.clear()


# Innermost last. A plain list, not a ContextVar: torch.compile reads (and guards on) it.
_scoped: list[str] = []


@contextlib.contextmanager
def use_backend(name: str):
    """Within the block, scans and convs that get no ``backend`` argument use ``name`` (it wins
    over the environment variable). Tracing for ONNX runs under ``use_backend("torch")``, so that
    the graph holds plain torch ops instead of the compiled kernels."""
    name = requested_backend(name)
    _scoped.append(name)
    try:
        yield name
    finally:
        _scoped.pop()


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument, else :func:`use_backend`'s, else the environment
    variable, else ``auto``."""
    scoped = _scoped[-1] if _scoped else None
    name = (backend or scoped or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if name not in BACKENDS:
        src = ("backend argument" if backend else "use_backend" if scoped
               else f"environment variable {ENV_VAR}")
        raise ValueError(f"unknown scan backend {name!r} (from the {src}); expected one of "
                         f"{', '.join(BACKENDS)}")
    return name


def _probe(key: str, importer):
    """(object, None) if ``importer()`` works, else (None, reason); cached per process."""
    if key not in _import_cache:
        try:
            _import_cache[key] = (importer(), None)
        except Exception as e:  # noqa: BLE001 - a broken install must read as "unavailable"
            _import_cache[key] = (None, f"{type(e).__name__}: {e}")
    return _import_cache[key]


def cuda_scan_kernel():
    """(mamba_ssm's ``selective_scan_fn``, None) or (None, why not)."""
    def imp():
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        return selective_scan_fn
    return _probe("mamba_ssm", imp)


def cuda_conv_kernel():
    """(``causal_conv1d_fn``, None) or (None, why not)."""
    def imp():
        from causal_conv1d import causal_conv1d_fn
        return causal_conv1d_fn
    return _probe("causal_conv1d", imp)


def cpu_kernel_status(build: bool = True) -> tuple[bool | None, str]:
    """(True, detail) if the compiled CPU kernel is usable; (None, ...) when not built yet and
    ``build`` is False; (False, reason) when the build failed."""
    from . import cpu_kernel

    if cpu_kernel._module is not None:
        secs = cpu_kernel.build_seconds()
        return True, "compiled kernel loaded" + (f" (built in {secs:.0f} s)" if secs else "")
    if cpu_kernel.load_error() is not None:
        return False, cpu_kernel.load_error()
    if not build:
        if cpu_kernel.is_built():
            return None, "compiled kernel cached, loads on first CPU scan"
        return None, "not built yet: compiles on the first CPU scan (under a minute, once)"
    mod = cpu_kernel.load()
    return (True, "compiled kernel loaded") if mod is not None else (False, cpu_kernel.load_error())


# Under torch.compile these run once at trace time and their answer is a constant of the graph:
# dynamo cannot trace the build's lock, file probes or imports.
@torch.compiler.assume_constant_result
def _cpu_kernel_usable() -> bool:
    return bool(cpu_kernel_status(build=True)[0])


@torch.compiler.assume_constant_result
def _cuda_scan_usable() -> bool:
    return cuda_scan_kernel()[0] is not None


@torch.compiler.assume_constant_result
def _cuda_conv_usable() -> bool:
    return cuda_conv_kernel()[0] is not None


def resolve(backend: str | None, device: torch.device | str) -> str:
    """The concrete scan implementation, one of ``ref``, ``torch``, ``cpu``, ``cuda``."""
    name = requested_backend(backend)
    dev = torch.device(device).type
    if name in ("ref", "torch"):
        return name
    if name == "cpu":
        if dev != "cpu":
            raise ValueError(f"scan backend 'cpu' needs CPU tensors, got {dev} tensors")
        if not _cpu_kernel_usable():
            raise RuntimeError(f"scan backend 'cpu' was requested but the CPU kernel is "
                               f"unavailable: {cpu_kernel_status(build=False)[1]}")
        return "cpu"
    if name == "cuda":
        if dev != "cuda":
            raise ValueError(f"scan backend 'cuda' needs CUDA tensors, got {dev} tensors")
        if not _cuda_scan_usable():
            raise RuntimeError(f"scan backend 'cuda' was requested but mamba_ssm is unavailable "
                               f"({cuda_scan_kernel()[1]}); install mamba-ssm, or use 'torch'")
        return "cuda"
    # auto
    if dev == "cuda":
        if _cuda_scan_usable():
            return "cuda"
        _warn_once("auto-cuda", f"mamba_ssm is not importable ({cuda_scan_kernel()[1]}); the "
                   "selective scan runs the pure-torch path on CUDA, which is slower. Install "
                   "mamba-ssm and causal-conv1d for the fused kernels.")
        return "torch"
    if dev == "cpu":
        if _cpu_kernel_usable():
            return "cpu"
        _warn_once("auto-cpu", f"the compiled CPU scan kernel is unavailable "
                   f"({cpu_kernel_status(build=False)[1]}); using the pure-torch scan, several "
                   "times slower.")
        return "torch"
    return "torch"


def get_scan_impl(backend: str | None, u: torch.Tensor):
    """The scan function for ``u``'s device under ``backend`` (see :func:`resolve`)."""
    name = resolve(backend, u.device)
    if name == "ref":
        from .selective_scan import selective_scan_ref
        return selective_scan_ref
    if name == "torch":
        from .scan_torch import selective_scan_torch
        return selective_scan_torch
    if name == "cpu":
        from .cpu_kernel import selective_scan_cpu
        return selective_scan_cpu
    from .scan_cuda import selective_scan_cuda
    return selective_scan_cuda


def resolve_conv(backend: str | None, device: torch.device | str, width: int) -> str:
    """The causal-conv implementation: ``ref`` (F.conv1d), ``cpu`` or ``cuda``."""
    name = requested_backend(backend)
    dev = torch.device(device).type
    if name in ("ref", "torch"):
        return "ref"
    if dev == "cuda" and name in ("auto", "cuda"):
        if not _cuda_conv_usable():
            _warn_once("conv-cuda", f"causal_conv1d is not importable ({cuda_conv_kernel()[1]}); "
                       "the causal conv runs F.conv1d.")
        elif not 2 <= width <= 4:
            _warn_once(f"conv-width-{width}", f"causal_conv1d covers widths 2..4, not {width}; "
                       "the causal conv runs F.conv1d.")
        else:
            return "cuda"
        return "ref"
    if dev == "cpu" and name in ("auto", "cpu"):
        # The scan's resolution already warned or raised if the kernel is missing.
        return _cpu_or_ref(name)
    return "ref"


def resolve_norm(device: torch.device | str) -> str:
    """RMSNorm's implementation under autograd: ``cpu`` (the compiled kernels' forward and
    backward) or ``ref``. The requested backend decides as for the causal conv."""
    name = requested_backend()
    if torch.device(device).type == "cpu" and name in ("auto", "cpu"):
        return _cpu_or_ref(name)
    return "ref"


def _cpu_or_ref(name: str) -> str:
    """``cpu`` when the compiled CPU kernels are usable, else ``ref``; an error if ``name`` (the
    requested backend) is ``cpu``."""
    if _cpu_kernel_usable():
        return "cpu"
    if name == "cpu":
        raise RuntimeError("backend 'cpu' was requested but the CPU kernels are unavailable: "
                           f"{cpu_kernel_status(build=False)[1]}")
    return "ref"


def available_backends(device: str = "cpu", build: bool = True) -> list[str]:
    """Concrete scan backends usable for tensors on ``device`` (building the CPU kernel if needed)."""
    dev = torch.device(device).type
    out = ["ref", "torch"]
    if dev == "cpu" and cpu_kernel_status(build=build)[0]:
        out.append("cpu")
    if dev == "cuda" and cuda_scan_kernel()[0] is not None:
        out.append("cuda")
    return out


def describe_backends(build: bool = False) -> dict[str, str]:
    """A JSON-friendly summary for ``videomamba info``; does not compile unless ``build``."""
    try:
        requested = requested_backend()
    except ValueError as e:
        requested = f"invalid: {e}"
    cpu_ok, cpu_detail = cpu_kernel_status(build=build)
    cuda_fn, cuda_why = cuda_scan_kernel()
    conv_fn, conv_why = cuda_conv_kernel()
    cuda_dev = torch.cuda.is_available()
    if cuda_fn is not None:
        cuda = "mamba_ssm kernels importable" + ("" if cuda_dev else " (no CUDA device visible)")
        cuda += "; causal_conv1d " + ("importable" if conv_fn is not None else f"missing ({conv_why})")
    else:
        cuda = f"unavailable: {cuda_why}"
    cpu = {True: "available: ", False: "unavailable: ", None: ""}[cpu_ok] + cpu_detail
    auto_cpu = "cpu" if cpu_ok in (True, None) else "torch (fallback)"
    auto_cuda = "cuda" if cuda_fn is not None else "torch (fallback)"
    return {"requested": requested, "auto_on_cpu": auto_cpu, "auto_on_cuda": auto_cuda,
            "cpu": cpu, "cuda": cuda, "torch": "available: pure torch, any device",
            "ref": "available: sequential oracle (slow)"}
