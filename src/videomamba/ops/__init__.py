"""Kernels: selective scan, causal depthwise conv1d, RMSNorm. The only home of kernels."""
from .backend import BACKENDS, ENV_VAR
from .conv import causal_conv1d, causal_conv1d_ref
from .norm import rms_norm, rms_norm_ref
from .selective_scan import selective_scan, selective_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "causal_conv1d", "causal_conv1d_ref",
           "rms_norm", "rms_norm_ref", "BACKENDS", "ENV_VAR"]
