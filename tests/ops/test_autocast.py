"""bf16 autocast against fp32 on the same inputs, forward and gradients, for every kernel on CPU.

The other ops tests compare a kernel's bf16 run with the oracle on the *same rounded* inputs
(rtol half an ulp). Here the comparison is with the fp32 run on the unrounded inputs, as a user
switching autocast on would see it: the inputs are rounded to bf16 as the mixer's autocast
matmuls hand them over (u, delta, B, C, z in bf16; A, D, delta_bias and the conv weights fp32),
the gradients flow back through those casts to the fp32 leaves.

Tolerance: bf16 keeps 8 significant bits, so one rounding moves a value by up to 2^-8 (0.4 %)
of itself. Observed norm-wise errors are 0.3-0.8 % for outputs and every gradient, on every
backend. Bounds: norm-wise error <= 2^-6 (1.6 %) and largest element error <= 2^-5 (3.1 %) of
the tensor's largest value: 2-4 roundings, while a dropped term, a branch run in the wrong
direction or a state carried in bf16 over 97 steps moves them by tens of percent.
"""
from __future__ import annotations

import pytest
import torch

from videomamba.ops import causal_conv1d, rms_norm, selective_scan

from .helpers import cpu_kernel_or_skip, run_with_grads, scan_inputs

NORM_TOL, MAX_TOL = 2.0 ** -6, 2.0 ** -5
LOW = ("u", "delta", "B", "C", "z")


def assert_bf16_close(actual, expected, name):
    actual, expected = actual.double(), expected.double()
    assert actual.shape == expected.shape and torch.isfinite(actual).all(), name
    norm_err = ((actual - expected).norm() / expected.norm()).item()
    max_err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert norm_err <= NORM_TOL and max_err <= MAX_TOL, (
        f"{name}: bf16 vs fp32 error {norm_err:.3g} (norm-wise, bound {NORM_TOL:.3g}), "
        f"{max_err:.3g} (largest element, bound {MAX_TOL:.3g})")


@pytest.fixture(params=["cpu", "torch", "ref"])
def scan_backend(request):
    if request.param == "cpu":
        cpu_kernel_or_skip()
    return request.param


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("groups", [None, 2], ids=["shared-BC", "grouped-BC"])
def test_selective_scan_bf16_autocast_vs_fp32(scan_backend, reverse, groups):
    x = scan_inputs(2, 40, 16, 97, G=groups, seed=3)
    kw = dict(delta_softplus=True, return_last_state=True, backend=scan_backend, reverse=reverse)

    def low(**a):
        a = {k: (v.bfloat16() if k in LOW else v) for k, v in a.items()}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, last = selective_scan(**a, **kw)
        assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
        return out, last

    outs, grads = run_with_grads(low, x)
    ref_outs, ref_grads = run_with_grads(selective_scan, x, **kw)
    for name, a, b in zip(("out", "last state"), outs, ref_outs):
        assert_bf16_close(a, b, name)
    assert grads.keys() == ref_grads.keys() == {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"}
    for k in grads:
        assert_bf16_close(grads[k], ref_grads[k], f"grad {k}")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("backend", ["cpu", "ref"])
def test_causal_conv_bf16_autocast_vs_fp32(backend, reverse):
    if backend == "cpu":
        cpu_kernel_or_skip()
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 24, 70, generator=g), torch.randn(24, 4, generator=g), torch.randn(24, generator=g)
    cot = torch.randn(2, 24, 70, generator=g)

    def run(low: bool):
        xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = causal_conv1d(xs.bfloat16() if low else xs, ws, bs, "silu", backend=backend, reverse=reverse)
        assert out.dtype == (torch.bfloat16 if low else torch.float32)
        grads = torch.autograd.grad((out.float() * cot).sum(), (xs, ws, bs))
        return out.detach(), grads

    out, grads = run(True)
    ref, ref_grads = run(False)
    assert_bf16_close(out, ref, "out")
    for name, a, r in zip("xwb", grads, ref_grads):
        assert_bf16_close(a, r, f"grad {name}")


def test_rms_norm_bf16_autocast_vs_fp32():
    """A bf16 input is normalised in fp32: the output carries only the input's rounding."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 33, 40, generator=g) * 3, torch.randn(40, generator=g)
    cot = torch.randn(2, 33, 40, generator=g)

    def run(low: bool):
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = rms_norm(xs.bfloat16() if low else xs, ws)
        return out.detach(), torch.autograd.grad((out.float() * cot).sum(), (xs, ws))

    out, grads = run(True)
    ref, ref_grads = run(False)
    assert out.dtype == torch.float32  # follows the fp32 weight
    assert_bf16_close(out, ref, "out")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the inference path too
        assert_bf16_close(rms_norm(x.bfloat16(), w), ref, "out (no grad)")
    for name, a, r in zip("xw", grads, ref_grads):
        assert_bf16_close(a, r, f"grad {name}")
