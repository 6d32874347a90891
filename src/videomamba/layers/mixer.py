"""The bidirectional Mamba mixer ("bimamba v2"), with the release's parameter names.

Glossary: B batch, L tokens, D model width, E = expand * D inner width, N state size, R dt rank.

The backward branch has its own conv / projections / A / D and scans the sequence in a
*backward order*. The release flips the whole sequence; KAIST's spatial and temporal reversals
are other permutations, passed in as an index. Every path computes both branches.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import causal_conv1d, selective_scan
from .workspace import usable as usable_workspace


@torch.no_grad()
def init_linear(weight: torch.Tensor, init: str = "release") -> None:
    """Weight init shared by the mixer and the head: ``"release"`` trunc_normal(std 0.02), as the
    original code; ``"fan_in"`` N(0, 1/fan_in), which keeps activations at unit scale at any width."""
    if init == "release":
        nn.init.trunc_normal_(weight, std=0.02)
    elif init == "fan_in":
        nn.init.normal_(weight, std=weight.shape[1] ** -0.5)
    else:
        raise ValueError(f"init must be 'release' or 'fan_in', got {init!r}")


def _wmm(weight: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """weight (M, K) @ x (B, K, L) -> (B, M, L), written straight into channels-first memory.

    ``torch.matmul`` computes x^T W^T and then copies the transpose; mm / bmm with the weight on
    the left produce the layout directly (x may be a transposed view: BLAS reads it as is).
    ``out`` (no autograd): a contiguous (B, M, L) tensor of :func:`_mm_dtype` that receives the
    product (autocast does not apply to ``out=`` calls, so the operands are cast to its dtype).
    """
    if out is not None:
        weight, x = weight.to(out.dtype), x.to(out.dtype)
        if x.shape[0] == 1:
            torch.mm(weight, x.squeeze(0), out=out.squeeze(0))
        else:
            torch.bmm(weight.expand(x.shape[0], -1, -1), x, out=out)
        return out
    # (an exported graph takes the bmm for every batch: its batch size may be symbolic)
    # (squeeze, not x[0]: the gradient of an index is a zero-filled copy of the whole input)
    if not torch.compiler.is_exporting() and x.shape[0] == 1:
        return torch.mm(weight, x.squeeze(0)).unsqueeze(0)
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)


class _KnownProjection(torch.autograd.Function):
    """``_wmm(weight, x)`` whose result the caller already holds (kept from a forward without
    autograd): returns ``out`` and backpropagates as the product would, without computing it again.
    x (B, K, L), weight (M, K), out (B, M, L) in the product's dtype (autocast's, where it was on);
    both gradients are computed in that dtype and returned in their operand's, as autocast's
    backward does."""

    @staticmethod
    def forward(ctx, x, weight, out):
        ctx.save_for_backward(x, weight)
        return out.view_as(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        dt = dout.dtype
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _wmm(weight.to(dt).t(), dout).to(x.dtype)                        # (B, K, L)
        if ctx.needs_input_grad[1]:
            xd = x.to(dt)
            dw = (torch.mm(dout[0], xd[0].t()) if dout.shape[0] == 1
                  else torch.bmm(dout, xd.transpose(1, 2)).sum(0)).to(weight.dtype)  # (M, K)
        return dx, dw, None


def _project(weight: torch.Tensor, x: torch.Tensor, known: torch.Tensor | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """``_wmm(weight, x, out)``, or ``known`` (that product, kept earlier) under autograd as if computed."""
    return _wmm(weight, x, out=out) if known is None else _KnownProjection.apply(x, weight, known)


def _mm_tokens(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """y (B, E, L) channels-first, possibly a view into a larger buffer -> y^T weight^T (B, L, D).

    ``F.linear`` on the transposed view copied it first under bf16 autocast (1.3x the time of
    the product alone at 12545 tokens); mm / bmm read the transposed operands as they are."""
    if not torch.compiler.is_exporting() and y.shape[0] == 1:
        return torch.mm(y.squeeze(0).t(), weight.t()).unsqueeze(0)
    return torch.bmm(y.transpose(1, 2), weight.t().expand(y.shape[0], -1, -1))


def _mm_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of a projection of ``x`` by a weight: autocast's where it is on, else x's."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


class _Scratch:
    """The mixer's temporaries in an inference pass: views of the open workspace's buffers
    (:mod:`.workspace`) when there is one, else None (the op then allocates its result)."""

    def __init__(self, ws=None):
        self.ws = ws

    def __call__(self, name: str, like: torch.Tensor, rows: int, dtype: torch.dtype | None = None):
        """A (B, rows, L) buffer shaped after ``like`` (B, *, L), or None without a workspace."""
        if self.ws is None:
            return None
        return self.ws.get(name, (like.shape[0], rows, like.shape[-1]), dtype or like.dtype, like.device)


NO_SCRATCH = _Scratch()


class ScanOrder:
    """How a mixer visits the tokens: ``fwd`` / ``bwd`` are canonical positions in visiting order.

    ``None`` for ``fwd`` means the identity, and ``bwd_is_flip`` marks the plain reversal of the
    forward order; both take a copy-free (or single-copy) fast path.
    """

    def __init__(self, fwd: torch.Tensor | None, bwd: torch.Tensor | None, bwd_is_flip: bool):
        self.fwd, self.bwd, self.bwd_is_flip = fwd, bwd, bwd_is_flip
        self.fwd_inv = None if fwd is None else torch.argsort(fwd)
        self.bwd_inv = None if bwd is None else torch.argsort(bwd)

    def to(self, device) -> "ScanOrder":
        def mv(t):
            return None if t is None else t.to(device)
        out = ScanOrder.__new__(ScanOrder)
        out.fwd, out.bwd, out.bwd_is_flip = mv(self.fwd), mv(self.bwd), self.bwd_is_flip
        out.fwd_inv, out.bwd_inv = mv(self.fwd_inv), mv(self.bwd_inv)
        return out


FULL_FLIP = ScanOrder(None, None, True)


class BiMambaMixer(nn.Module):
    """(B, L, D) -> (B, L, D). ``merge``: 'sum' (OpenGVLab) or 'mean' (Vim's ``if_divide_out``)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | None = None, merge: str = "sum", dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4, zero_dt_bias: bool = False,
                 depth_scale: int = 1, init: str = "release"):
        super().__init__()
        if merge not in ("sum", "mean"):
            raise ValueError(f"merge must be 'sum' or 'mean', got {merge!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = E = expand * d_model
        self.dt_rank = R = dt_rank or math.ceil(d_model / 16)
        self.merge = merge
        self.record_delta = False  # set by the model to keep per-direction delta for analysis
        self.last_delta: tuple[torch.Tensor, torch.Tensor] | None = None

        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.out_proj = nn.Linear(E, d_model, bias=False)
        for sfx in ("", "_b"):
            conv = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=True)
            x_proj = nn.Linear(E, R + 2 * d_state, bias=False)
            dt_proj = nn.Linear(R, E, bias=True)
            setattr(self, "conv1d" + sfx, conv)
            setattr(self, "x_proj" + sfx, x_proj)
            setattr(self, "dt_proj" + sfx, dt_proj)
            # S4D-real init: A[e, n] = -(n + 1); kept as log so that A stays negative.
            A_log = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(E, 1)
            a_name = "A_log" if not sfx else "A_b_log"
            d_name = "D" if not sfx else "D_b"
            setattr(self, a_name, nn.Parameter(A_log))
            setattr(self, d_name, nn.Parameter(torch.ones(E)))
            getattr(self, a_name)._no_weight_decay = True
            getattr(self, d_name)._no_weight_decay = True
        self._init_weights(dt_min, dt_max, dt_init_floor, zero_dt_bias, depth_scale, init)

    @torch.no_grad()
    def _init_weights(self, dt_min, dt_max, floor, zero_dt_bias, depth_scale, init="release"):
        # Linear layers: trunc_normal(0.02), as the release's _init_weights; "fan_in": N(0, 1/fan_in).
        for lin in (self.in_proj, self.x_proj, self.x_proj_b):
            init_linear(lin.weight, init)
        # out_proj: kaiming_uniform(a=sqrt 5) rescaled by 1/sqrt(depth) (GPT-2 style, as the release).
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        self.out_proj.weight /= math.sqrt(depth_scale)
        for dt_proj in (self.dt_proj, self.dt_proj_b):
            nn.init.uniform_(dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
            # dt bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max] (Mamba). The release
            # re-zeroes every Linear bias afterwards, which overwrites this; zero_dt_bias=True
            # reproduces that quirk. We keep the Mamba init by default: it is what the dt
            # init was designed for.
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=floor)
            dt_proj.bias.copy_(torch.zeros_like(dt) if zero_dt_bias else dt + torch.log(-torch.expm1(-dt)))

    @staticmethod
    def _conv(x, conv, reverse: bool, out=None):
        """Causal conv + SiLU of one direction, (B, E, L) -> (B, E, L)."""
        return causal_conv1d(x, conv.weight.squeeze(1), conv.bias, activation="silu",
                             reverse=reverse, out=out)

    def _scan_inputs(self, u, x_proj, dt_proj, A_log, D, scratch: _Scratch = NO_SCRATCH,
                     kept: list | None = None, known: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One direction's scan inputs from its conv output u: [u, delta, A, B, C, D, delta_bias].

        Projections multiply with the weight on the left so that every activation comes out
        channels-first and contiguous: no transposes or copies between the ops. ``scratch``:
        where the projections go in an inference pass (the two directions share the buffers).
        ``kept``: a list that receives x_proj's output; ``known``: that output, kept by an earlier
        forward (the memory-light backward then does not compute it again).
        """
        R, N = self.dt_rank, self.d_state
        dt = _mm_dtype(u)
        x_dbl = _project(x_proj.weight, u, known,
                         out=None if known is not None else scratch("x_dbl", u, R + 2 * N, dt))  # (B, R+2N, L)
        if kept is not None:
            kept.append(x_dbl)
        dr, Bm, Cm = torch.split(x_dbl, [R, N, N], dim=1)
        delta = _wmm(dt_proj.weight, dr, out=scratch("delta", u, self.d_inner, dt))  # (B, E, L)
        A = -torch.exp(A_log.float())                                                # (E, N)
        return [u, delta, A, Bm.contiguous(), Cm.contiguous(), D.float(), dt_proj.bias.float()]

    def _scan(self, u, z, x_proj, dt_proj, A_log, D, reverse: bool, out=None,
              scratch: _Scratch = NO_SCRATCH, kept: list | None = None):
        """Projections and selective scan of one direction on its conv output u -> (B, E, L)."""
        u, delta, A, Bm, Cm, Dv, bias = self._scan_inputs(u, x_proj, dt_proj, A_log, D, scratch, kept)
        if self.record_delta:
            self._deltas.append(F.softplus(delta.float() + bias[None, :, None]).detach())
        return selective_scan(u, delta, A, Bm, Cm, Dv, z=z, delta_bias=bias, delta_softplus=True,
                              reverse=reverse, out=out)

    def recompute_grads(self, hidden: torch.Tensor, dout: torch.Tensor,
                        kept: list | None = None) -> tuple[list, list]:
        """The memory-light backward of the release's order (forward + its reversal) on the CPU
        kernel: ``hidden`` (B, L, D) is this mixer's input rebuilt under autograd and ``dout``
        (B, L, D) the gradient of its output. Recomputes the cheap part of the forward under autograd
        (in_proj, convs, x_proj, dt_proj) and runs each scan's backward, which recomputes the scan's
        output on the way: neither scan's forward nor out_proj runs again. ``kept``: what
        ``forward(..., kept=[])`` kept (in_proj's and both x_proj's outputs), which are then not
        computed again. Returns (tensors, grads) to backpropagate in one call: every scan input
        with its gradient and out_proj's weight with its gradient from the recomputed outputs."""
        from ..ops.library import scan_bwd_with_output

        hT = hidden.transpose(1, 2)
        xz = _project(self.in_proj.weight, hT, kept[0] if kept else None)
        x, z = xz.chunk(2, dim=1)
        W = self.out_proj.weight
        with torch.autocast(hidden.device.type, enabled=False):
            g = dout.float()                                                     # (B, L, D)
            dy = _wmm(W.float().t(), g.transpose(1, 2))                          # (B, E, L)
        if self.merge == "mean":
            dy = dy.mul_(0.5)
        tensors, grads = [], []
        dz = y = None
        for conv, x_proj, dt_proj, A_log, D, rev in (
                (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, False),
                (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b, True)):
            ins = self._scan_inputs(self._conv(x, conv, rev), x_proj, dt_proj, A_log, D,
                                    known=kept[1 + int(rev)] if kept else None)
            # the second direction adds its dz and output into the first's
            du, ddelta, dA, dB, dC, dD, dz, dbias, y = scan_bwd_with_output(
                *(t.detach() for t in ins[:6]), z.detach(), ins[6].detach(), True, rev, dy,
                dz_into=dz, out_into=y)
            tensors += ins
            grads += [du, ddelta, dA, dB, dC, dD, dbias]
        if self.merge == "mean":
            y = y.mul_(0.5)
        # out_proj's weight gradient, from its input as the forward computed it (in u's dtype)
        y = y.to(ins[0].dtype).float()
        dW = torch.bmm(g.transpose(1, 2), y.transpose(1, 2)).sum(0)                 # (D, E)
        tensors += [z, W]
        grads += [dz, dW]
        return tensors, [gr.to(t.dtype) for t, gr in zip(tensors, grads)]

    def forward(self, hidden: torch.Tensor, order: ScanOrder = FULL_FLIP,
                kept: list | None = None) -> torch.Tensor:
        """``kept`` (without autograd, the release's order): a list that receives in_proj's output
        and both x_proj's outputs, for :meth:`recompute_grads`."""
        # Without autograd nothing is kept for a backward, so every (B, E, L) buffer is reused as
        # soon as it is dead: the forward conv overwrites x (unless in_proj's output is kept), each
        # scan overwrites its own conv output, the two directions are summed in place. At most
        # four E x L buffers are alive (x|z, one conv output, the other conv output and its
        # delta) instead of nine.
        lean = not torch.is_grad_enabled()
        if kept is not None and (not lean or order.fwd is not None or not order.bwd_is_flip):
            raise ValueError("kept applies without autograd to the release's order only")
        # In an inference pass with a workspace open (the model opens one), xz, the backward
        # branch's conv output, x_proj's and dt_proj's outputs reuse the previous block's memory.
        scratch = _Scratch(usable_workspace() if kept is None else None)
        # (B, L, D) -> (B, 2E, L) contiguous, as the release computes it (weight @ hidden^T)
        hT = hidden.transpose(1, 2)
        xz = _wmm(self.in_proj.weight, hT, out=scratch("xz", hT, 2 * self.d_inner, _mm_dtype(hT)))
        if kept is not None:
            kept.append(xz)
        if self.record_delta:
            self._deltas = []
        # Each branch works in its visiting order. The release's backward order, the forward
        # order reversed, is the kernels' `reverse` flag on the forward branch's own tensors.
        rev = order.bwd_is_flip
        xz_f = xz if order.fwd is None else xz.index_select(-1, order.fwd)
        xz_b = xz_f if rev else xz.index_select(-1, order.bwd)
        del xz
        x_f, z_f = xz_f.chunk(2, dim=1)
        x_b, z_b = xz_b.chunk(2, dim=1)
        # The backward conv first: the forward one may overwrite x, which both read when rev.
        u_b = self._conv(x_b, self.conv1d_b, rev,
                         out=(x_b if not rev else scratch("u_b", x_b, x_b.shape[1])) if lean else None)
        u_f = self._conv(x_f, self.conv1d, False, out=x_f if lean and kept is None else None)
        y = self._scan(u_f, z_f, self.x_proj, self.dt_proj, self.A_log, self.D, False,
                       out=u_f if lean else None, scratch=scratch, kept=kept)
        del u_f
        y_b = self._scan(u_b, z_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b, rev,
                         out=u_b if lean else None, scratch=scratch, kept=kept)
        del u_b

        def canonical(t, backward_branch: bool):
            """A branch's (B, E, L) output in visiting order -> canonical token order."""
            if backward_branch and not rev:
                return t.index_select(-1, order.bwd_inv)
            return t if order.fwd is None else t.index_select(-1, order.fwd_inv)

        if self.record_delta:
            d_f, d_b = self._deltas
            self.last_delta = (canonical(d_f, False), canonical(d_b, True))  # each (B, E, L)
            del self._deltas
        if rev:  # both branches are in the forward visiting order: add, then permute once
            y = canonical(y.add_(y_b) if lean else y + y_b, False)
        else:
            y, y_b = canonical(y, False), canonical(y_b, True)
            y = y.add_(y_b) if lean else y + y_b
        del y_b
        if self.merge == "mean":
            y = y.mul_(0.5) if lean else y * 0.5
        return _mm_tokens(y, self.out_proj.weight)                                      # (B, L, D)
