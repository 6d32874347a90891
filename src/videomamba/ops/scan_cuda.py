"""Adapters to mamba_ssm's ``selective_scan_fn`` and causal_conv1d's ``causal_conv1d_fn`` (CUDA).

Glossary: B batch, E channels, L length, N state size, G groups of B/C, K conv width.

Both packages are imported lazily through ``backend.py``, so ``import videomamba`` never needs
them. The adapters only make our inputs meet the kernels' dtype contract (from mamba's
``csrc/selective_scan/selective_scan.cpp``): u, delta, z and a per-step B / C share one input
dtype in {fp32, fp16, bf16}; A, D and delta_bias are fp32. The conv's bias must match the weight's
dtype. Known difference from the other backends: mamba_ssm gives no gradient through the
returned last state (its docstring says so); ours do.
"""
from __future__ import annotations

import torch

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False, *, _fn=None):
    """mamba_ssm's fused scan; ``_fn`` replaces the kernel in tests."""
    if _fn is None:
        from .backend import cuda_scan_kernel
        _fn, why = cuda_scan_kernel()
        if _fn is None:
            raise RuntimeError(f"mamba_ssm is unavailable: {why}")
    dtype_in = u.dtype
    it = dtype_in if dtype_in in _KERNEL_DTYPES else torch.float32
    res = _fn(u.to(it), delta.to(it), A.float(), B.to(it), C.to(it),
              None if D is None else D.float(), None if z is None else z.to(it),
              None if delta_bias is None else delta_bias.float(), bool(delta_softplus),
              bool(return_last_state))
    if return_last_state:
        out, last = res
        return out.to(dtype_in), last.float()
    return res.to(dtype_in)


def causal_conv1d_cuda(x, weight, bias=None, activation=None, *, _fn=None):
    """causal_conv1d's fused kernel (widths 2..4; backend.py checks)."""
    if _fn is None:
        from .backend import cuda_conv_kernel
        _fn, why = cuda_conv_kernel()
        if _fn is None:
            raise RuntimeError(f"causal_conv1d is unavailable: {why}")
    dtype_in = x.dtype
    it = dtype_in if dtype_in in _KERNEL_DTYPES else torch.float32
    w = weight if weight.dtype in _KERNEL_DTYPES else weight.float()
    b = None if bias is None else bias.to(w.dtype)
    return _fn(x.to(it), w, b, activation=activation).to(dtype_in)
