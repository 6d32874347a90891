"""Inputs and independent expectations for the ops tests.

Glossary: B batch, E channels, L length, N state size, G groups of B/C.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scan_inputs(Bz=2, E=40, N=16, L=203, G=None, seed=0, delta_lo=-3.0, delta_hi=1.0, D=True,
                z=True, delta_bias=True):
    """Random scan inputs in fp32. delta is the pre-bias, pre-softplus value; A = -exp(A_log)
    with A_log = log(1..N) scaled by a random factor, as trained models have."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bc_shape = (Bz, N, L) if G is None else (Bz, G, N, L)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1) * (0.5 + torch.rand(E, 1, generator=g))
    return {
        "u": r(Bz, E, L),
        "delta": delta_lo + (delta_hi - delta_lo) * torch.rand(Bz, E, L, generator=g),
        "A": A,
        "B": r(*bc_shape),
        "C": r(*bc_shape),
        "D": r(E) if D else None,
        "z": r(Bz, E, L) if z else None,
        "delta_bias": 0.5 * r(E) if delta_bias else None,
    }


def with_grad(inputs: dict) -> dict:
    return {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in inputs.items()}


def run_with_grads(fn, inputs: dict, seed=1, out_dtype=None, **kw):
    """Run fn, backprop a fixed random cotangent (and one for the last state if returned);
    return (outputs, {name: grad}). The output's cotangent is made representable in
    ``out_dtype``: a bf16 output receives a bf16 gradient, and the fp32 oracle must get the same."""
    x = with_grad(inputs)
    res = fn(**x, **kw)
    outs = res if isinstance(res, tuple) else (res,)
    g = torch.Generator().manual_seed(seed)
    cots = [torch.randn(o.shape, generator=g) for o in outs]
    if out_dtype is not None:
        cots[0] = cots[0].to(out_dtype).float()
    loss = sum((o.float() * c).sum() for o, c in zip(outs, cots))
    names = [k for k in ARG_NAMES if x[k] is not None]
    grads = torch.autograd.grad(loss, [x[k] for k in names])
    return tuple(o.detach() for o in outs), dict(zip(names, grads))


def assert_close_scaled(actual, expected, rtol, atol, name=""):
    """|actual - expected| <= rtol * |expected| + atol * max|expected|, elementwise: a relative
    bound per element plus an absolute one at the tensor's scale for elements near zero."""
    actual, expected = actual.double(), expected.double()
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual - expected).abs()
    bound = rtol * expected.abs() + atol * scale
    worst = (err / bound).max().item()
    assert worst <= 1.0, (f"{name}: max error {err.max().item():.3g} beyond rtol {rtol} / atol "
                          f"{atol} (scale {scale.item():.3g}, worst ratio {worst:.3g})")


def scan_f64(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
             return_last_state=False):
    """Independent float64 oracle: the recurrence written out step by step (differentiable)."""
    u, delta, A = u.double(), delta.double(), A.double()
    Bz, E, L = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    def per_channel(X):  # (B, N, L) or (B, G, N, L) -> (B, E | 1, N, L)
        X = X.double()
        return X.unsqueeze(1) if X.dim() == 3 else X.repeat_interleave(E // X.shape[1], dim=1)
    Bx, Cx = per_channel(B), per_channel(C)                                    # (B, E|1, N, L)
    decay = torch.exp(delta[:, :, None, :] * A[None, :, :, None])              # (B, E, N, L)
    inp = (delta * u)[:, :, None, :] * Bx                                     # (B, E, N, L)
    h = torch.zeros(Bz, E, A.shape[1], dtype=torch.float64)
    ys = []
    for a_t, b_t, c_t in zip(decay.unbind(-1), inp.unbind(-1), Cx.unbind(-1)):
        h = a_t * h + b_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return (y, h) if return_last_state else y


def cpu_kernel_or_skip():
    """The compiled CPU kernel; if it did not build, skip the test with how to enable it, or
    fail it under CI (``tests/_requirements.py``)."""
    from _requirements import require_cpu_kernel
    return require_cpu_kernel()
