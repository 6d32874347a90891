"""The CPU kernels read and write bf16 activations, and rows with any batch / channel strides,
themselves (no converted or contiguous copies around them).

Independent expectations: the same kernel on the fp32 values of the bf16 inputs, its fp32 result
converted by torch (``.to(torch.bfloat16)``, round to nearest even), must be equal bit for bit;
on strided views, the result on contiguous copies of them, bit for bit.
"""
from __future__ import annotations

import pytest
import torch

from videomamba.ops import causal_conv1d, selective_scan

from .helpers import cpu_kernel_or_skip, scan_inputs


@pytest.fixture(autouse=True)
def _kernel():
    cpu_kernel_or_skip()


def _bf16_inputs(L, seed, E=40):
    x = scan_inputs(2, E, 16, L, seed=seed)
    for k in ("u", "delta", "z"):
        x[k] = x[k].to(torch.bfloat16)
    return x


@pytest.mark.parametrize("L", [203, 64, 5])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("target", [None, "new", "u", "delta", "z"])
def test_scan_on_bf16_equals_fp32_scan_rounded(L, reverse, target):
    x = _bf16_inputs(L, seed=L)
    kw = dict(delta_softplus=True, reverse=reverse, backend="cpu")
    with torch.no_grad():
        ref = selective_scan(**{k: (v.float() if v is not None else None) for k, v in x.items()}, **kw)
        xs = {k: (None if v is None else v.clone()) for k, v in x.items()}
        buf = None if target is None else (torch.empty_like(xs["u"]) if target == "new" else xs[target])
        out = selective_scan(**xs, out=buf, **kw)
    assert out.dtype == torch.bfloat16
    if buf is not None:
        assert out.data_ptr() == buf.data_ptr()
    assert torch.equal(out.view(torch.int16), ref.to(torch.bfloat16).view(torch.int16))


def test_scan_backward_reads_bf16_inputs_as_their_fp32_values():
    """Under autograd the scan saves its bf16 inputs and the backward reads them directly: the
    gradients equal those of the same scan on the fp32 values (then cast to bf16 by autograd)."""
    x = _bf16_inputs(97, seed=3)

    def grads(inputs):
        leaves = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in inputs.items()}
        out = selective_scan(**leaves, delta_softplus=True, backend="cpu")
        g = torch.Generator().manual_seed(0)
        (out.float() * torch.randn(out.shape, generator=g).to(torch.bfloat16).float()).sum().backward()
        return out, {k: v.grad for k, v in leaves.items() if v is not None}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # dB / dC sum per-thread partials in the order threads took the work
    try:
        out, g_low = grads(x)
        ref, g_ref = grads({k: (None if v is None else v.float()) for k, v in x.items()})
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, ref.to(torch.bfloat16))
    for k, g in g_low.items():
        assert torch.equal(g, g_ref[k].to(g.dtype)), k


@pytest.mark.parametrize("L", [203, 16, 3])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_conv_on_bf16_equals_fp32_conv_rounded(L, reverse, silu, in_place):
    g = torch.Generator().manual_seed(L)
    xb = torch.randn(2, 24, L, generator=g).to(torch.bfloat16)
    w, b = torch.randn(24, 4, generator=g), torch.randn(24, generator=g)
    act = "silu" if silu else None
    with torch.no_grad():
        ref = causal_conv1d(xb.float(), w, b, activation=act, reverse=reverse, backend="cpu")
        xs = xb.clone()
        out = causal_conv1d(xs, w, b, activation=act, reverse=reverse, backend="cpu",
                            out=xs if in_place else None)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.view(torch.int16), ref.to(torch.bfloat16).view(torch.int16))


def test_rounding_ties_and_non_finite_values_as_torch():
    """The conv as x + bias (weight (0, 0, 0, 1)) rounds fp32 sums to bf16: ties to even,
    overflow to inf, NaN stays NaN, exactly as torch converts the fp32 reference conv's sums.
    (A NaN's bit pattern is not compared: torch's own scalar and vector conversions differ there.)"""
    base = torch.tensor([1.0, 1.0, -1.0, 3.0e38, 1.0, 2.0 ** -130, 0.0, 1.5, 256.0, 7.0, -7.0,
                         1e-3, 65504.0, 0.1, 3.0, 1.0, 1.0, 1.0, float("nan"), 1.0, 1.0, 1.0,
                         float("inf"), 1.0, 1.0, 1.0, -float("inf")])
    x = base.repeat(2).to(torch.bfloat16).view(1, 1, -1)
    # 2**-8 and 3 * 2**-8 are exact ties at 1.0 (round down to even / up to even)
    for bias in (2.0 ** -8, 3 * 2.0 ** -8, 1.0e38, 0.0, -2.0 ** -9, 0.3):
        w, b = torch.tensor([[0.0, 0.0, 0.0, 1.0]]), torch.tensor([bias])
        with torch.no_grad():
            out = causal_conv1d(x, w, b, backend="cpu")
            expected = causal_conv1d(x.float(), w, b, backend="ref").to(torch.bfloat16)
        torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True, msg=str(bias))
        assert torch.isnan(out).any() and torch.isinf(out).any()


def _halves(x: torch.Tensor):
    """x (B, E, L) copied into the first half of a (B, 2E, L) buffer: a view with batch stride 2EL,
    as the mixer's x and z are, plus the buffer (its second half a sentinel that must survive)."""
    B, E, L = x.shape
    buf = torch.full((B, 2 * E, L), 7.0, dtype=x.dtype)
    buf[:, :E] = x
    return buf[:, :E], buf


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_scan_and_conv_on_strided_halves_equal_contiguous(dtype, reverse):
    x = scan_inputs(3, 40, 16, 150, seed=21)
    for k in ("u", "delta", "z"):
        x[k] = x[k].to(dtype)
    kw = dict(delta_softplus=True, reverse=reverse, backend="cpu")
    with torch.no_grad():
        ref = selective_scan(**x, **kw)
        views = dict(x)
        bufs = {}
        for k in ("u", "delta", "z"):
            views[k], bufs[k] = _halves(x[k])
        assert not views["u"].is_contiguous()
        out, out_buf = _halves(torch.zeros_like(x["u"]))
        got = selective_scan(**views, out=out, **kw)
        assert got.data_ptr() == out.data_ptr()
        assert torch.equal(got, ref) and (out_buf[:, 40:] == 7).all()
        # in place, into u's own strided memory
        got = selective_scan(**views, out=views["u"], **kw)
        assert torch.equal(got, ref) and (bufs["u"][:, 40:] == 7).all()

        g = torch.Generator().manual_seed(3)
        w, b = torch.randn(40, 4, generator=g), torch.randn(40, generator=g)
        xc = torch.randn(3, 40, 150, generator=g).to(dtype)
        ref = causal_conv1d(xc, w, b, activation="silu", reverse=reverse, backend="cpu")
        view, buf = _halves(xc)
        got = causal_conv1d(view, w, b, activation="silu", reverse=reverse, backend="cpu", out=view)
        assert got.data_ptr() == view.data_ptr()
        assert torch.equal(got, ref) and (buf[:, 40:] == 7).all()


def test_scan_backward_reads_strided_inputs():
    """Under autograd, u, delta and z as strided halves (views of a concatenation): the same output
    and gradients as on contiguous inputs, bit for bit."""
    x = scan_inputs(2, 40, 16, 90, seed=22)

    def grads(strided: bool):
        leaves = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in x.items()}
        used = dict(leaves)
        if strided:
            for k in ("u", "delta", "z"):
                used[k] = torch.cat([leaves[k], leaves[k]], 1)[:, :40]
                assert not used[k].is_contiguous()
        out = selective_scan(**used, delta_softplus=True, backend="cpu")
        out.sum().backward()
        return out, {k: v.grad for k, v in leaves.items() if v is not None}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # dB / dC sum per-thread partials in the order threads took the work
    try:
        (out, g), (ref, g_ref) = grads(True), grads(False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, ref)
    for k, v in g.items():
        assert torch.equal(v, g_ref[k]), k
