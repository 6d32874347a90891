"""Selective scan: the readable oracle and the single backend selection point.

Glossary: B batch, E channels (inner width), L sequence length, N state size, G groups of B/C.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <h_t, C_t> + D * u_t,          out = y * silu(z)

Shapes follow mamba_ssm's ``selective_scan_fn``: u, delta, z (B, E, L); A (E, N);
B, C (B, N, L) or grouped (B, G, N, L) with E % G == 0; D, delta_bias (E,).
The output is (B, E, L) in u's dtype; the state is carried in fp32 whatever the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["selective_scan", "selective_scan_ref"]


def _expand_groups(X: torch.Tensor, E: int) -> torch.Tensor:
    """(B, N, L) -> (B, 1, N, L); (B, G, N, L) -> (B, E, N, L) with each group repeated E/G times."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    G = X.shape[1]
    return X.repeat_interleave(E // G, dim=1)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential reference. Slow but obviously right; every fast path is tested against it.

    The loop walks ``unbind``-ed slices: indexing ``deltaA[:, :, i]`` inside the loop would make
    autograd accumulate a full-size gradient per step, an O(L^2) backward.
    """
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


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str | None = None):
    """Selective scan through the backend chosen by :func:`videomamba.ops.backend.resolve`."""
    from .backend import get_scan_impl

    impl = get_scan_impl(backend, u)
    return impl(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                return_last_state=return_last_state)
