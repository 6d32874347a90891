"""Kernels: selective scan, causal depthwise conv1d, RMSNorm. The only home of kernels.

Each op has a readable reference (``*_ref``) and fast paths chosen in ``backend.py``.
"""
from .backend import BACKENDS, ENV_VAR, available_backends, describe_backends, use_backend
from . import library  # noqa: F401 - registers the videomamba:: custom ops
from .conv import causal_conv1d, causal_conv1d_ref
from .norm import rms_norm, rms_norm_ref
from .selective_scan import selective_scan, selective_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "causal_conv1d", "causal_conv1d_ref",
           "rms_norm", "rms_norm_ref", "BACKENDS", "ENV_VAR", "available_backends",
           "describe_backends", "use_backend"]
