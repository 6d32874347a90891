"""Pure-torch selective scan: runs anywhere (CPU without a compiler, CUDA without mamba_ssm).

Glossary: B batch, E channels, G groups of B/C, Eg = E / G, L length, N state size,
T chunk length, nc chunks per segment, S segment length (a multiple of T).

The sequence is cut into chunks of T steps and the recurrence h_t = a_t h_{t-1} + b_t is solved
in three sweeps that are each vectorised over all chunks at once:

1. every chunk is scanned from a zero state (T steps over (B, G, Eg, nc, N) slices);
2. the chunk start states are carried across chunks (nc steps over (B, G, Eg, N)), with the
   chunk's total decay exp(A * sum_t d_t), which is the product of its a_t;
3. every chunk is scanned again from its true start state, reading y_t = <h_t, C_t> on the way.

Only products and sums of a_t = exp(d_t A) <= 1 appear, never exp(-cumsum) or a division, so
nothing overflows for any L or delta (the chunked-cumsum form exp(S_t) * cumsum(exp(-S_s) b_s)
overflows as soon as a chunk's sum of d * A passes -88). The cost is 2T + nc Python-level steps
per segment instead of L, and memory is bounded by processing S steps at a time; under autograd
each segment is checkpointed, so a scan keeps only its inputs and the (B, E, N) carries.

Left out: with A > 0 (never so in Mamba, where A = -exp(A_log)) a state that overflows may read
NaN here where the sequential loop reads +-inf, since the products are taken in another order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# T = 32 minimises 2T + L/T steps for the segment lengths below; measured in benchmarks/bench_scan.py.
CHUNK = 32
# Elements of one (B, E, S, N) intermediate: 2^23 fp32 = 32 MiB; a segment holds ~6 of them.
SEGMENT_ELEMS = 1 << 23


def _segment(d, du, A, Bs, Cs, h0, T: int):
    """Scan one segment. d, du: (B, G, Eg, S); A: (G, Eg, N); Bs, Cs: (B, G, N, S);
    h0: (B, G, Eg, N); S % T == 0. Returns y (B, G, Eg, S) and the final state (B, G, Eg, N)."""
    Bz, G, Eg, S = d.shape
    N = A.shape[-1]
    nc = S // T
    # Time-major layouts, so that each step reads one contiguous slice. The copies are of
    # (B, E, S)-sized tensors; the big products below inherit their layout.
    dt = d.reshape(Bz, G, Eg, nc, T).permute(4, 0, 1, 2, 3).contiguous()          # (T, B, G, Eg, nc)
    dut = du.reshape(Bz, G, Eg, nc, T).permute(4, 0, 1, 2, 3).contiguous()
    Bt = Bs.reshape(Bz, G, N, nc, T).permute(4, 0, 1, 3, 2).contiguous().unsqueeze(3)  # (T, B, G, 1, nc, N)
    Ct = Cs.reshape(Bz, G, N, nc, T).permute(4, 0, 1, 3, 2).contiguous().unsqueeze(3)
    a = torch.exp(dt.unsqueeze(-1) * A[:, :, None, :])                             # (T, B, G, Eg, nc, N)
    b = dut.unsqueeze(-1) * Bt                                                     # (T, B, G, Eg, nc, N)

    # Loops walk unbind()-ed slices: indexing a[t] would give every step's backward a zeroed
    # gradient of a's full size, quadratic in T.
    a_ts, b_ts = a.unbind(0), b.unbind(0)
    hl = torch.zeros_like(b_ts[0])                                                 # (B, G, Eg, nc, N)
    for a_t, b_t in zip(a_ts, b_ts):
        hl = torch.addcmul(b_t, a_t, hl)
    decay = torch.exp(d.reshape(Bz, G, Eg, nc, T).sum(-1).unsqueeze(-1) * A[:, :, None, :])
    h = h0
    starts = []
    for hl_c, decay_c in zip(hl.unbind(-2), decay.unbind(-2)):
        starts.append(h)
        h = torch.addcmul(hl_c, decay_c, h)
    h_last = h

    h = torch.stack(starts, dim=-2)                                                # (B, G, Eg, nc, N)
    ys = []
    for a_t, b_t, c_t in zip(a_ts, b_ts, Ct.unbind(0)):
        h = torch.addcmul(b_t, a_t, h)
        ys.append((h * c_t).sum(-1))                                               # (B, G, Eg, nc)
    y = torch.stack(ys, dim=-1).reshape(Bz, G, Eg, S)
    return y, h_last


class _SegmentCheckpoint(torch.autograd.Function):
    """Keeps a segment's inputs only and re-runs it under autograd in the backward.

    A hand-rolled torch.utils.checkpoint: that one imports torch._dynamo on first use (~3 s
    here), a cost every process would pay on its first training step.
    """

    @staticmethod
    def forward(ctx, d, du, A, Bs, Cs, h0, T):
        ctx.save_for_backward(d, du, A, Bs, Cs, h0)
        ctx.T = T
        return _segment(d, du, A, Bs, Cs, h0, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, gh):
        inputs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
        with torch.enable_grad():
            y, h = _segment(*inputs, ctx.T)
        grads = torch.autograd.grad((y, h), inputs, (gy, gh), allow_unused=True)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad)), None)


def _log_depth(d, du, A, Bs, Cs):
    """Scan a whole sequence in ceil(log2 L) vectorised steps (Hillis-Steele), for exported graphs.

    d, du: (B, G, Eg, L); A: (G, Eg, N); Bs, Cs: (B, G, N, L). Returns y (B, G, Eg, L) and the
    last state (B, G, Eg, N). Step k combines every (a_t, b_t) with the pair 2^k steps earlier,
    (a, b) <- (a * a_prev, a * b_prev + b), so after the last step b_t is h_t. As the chunked scan,
    only products of a_t = exp(d_t A) and sums appear. It holds (B, E, L, N) tensors and does
    log2 L times the sequential work: for a graph of ~10 ops per step instead of an unrolled loop.
    """
    L = d.shape[-1]
    a = torch.exp(d.unsqueeze(-1) * A[:, :, None, :])                               # (B, G, Eg, L, N)
    b = du.unsqueeze(-1) * Bs.transpose(-1, -2).unsqueeze(2)                        # (B, G, Eg, L, N)
    k = 1
    while k < L:
        b_prev = F.pad(b[..., : L - k, :], (0, 0, k, 0))                           # zeros before t = k
        b = torch.addcmul(b, a, b_prev)
        if 2 * k < L:                                                              # a is read again
            a = a * F.pad(a[..., : L - k, :], (0, 0, k, 0), value=1.0)
        k *= 2
    y = (b * Cs.transpose(-1, -2).unsqueeze(2)).sum(-1)                            # (B, G, Eg, L)
    return y, b[..., -1, :]


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, *, chunk: int = CHUNK,
                         segment_elems: int = SEGMENT_ELEMS, log_depth: bool | None = None):
    """Same function as :func:`videomamba.ops.selective_scan_ref`, in O(L / T + T) torch ops.

    ``log_depth`` (default: under ``torch.export``, i.e. for ONNX) runs :func:`_log_depth`
    instead: a graph of O(log L) ops rather than an unrolled loop of O(L / T + T) steps.
    """
    dtype_in = u.dtype
    Bz, E, L = u.shape
    N = A.shape[1]
    B4 = B.unsqueeze(1) if B.dim() == 3 else B                                     # (B, G, N, L)
    C4 = C.unsqueeze(1) if C.dim() == 3 else C
    G = B4.shape[1]
    Eg = E // G
    T = max(1, min(int(chunk), L))
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias))
    # Autocast would run the products below in bf16; the state math is fp32 by contract.
    with torch.autocast(u.device.type, enabled=False):
        uf = u.float()
        d = delta.float()
        if delta_bias is not None:
            d = d + delta_bias.float()[:, None]
        if delta_softplus:
            d = F.softplus(d)
        du = d * uf
        if torch.compiler.is_exporting() if log_depth is None else log_depth:
            y, h = _log_depth(d.view(Bz, G, Eg, L), du.view(Bz, G, Eg, L), A.float().view(G, Eg, N),
                              B4.float(), C4.float())
            out = y.reshape(Bz, E, L)
            out = out if D is None else out + uf * D.float()[:, None]
            if z is not None:
                out = out * F.silu(z.float())
            out = out.to(dtype_in)
            return (out, h.reshape(Bz, E, N)) if return_last_state else out
        pad = (-L) % T
        # Padding steps have d = 0 and b = 0: a = 1, the identity, so the last state is unchanged.
        d4 = F.pad(d, (0, pad)).view(Bz, G, Eg, L + pad)
        du4 = F.pad(du, (0, pad)).view(Bz, G, Eg, L + pad)
        Bf = F.pad(B4.float(), (0, pad))
        Cf = F.pad(C4.float(), (0, pad))
        A3 = A.float().view(G, Eg, N)
        seg = max(T, segment_elems // max(1, Bz * E * N) // T * T)
        h = uf.new_zeros(Bz, G, Eg, N)
        ys = []
        for s0 in range(0, L + pad, seg):
            sl = slice(s0, s0 + seg)
            args = (d4[..., sl], du4[..., sl], A3, Bf[..., sl], Cf[..., sl], h, T)
            if need_grad and torch.compiler.is_compiling():
                # dynamo cannot trace the hand-rolled checkpoint's autograd.grad; torch's own is
                # a higher-order op it knows (and dynamo is loaded already).
                from torch.utils.checkpoint import checkpoint
                y, h = checkpoint(_segment, *args, use_reentrant=False)
            elif need_grad:
                y, h = _SegmentCheckpoint.apply(*args)
            else:
                y, h = _segment(*args)
            ys.append(y)
        y = torch.cat(ys, dim=-1)[..., :L].reshape(Bz, E, L)
        out = y if D is None else y + uf * D.float()[:, None]
        if z is not None:
            out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, h.reshape(Bz, E, N)) if return_last_state else out
