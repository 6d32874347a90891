"""Selective scan: the public entry point, argument checks, and the readable oracle.

Glossary: B batch, E channels (inner width), L sequence length, N state size, G groups of B/C.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <h_t, C_t> + D * u_t,          out = y * silu(z)

Shapes follow mamba_ssm's ``selective_scan_fn``: u, delta, z (B, E, L); A (E, N);
B, C (B, N, L) or grouped (B, G, N, L) with E % G == 0; D, delta_bias (E,).
The output is (B, E, L) in u's dtype; the state is carried in fp32 whatever the input dtype.
Which implementation runs is decided in ``backend.py`` only; all of them compute this function.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["selective_scan", "selective_scan_ref", "check_scan_args", "check_out"]


def _expand_groups(X: torch.Tensor, E: int) -> torch.Tensor:
    """(B, N, L) -> (B, 1, N, L); (B, G, N, L) -> (B, E, N, L) with each group repeated E/G times."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    G = X.shape[1]
    return X.repeat_interleave(E // G, dim=1)


def _shape(t) -> tuple:
    return tuple(t.shape)


def check_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise a ValueError naming the first argument whose type or shape is wrong."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3:
        got = _shape(u) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"u must be a tensor of shape (B, E, L), got {got}")
    Bz, E, L = u.shape
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z,
             "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            if name in ("delta", "A", "B", "C"):
                raise ValueError(f"{name} is required")
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a real floating-point tensor, got {t.dtype}")
        if t.device != u.device:
            raise ValueError(f"{name} is on {t.device} but u is on {u.device}")
    for name in ("delta", "z"):
        t = named[name]
        if t is not None and _shape(t) != (Bz, E, L):
            raise ValueError(f"{name} must have u's shape (B, E, L) = {(Bz, E, L)}, got {_shape(t)}")
    if A.dim() != 2 or A.shape[0] != E or A.shape[1] < 1:
        raise ValueError(f"A must have shape (E, N) = ({E}, N), got {_shape(A)}")
    N = A.shape[1]
    for name in ("B", "C"):
        t = named[name]
        ok = (t.dim() == 3 and _shape(t) == (Bz, N, L)) or (
            t.dim() == 4 and t.shape[0] == Bz and t.shape[1] >= 1 and E % t.shape[1] == 0
            and _shape(t)[2:] == (N, L))
        if not ok:
            raise ValueError(f"{name} must have shape (B, N, L) = {(Bz, N, L)} or grouped "
                             f"(B, G, N, L) = ({Bz}, G, {N}, {L}) with E % G == 0 (E = {E}), "
                             f"got {_shape(t)}")
    for name in ("D", "delta_bias"):
        t = named[name]
        if t is not None and _shape(t) != (E,):
            raise ValueError(f"{name} must have shape (E,) = ({E},), got {_shape(t)}")


def check_out(out, like: torch.Tensor, *inputs) -> None:
    """The ops' ``out=`` contract: ``like``'s shape, and no autograd through any of ``inputs``
    (an op that overwrites memory it may have read cannot be differentiated)."""
    if out is None:
        return
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs):
        raise ValueError("out= is for inference: it cannot be used while autograd records the op")
    if out.shape != like.shape:
        raise ValueError(f"out must have shape {tuple(like.shape)}, got {tuple(out.shape)}")


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential reference. Slow but obviously right; every fast path is tested against it.

    The loop walks ``unbind``-ed slices: indexing ``deltaA[:, :, i]`` inside the loop would make
    autograd accumulate a full-size gradient per step, an O(L^2) backward.
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    E = u.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bx = _expand_groups(B.float(), E)  # (B, 1|E, N, L)
    Cx = _expand_groups(C.float(), E)
    deltaA = torch.exp(delta.unsqueeze(-1) * A[None, :, None, :])              # (B, E, L, N)
    deltaB_u = (delta * u).unsqueeze(-1) * Bx.transpose(-1, -2)                 # (B, E, L, N)
    Ct = Cx.transpose(-1, -2)                                                   # (B, 1|E, L, N)
    h = u.new_zeros(u.shape[0], E, A.shape[1])                                  # (B, E, N)
    ys = []
    for dA, dBu, c in zip(deltaA.unbind(2), deltaB_u.unbind(2), Ct.unbind(2)):
        h = dA * h + dBu
        ys.append((h * c).sum(-1))                                              # (B, E)
    y = torch.stack(ys, dim=-1)                                                 # (B, E, L)
    out = y if D is None else y + u * D.float()[None, :, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out


def _flip(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.flip(-1)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str | None = None, *, reverse: bool = False,
                   out: torch.Tensor | None = None):
    """Selective scan through the backend chosen by :func:`videomamba.ops.backend.resolve`.

    ``backend``: None (``$VIDEOMAMBA_SCAN_BACKEND`` or ``auto``), ``auto``, ``ref``, ``torch``,
    ``cpu`` or ``cuda``. Returns out (B, E, L) in u's dtype, and with ``return_last_state`` also
    the fp32 state after the last step, (B, E, N).

    ``reverse``: the recurrence runs from t = L-1 down to 0, i.e. ``flip(scan(flip(inputs)))``
    along L (the last state is then the one at t = 0). The compiled CPU kernel reads its inputs
    in that order; the other backends flip copies.
    ``out``: a (B, E, L) tensor that receives the result and is returned (inference only; an
    error under autograd). It may share memory with u, delta or z, which are then overwritten:
    the mixer's inference path reuses buffers it no longer needs this way.
    """
    from .backend import get_scan_impl, resolve
    from .library import is_tracing

    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    check_out(out, u, u, delta, A, B, C, D, z, delta_bias)
    impl = get_scan_impl(backend, u)
    if u.shape[-1] == 0:  # nothing to scan; the kernels' loops assume L >= 1
        res = u.new_zeros(u.shape) if out is None else out
        last = u.new_zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float32)
        return (res, last) if return_last_state else res
    kw = dict(delta_softplus=delta_softplus, return_last_state=return_last_state)
    name = resolve(backend, u.device)
    if name == "cpu":
        return impl(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, reverse=reverse, out=out, **kw)
    if name == "cuda" and is_tracing():
        # torch.compile / torch.export see mamba_ssm's kernel as one custom op (library.py).
        from .library import selective_scan_op
        impl = functools.partial(selective_scan_op, reverse=reverse)
        reverse = False
    if reverse:
        u, delta, B, C, z = _flip(u), _flip(delta), _flip(B), _flip(C), _flip(z)
    res = impl(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, **kw)
    res, last = res if return_last_state else (res, None)
    if reverse:
        res = res.flip(-1)
    if out is not None:
        res = out.copy_(res)
    return (res, last) if return_last_state else res
