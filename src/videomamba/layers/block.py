"""Residual block "add -> norm -> mixer", RMSNorm and drop path."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.utils.checkpoint

from ..ops import rms_norm
from .mixer import FULL_FLIP, BiMambaMixer, ScanOrder
from .workspace import usable as usable_workspace


class _LightMix(torch.autograd.Function):
    """norm + mixer, keeping the block's input for backward (and, with ``keep``, the in- and
    x-projections' outputs), for the release's scan order on the CPU kernels. The forward runs
    without autograd (the mixer's lean path, which reuses its buffers); the backward rebuilds the
    norm and the mixer's cheap part under autograd and takes the scans' outputs from their
    backward kernels (:meth:`BiMambaMixer.recompute_grads`), where a generic checkpoint would run
    the whole block forward again. The block's parameters are inputs of the op, so their
    gradients reach autograd (and DDP's hooks) as any op's do. The same gradients as plain
    autograd (tests/layers/test_light_mix.py)."""

    @staticmethod
    def forward(ctx, residual, block, keep, *params):
        dev = residual.device.type
        ctx.block, ctx.params = block, params
        ctx.autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        ctx.save_for_backward(residual)
        ctx.kept = [] if keep else None
        return block.mixer(block.norm(residual), FULL_FLIP, kept=ctx.kept)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        (residual,) = ctx.saved_tensors
        kept, ctx.kept = ctx.kept, None
        enabled, dtype = ctx.autocast
        need_res = ctx.needs_input_grad[0]
        with torch.enable_grad():
            res = residual.detach().requires_grad_(need_res)
            with torch.autocast(res.device.type, dtype=dtype, enabled=enabled):
                tensors, grads = ctx.block.mixer.recompute_grads(ctx.block.norm(res), dout, kept)
            del kept
            live = [(t, g) for t, g in zip(tensors, grads) if t.requires_grad]    # frozen ones: no graph
            wrt = ([res] if need_res else []) + list(ctx.params)
            got = torch.autograd.grad([t for t, _ in live], wrt, [g for _, g in live], allow_unused=True)
        return (got[0] if need_res else None), None, None, *got[int(need_res):]


class RMSNorm(nn.Module):
    """Weight-only RMSNorm with fp32 math (eps 1e-5 as the release)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, out=None):
        return rms_norm(x, self.weight, self.eps, out=out)


def drop_path(x, p: float, training: bool):
    """Stochastic depth per sample (the whole residual branch is dropped)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Block(nn.Module):
    """residual = residual + drop_path(hidden) (``add``); hidden = mixer(norm(residual)) (``mix``).

    ``forward`` does both; the model's loop calls them apart, to drop the previous ``hidden`` in
    between. The residual stream is kept in fp32 (``residual_in_fp32`` in the release). A block may scan
    the tokens in more than one order (spatiotemporal v2); the outputs are averaged. Under
    ``torch.inference_mode`` the block adds into the ``residual`` it is given instead of keeping
    the old and the new stream alive at once. Only there: under plain ``no_grad`` the call may be
    the first pass of a reentrant checkpoint, which replays it later on the same inputs.
    """

    # Below this many tokens per batch (B * L) "auto" keeps the norm's and mixer's activations:
    # recomputing costs more time than the memory is worth for short clips (8 frames, 1569 tokens,
    # keep everything). The 64-frame training figures of both settings are in
    # benchmarks/RESULTS.md.
    RECOMPUTE_MIN_TOKENS = 2048

    def __init__(self, dim: int, mixer: BiMambaMixer, drop_path: float = 0.0, eps: float = 1e-5,
                 mixer_recompute: str = "auto"):
        super().__init__()
        self.norm = RMSNorm(dim, eps)
        self.mixer = mixer
        self.drop_path = DropPath(drop_path)
        self.mixer_recompute = mixer_recompute

    def add(self, hidden, residual):
        """The residual stream entering this block: residual + drop_path(hidden), fp32; the first
        block (residual None) takes ``hidden`` as the stream."""
        if residual is None:
            residual = hidden
        elif not torch.compiler.is_compiling() and torch.is_inference_mode_enabled():
            # (dynamo cannot read the inference-mode flag; a compiled graph reuses memory anyway)
            hidden = self.drop_path(hidden)
            ws = usable_workspace()
            if ws is not None and hidden.dtype != residual.dtype:
                # a bf16 hidden (autocast) is widened into a shared buffer: add_ would otherwise
                # allocate a temporary of the stream's size for the promotion each block
                hidden = ws.get("promoted", hidden.shape, residual.dtype, hidden.device).copy_(hidden)
            residual = residual.add_(hidden)
        else:
            residual = residual + self.drop_path(hidden)
        return residual.float()

    def _norm_mix(self, residual, orders):
        ws = usable_workspace()  # in an inference pass the norm's output goes in a shared buffer
        out = None if ws is None else ws.get("norm", residual.shape, self.norm.weight.dtype, residual.device)
        h = self.norm(residual, out=out)
        out = self.mixer(h, orders[0])
        for o in orders[1:]:
            out = out + self.mixer(h, o)
        return out / len(orders) if len(orders) > 1 else out

    def mix(self, residual, orders: tuple[ScanOrder, ...] = (FULL_FLIP,),
            recompute: bool | None = None):
        """The block's output (the next ``hidden``) from the stream ``add`` returned.

        ``recompute``: True / False forces the memory-light backward on / off (the model's
        ``grad_checkpointing`` forces it on, keeping the least); None follows ``mixer_recompute``.
        """
        # Memory-light backward: keep only the residual stream, which the next block needs
        # anyway, and recompute the norm and the mixer's intermediates (xz, conv, delta, both
        # scans: about 24*D floats per token) during backward, as mamba_ssm's fused path
        # recomputes its cheap intermediates. Keeping the norm inside the recomputed part
        # matters: its output and x * rsqrt(mean x^2) would be 2*D more floats per token.
        # "auto" also keeps the in- and x-projections' outputs (2*E + 2*(R + 2N) values per token,
        # about 4.5*D): the in-projection is the costliest part to recompute (a third of the
        # block's forward multiply-adds); "always" and gradient checkpointing keep the least.
        if not torch.is_grad_enabled():  # (before reading the token count: a symbolic batch under export)
            return self._norm_mix(residual, orders)
        keep = False
        if recompute is None:
            keep = (self.mixer_recompute == "auto"
                    and residual.shape[0] * residual.shape[1] >= self.RECOMPUTE_MIN_TOKENS)
            recompute = self.mixer_recompute == "always" or keep
        if recompute and torch.is_grad_enabled():
            if self._light_mix_applies(residual, orders):
                return _LightMix.apply(residual, self, keep, *(p for p in self.parameters() if p.requires_grad))
            return torch.utils.checkpoint.checkpoint(self._norm_mix, residual, orders, use_reentrant=False)
        return self._norm_mix(residual, orders)

    def _light_mix_applies(self, residual, orders) -> bool:
        """:class:`_LightMix` serves the release's order on the compiled CPU kernels in eager
        mode; everything else (other orders, CUDA, the torch scan, tracing) takes the checkpoint."""
        from ..ops.backend import resolve, resolve_conv
        from ..ops.library import is_tracing

        o = orders[0]
        return (len(orders) == 1 and o.fwd is None and o.bwd_is_flip
                and residual.device.type == "cpu" and not self.mixer.record_delta and not is_tracing()
                and resolve(None, residual.device) == "cpu"
                and resolve_conv(None, residual.device, self.mixer.d_conv) == "cpu")

    def forward(self, hidden, residual, orders: tuple[ScanOrder, ...] = (FULL_FLIP,),
                recompute: bool | None = None):
        """-> (hidden, residual): ``add`` then ``mix``."""
        residual = self.add(hidden, residual)
        return self.mix(residual, orders, recompute), residual
