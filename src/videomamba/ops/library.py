"""The compiled kernels as ``torch.library`` custom ops, so that ``torch.compile(fullgraph=True)``
and ``torch.export`` see each kernel as one opaque op with a shape function and a gradient.

Glossary: B batch, E channels, L length, N state size, G groups of B/C, K conv width.

Ops (namespace ``videomamba``; ``?`` marks an optional tensor):

- ``selective_scan_fwd(u, delta, A, B, C, D?, z?, delta_bias?, delta_softplus, return_last_state,
  reverse) -> (out, last)``: out (B, E, L) in u's dtype; last (B, E, N) fp32, or an empty (0,)
  tensor when ``return_last_state`` is False (an op cannot return None).
- ``selective_scan_bwd(u, delta, A, B, C, D?, z?, delta_bias?, delta_softplus, reverse, dout,
  dlast?) -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)``, fp32; the gradient of an absent
  input is an empty (0,) tensor.
- ``causal_conv1d_fwd(x, weight, bias?, silu, reverse) -> out`` (B, E, L) in x's dtype.
- ``causal_conv1d_bwd(x, weight, bias?, silu, reverse, dout) -> (dx, dweight, dbias)``, fp32.

B and C are grouped, (B, G, N, L) (the callers add G = 1). Each forward op has a fake
implementation (shapes and dtypes only) and ``register_autograd`` with its backward op, which
saves only the inputs and recomputes what it needs. ``selective_scan_op`` / ``causal_conv1d_op``
call the ops under ``torch.compile`` / ``torch.export``; in eager mode they run the same
implementations and backward through an ``autograd.Function``, without the dispatcher's cost.

Devices: on CPU the kernels of ``cpu_kernel.py``. The scan ops also run on CUDA through
mamba_ssm's ``selective_scan_fn`` (forward without autograd; the backward re-runs it under
autograd), so a compiled model keeps mamba_ssm's kernel; mamba_ssm gives no gradient through the
last state. Importing this module registers the ops (``import videomamba`` does), which a saved
``torch.export`` program needs before ``torch.export.load``.
"""
from __future__ import annotations

import torch

__all__ = ["selective_scan_fwd", "selective_scan_bwd", "causal_conv1d_fwd", "causal_conv1d_bwd",
           "selective_scan_op", "causal_conv1d_op", "is_tracing", "scan_bwd_with_output"]

_EMPTY_SHAPE = (0,)


def is_tracing() -> bool:
    """True under ``torch.compile`` / ``torch.export`` tracing (dynamo or non-strict)."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting())


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(_EMPTY_SHAPE, dtype=torch.float32)


def _present(t: torch.Tensor | None) -> torch.Tensor | None:
    """An optional gradient coming back from an op: None for the (0,) placeholder."""
    return None if t is None or t.dim() == 1 and t.shape[0] == 0 else t


def _kernel():
    from .cpu_kernel import load, load_error
    mod = load()
    if mod is None:
        raise RuntimeError(f"the compiled CPU kernel is unavailable: {load_error()}")
    return mod


def _cuda_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, reverse):
    """mamba_ssm's scan on grouped B / C, with ``reverse`` as flip -> scan -> flip."""
    from .scan_cuda import selective_scan_cuda

    def flip(t):
        return None if t is None else t.flip(-1)
    if reverse:
        u, delta, B, C, z = flip(u), flip(delta), flip(B), flip(C), flip(z)
    res = selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              return_last_state)
    out, last = res if return_last_state else (res, None)
    return (out.flip(-1) if reverse else out), last


# --------------------------------------------------------------------------- selective scan
def _scan_fwd_impl(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                       delta_bias: torch.Tensor | None, delta_softplus: bool,
                       return_last_state: bool, reverse: bool
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    if u.device.type == "cuda":
        # mamba_ssm's autograd.Function must not record: the op's backward is registered below.
        with torch.no_grad():
            out, last = _cuda_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                   return_last_state, reverse)
    else:
        out, last = _kernel().fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, reverse, None)
    return out, (last if return_last_state else _empty(u))


selective_scan_fwd = torch.library.custom_op("videomamba::selective_scan_fwd", _scan_fwd_impl,
                                             mutates_args=(), device_types=("cpu", "cuda"))


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, reverse):
    Bz, E, _L = u.shape
    last = (u.new_empty((Bz, E, A.shape[1]), dtype=torch.float32) if return_last_state
            else _empty(u))
    return torch.empty_like(u, memory_format=torch.contiguous_format), last


def _scan_bwd_impl(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                       delta_bias: torch.Tensor | None, delta_softplus: bool, reverse: bool,
                       dout: torch.Tensor, dlast: torch.Tensor | None) -> list[torch.Tensor]:
    if u.device.type == "cuda":
        grads = _cuda_scan_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, dout)
    else:
        grads = _kernel().bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dout, dlast,
                              reverse)
    # Absent inputs -> (0,) placeholders; the kernel returns dD / ddelta_bias zeros even then.
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    return [g if g is not None and x is not None else _empty(u) for g, x in zip(grads, inputs)]


selective_scan_bwd = torch.library.custom_op("videomamba::selective_scan_bwd", _scan_bwd_impl,
                                             mutates_args=(), device_types=("cpu", "cuda"))


@selective_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, dout, dlast):
    f32 = torch.float32

    def like(x, shape):
        return _empty(u) if x is None else u.new_empty(shape, dtype=f32)
    return [u.new_empty(u.shape, dtype=f32), u.new_empty(u.shape, dtype=f32),
            u.new_empty(A.shape, dtype=f32), u.new_empty(B.shape, dtype=f32),
            u.new_empty(C.shape, dtype=f32), like(D, (u.shape[1],)), like(z, u.shape),
            like(delta_bias, (u.shape[1],))]


def _cuda_scan_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, dout, _fn=None):
    """Gradients on CUDA: mamba_ssm's forward re-run under autograd, then its backward.

    ``_fn`` replaces the forward (tests run this on CPU with the oracle). Returns fp32 grads in
    the kernel's order; None for absent inputs.
    """
    inputs = [None if t is None else t.detach().requires_grad_(True)
              for t in (u, delta, A, B, C, D, z, delta_bias)]
    with torch.enable_grad():
        if _fn is None:
            out, _ = _cuda_scan(*inputs, delta_softplus, False, reverse)
        else:
            out = _fn(*inputs, delta_softplus=delta_softplus, reverse=reverse)
        live = [t for t in inputs if t is not None]
        grads = iter(torch.autograd.grad(out, live, dout.to(out.dtype), allow_unused=True))
    res = []
    for t in inputs:
        g = None if t is None else next(grads)
        res.append(None if t is None else (torch.zeros_like(t, dtype=torch.float32) if g is None
                                           else g.float()))
    return res


def _cast(g: torch.Tensor | None, x: torch.Tensor | None):
    g = _present(g)
    return None if g is None or x is None else g.to(x.dtype)


def _scan_setup(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, reverse = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.delta_softplus, ctx.return_last_state, ctx.reverse = delta_softplus, return_last_state, reverse


def _scan_backward(ctx, dout, dlast, bwd=None):
    u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
    dlast = dlast if ctx.return_last_state else None
    grads = (bwd or torch.ops.videomamba.selective_scan_bwd)(
        u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, ctx.reverse, dout.contiguous(),
        None if dlast is None else dlast.contiguous())
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    return (*(_cast(g, x) for g, x in zip(grads, inputs)), None, None, None)


selective_scan_fwd.register_autograd(_scan_backward, setup_context=_scan_setup)


# --------------------------------------------------------------------------- causal conv1d
def _conv_fwd_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      silu: bool, reverse: bool) -> torch.Tensor:
    return _kernel().conv_fwd(x, weight, bias, silu, reverse, None)


causal_conv1d_fwd = torch.library.custom_op("videomamba::causal_conv1d_fwd", _conv_fwd_impl,
                                            mutates_args=(), device_types="cpu")


@causal_conv1d_fwd.register_fake
def _(x, weight, bias, silu, reverse):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _conv_bwd_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      silu: bool, reverse: bool, dout: torch.Tensor) -> list[torch.Tensor]:
    dx, dw, db = _kernel().conv_bwd(x, weight, bias, silu, dout, reverse)
    return [dx, dw, db if bias is not None else _empty(x)]


causal_conv1d_bwd = torch.library.custom_op("videomamba::causal_conv1d_bwd", _conv_bwd_impl,
                                            mutates_args=(), device_types="cpu")


@causal_conv1d_bwd.register_fake
def _(x, weight, bias, silu, reverse, dout):
    f32 = torch.float32
    return [x.new_empty(x.shape, dtype=f32), x.new_empty(weight.shape, dtype=f32),
            x.new_empty(bias.shape, dtype=f32) if bias is not None else _empty(x)]


def _conv_setup(ctx, inputs, output):
    x, weight, bias, silu, reverse = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.silu, ctx.reverse = silu, reverse


def _conv_backward(ctx, dout, bwd=None):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = (bwd or torch.ops.videomamba.causal_conv1d_bwd)(x, weight, bias, ctx.silu, ctx.reverse,
                                                        dout.contiguous())
    return _cast(dx, x), _cast(dw, weight), _cast(db, bias), None, None


causal_conv1d_fwd.register_autograd(_conv_backward, setup_context=_conv_setup)


# --------------------------------------------------------------------------- eager calls
# Eager calls skip the dispatcher: the same implementations and backward, wrapped in an
# autograd.Function. On a small scan (B=1, E=8, L=16, N=4; 2 cores shared with other jobs) the
# custom op's forward + backward under autograd took 3.4 ms a call against 1.35 ms this way, and
# the demo's 4-layer model makes 16 such calls per training step of ~55 ms.
class _ScanEager(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        out, last = _scan_fwd_impl(*inputs)
        _scan_setup(ctx, inputs, None)
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dlast):
        return _scan_backward(ctx, dout, dlast, bwd=_scan_bwd_impl)


class _ConvEager(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):
        _conv_setup(ctx, inputs, None)
        return _conv_fwd_impl(*inputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        return _conv_backward(ctx, dout, bwd=_conv_bwd_impl)


# --------------------------------------------------------------------------- entry points
def _grouped(X: torch.Tensor) -> torch.Tensor:
    return X.unsqueeze(1) if X.dim() == 3 else X


def _use_op(dispatch: bool | None) -> bool:
    return is_tracing() if dispatch is None else dispatch


def selective_scan_op(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, *, reverse=False, dispatch: bool | None = None):
    """The scan (arguments already checked): out (B, E, L) in u's dtype, and (out, last) with
    ``return_last_state``. ``dispatch``: through the custom op ``videomamba::selective_scan_fwd``
    (default under torch.compile / torch.export) or the eager autograd.Function (default
    otherwise); both run the same kernel and backward."""
    args = (u, delta, A, _grouped(B), _grouped(C), D, z, delta_bias, bool(delta_softplus),
            bool(return_last_state), bool(reverse))
    if _use_op(dispatch):
        out, last = torch.ops.videomamba.selective_scan_fwd(*args)
    else:
        out, last = _ScanEager.apply(*args)
    return (out, last) if return_last_state else out


def scan_bwd_with_output(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, dout,
                         dz_into=None, out_into=None):
    """The CPU kernel's backward, which recomputes the scan's states anyway, also returning the
    forward's output: (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, out), all fp32, dB / dC of
    B's / C's shape. For a caller that recomputes its forward in backward (the blocks' memory-light
    path) and so need not run the scan forward again. CPU tensors, no last-state gradient.

    ``dz_into`` / ``out_into``: fp32 contiguous (B, E, L) tensors that overlap no input; the kernel
    adds dz / out into them and returns them (the numbers of ``dz_into.add_(dz)``, bit for bit)
    instead of allocating new ones."""
    *grads, out = _kernel().bwd(u, delta, A, _grouped(B), _grouped(C), D, z, delta_bias, bool(delta_softplus),
                                dout.float().contiguous(), None, bool(reverse), True, dz_into, out_into)
    grads[3], grads[4] = grads[3].view(B.shape), grads[4].view(C.shape)
    return (*grads, out)


def causal_conv1d_op(x, weight, bias=None, silu=False, *, reverse=False,
                     dispatch: bool | None = None):
    """The causal conv -> (B, E, L) in x's dtype; ``dispatch`` as :func:`selective_scan_op`."""
    args = (x, weight, bias, bool(silu), bool(reverse))
    if _use_op(dispatch):
        return torch.ops.videomamba.causal_conv1d_fwd(*args)
    return _ConvEager.apply(*args)
