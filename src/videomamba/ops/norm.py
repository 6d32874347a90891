"""RMSNorm with weight only and fp32 math: x * rsqrt(mean(x^2) + eps) * weight.

Glossary: D the normalised (last) dimension, R the rows (every leading dimension flattened).

``rms_norm_ref`` is the oracle. Without autograd, ``F.rms_norm`` on the fp32 input gives the
reference's numbers (bit-identical here) about 1.1-2x faster (benchmarks/bench_scan.py, aux
section). Under autograd (training), fp32 CPU tensors run the compiled kernels' forward and
backward (``csrc/cpu_kernels.cpp``, chosen by ``backend.resolve_norm``): the forward keeps one
float per row besides its inputs, and the backward is one pass over x and the output's gradient,
where the reference's graph keeps an (R, D) temporary and runs six backward ops. At
(1, 12545, 192) on 2 shared cores, forward + backward took 0.6-1.0 ms against the reference's
3.8-4.8 ms (medians of 20). The output is the reference's bit for bit, the gradients equal its
gradients to fp32 rounding (tests/ops/test_rms_norm_kernel.py); a gradient taken with
``create_graph`` goes through the reference's graph. Everything else under autograd (other
dtypes or devices, ``torch.compile`` / ``torch.export``, the ``ref`` / ``torch`` backends, a CPU
without the kernels) runs the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .backend import resolve_norm
from .library import is_tracing


def _check(x, weight):
    if x.shape[-1:] != weight.shape:
        raise ValueError(f"weight must have shape (D,) = ({x.shape[-1]},), got {tuple(weight.shape)}")


def _out_dtype(x, weight):
    # The residual stream is fp32 and so is the weight: the output follows the weight.
    return weight.dtype if torch.is_floating_point(weight) else x.dtype


def rms_norm_ref(x, weight, eps: float = 1e-5):
    _check(x, weight)
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return out.to(_out_dtype(x, weight))


class _KernelRMSNorm(torch.autograd.Function):
    """RMSNorm of fp32 CPU tensors on the compiled kernels; saves x, weight and rstd (R,)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        from .cpu_kernel import load

        # rstd with the reference's ops on x as given: the output is then the reference's, bit for
        # bit, as is the inference path's (F.rms_norm), so that training and evaluation give the
        # same logits and the blocks' memory-light backward rebuilds exactly what its forward used
        rstd = torch.rsqrt(x.pow(2).mean(-1) + eps).reshape(-1)                    # (R,)
        out = load().rms_norm_fwd(x.reshape(-1, x.shape[-1]), weight, rstd)      # (R, D)
        ctx.save_for_backward(x, weight, rstd)
        ctx.eps = eps
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, dout):
        x, weight, rstd = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():
            # create_graph: a gradient that is itself differentiable, through the reference's graph
            wrt = [t for t, need in ((x, need_x), (weight, need_w)) if need]
            got = iter(torch.autograd.grad(rms_norm_ref(x, weight, ctx.eps), wrt, dout, create_graph=True))
            return (next(got) if need_x else None), (next(got) if need_w else None), None
        from .cpu_kernel import load

        D = x.shape[-1]
        dx, dweight = load().rms_norm_bwd(x.reshape(-1, D), weight, rstd, dout.reshape(-1, D))
        return (dx.view(x.shape) if need_x else None), (dweight if need_w else None), None


def _kernel_applies(x, weight) -> bool:
    """Whether autograd's RMSNorm runs the compiled kernels (see the module's docstring)."""
    return (not is_tracing() and x.dtype == weight.dtype == torch.float32
            and x.device.type == weight.device.type == "cpu" and resolve_norm(x.device) == "cpu")


def rms_norm(x, weight, eps: float = 1e-5, out: torch.Tensor | None = None):
    """(..., D) -> (..., D) in the weight's dtype, computed in fp32.

    ``out`` (no autograd; fp32 x and weight): a contiguous tensor of x's shape that receives the
    result. The reference's operations then run in it, in the same order (the same numbers, bit
    for bit), instead of allocating a temporary of x's size for each of them.
    """
    _check(x, weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        if out is not None:
            raise ValueError("out= is for inference: it cannot be used while autograd records the op")
        if _kernel_applies(x, weight):
            return _KernelRMSNorm.apply(x, weight, float(eps))
        return rms_norm_ref(x, weight, eps)
    if out is not None and x.dtype == weight.dtype == out.dtype == torch.float32:
        if out.shape != x.shape or not out.is_contiguous():
            raise ValueError(f"out must be contiguous of shape {tuple(x.shape)}, got {tuple(out.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            torch.pow(x, 2, out=out)
            ms = out.mean(-1, keepdim=True).add_(eps).rsqrt_()
            return torch.mul(x, ms, out=out).mul_(weight)
    res = F.rms_norm(x.float(), (x.shape[-1],), weight.float(), eps).to(_out_dtype(x, weight))
    return res if out is None else out.copy_(res)
