"""RMSNorm under autograd on the compiled CPU kernels: outputs and both gradients against the
oracle (rms_norm_ref), and when the kernels apply."""
from __future__ import annotations

import pytest
import torch
from _requirements import require_cpu_kernel

from videomamba.ops import rms_norm, rms_norm_ref, use_backend

# 1-, 2- and 3-D shapes: one row, D below, at and off the kernels' 16 lanes, more rows than one
# chunk of the backward's dweight partials (256), no rows
SHAPES = [(24,), (1, 192), (5, 7), (3, 16), (4, 17), (2, 33, 40), (1, 600, 192), (0, 8)]


@pytest.fixture(autouse=True)
def kernel():
    return require_cpu_kernel().load()


def inputs(shape, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * scale
    w = torch.randn(shape[-1], generator=g)
    dy = torch.randn(*shape, generator=g)
    return x, w, dy


def forward_backward(fn, x, w, dy, wrt=("x", "w")):
    x = x.detach().clone().requires_grad_("x" in wrt)
    w = w.detach().clone().requires_grad_("w" in wrt)
    out = fn(x, w)
    out.backward(dy)
    return out, x.grad, w.grad


def assert_matches_reference(x, w, dy, wrt=("x", "w")):
    """The output bit for bit, the gradients to fp32 rounding."""
    out, dx, dw = forward_backward(rms_norm, x, w, dy, wrt)
    assert type(out.grad_fn).__name__ == "_KernelRMSNormBackward"
    want, dx_want, dw_want = forward_backward(rms_norm_ref, x, w, dy, wrt)
    assert out.dtype == want.dtype and out.shape == want.shape
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    for got, exp in ((dx, dx_want), (dw, dw_want)):
        assert (got is None) == (exp is None)
        if exp is not None:
            assert got.dtype == exp.dtype
            torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape):
    assert_matches_reference(*inputs(shape))


def test_eps_and_tiny_inputs():
    x, w, dy = inputs((6, 24), seed=1, scale=1e-3)  # mean(x^2) ~ 1e-6, eps 1e-5 dominates
    assert_matches_reference(x, w, dy)


@pytest.mark.parametrize("wrt", [("x",), ("w",)], ids=["x-only", "weight-only"])
def test_one_input_requires_grad(wrt):
    assert_matches_reference(*inputs((3, 10, 20), seed=2), wrt=wrt)


def test_non_contiguous_input():
    x, w, dy = inputs((20, 3, 48), seed=3)
    assert_matches_reference(x.transpose(0, 1), w, dy.transpose(0, 1))


def test_expanded_output_gradient():
    x, w, _ = inputs((3, 5, 20), seed=10)
    dy = torch.full((1, 1, 1), 0.5).expand(3, 5, 20)  # what out.sum().backward() passes, strides 0
    assert_matches_reference(x, w, dy)


def test_under_bf16_autocast():
    """The blocks call the norm on the fp32 residual stream with the fp32 weight under autocast:
    the output stays fp32, as the reference's does."""
    x, w, dy = inputs((2, 50, 64), seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_matches_reference(x, w, dy)
        out = rms_norm(x.requires_grad_(True), w)
        # a matmul after the norm runs in bf16, its gradient comes back in bf16
        (out @ torch.ones(64, 8)).float().square().sum().backward()
    assert out.dtype == torch.float32 and x.grad.dtype == torch.float32


def test_bf16_input_runs_the_reference():
    x, w, dy = inputs((2, 9, 24), seed=5)
    x = x.bfloat16().requires_grad_(True)
    wg = w.clone().requires_grad_(True)
    for amp in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = rms_norm(x, wg)
            want = rms_norm_ref(x, wg)
        assert type(out.grad_fn).__name__ != "_KernelRMSNormBackward"
        assert out.dtype == want.dtype == torch.float32
        torch.testing.assert_close(out, want, rtol=0, atol=0)
        got = torch.autograd.grad(out, (x, wg), dy)
        exp = torch.autograd.grad(want, (x, wg), dy)
        for a, b in zip(got, exp):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_other_backends_run_the_reference():
    x, w, _ = inputs((4, 32), seed=6)
    for name in ("ref", "torch"):
        with use_backend(name):
            out = rms_norm(x.requires_grad_(True), w)
        assert type(out.grad_fn).__name__ != "_KernelRMSNormBackward"


def test_kernel_backward_takes_any_gradient_dtype(kernel):
    x, w, dy = inputs((7, 40), seed=7)
    rstd = torch.rsqrt(x.pow(2).mean(-1) + 1e-5)
    low = dy.bfloat16()
    for a, b in zip(kernel.rms_norm_bwd(x, w, rstd, low), kernel.rms_norm_bwd(x, w, rstd, low.float())):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="expects dy of x's shape"):
        kernel.rms_norm_bwd(x, w, rstd, dy[:3])
    with pytest.raises(RuntimeError, match=r"expects x \(R, D\), weight \(D,\) and rstd \(R,\)"):
        kernel.rms_norm_fwd(x, w[:5], rstd)


def test_deterministic_across_thread_counts():
    x, w, dy = inputs((1, 1100, 64), seed=8)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(forward_backward(rms_norm, x, w, dy))
    finally:
        torch.set_num_threads(threads)
    for res in results[1:]:
        for a, b in zip(res, results[0]):
            assert torch.equal(a, b)


def test_second_order_gradient_through_the_reference():
    x, w, dy = inputs((3, 12), seed=9)

    def second(fn):
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        dx, dw = torch.autograd.grad(fn(xg, wg), (xg, wg), dy, create_graph=True)
        return torch.autograd.grad((dx.square().sum() + dw.square().sum()), (xg, wg))

    for a, b in zip(second(rms_norm), second(rms_norm_ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_block_backward_uses_the_kernel(monkeypatch, kernel):
    """The blocks' norm, in plain autograd and in the memory-light path's recomputation."""
    import videomamba as vm

    calls = []
    for name in ("rms_norm_fwd", "rms_norm_bwd"):
        fn = getattr(kernel, name)
        monkeypatch.setattr(kernel, name, lambda *a, _fn=fn, _n=name: calls.append(_n) or _fn(*a))
    torch.manual_seed(0)
    for mode in ("never", "always"):
        m = vm.create_model("videomamba_tiny", embed_dim=32, depth=2, num_classes=5, num_frames=4,
                            img_size=32, mixer_recompute=mode).train()
        calls.clear()
        m(torch.randn(1, 3, 4, 32, 32)).sum().backward()
        # each block's norm and the final one; "always" runs the blocks' norms without autograd
        # in the forward and on the kernel when its backward rebuilds them
        assert calls.count("rms_norm_fwd") == calls.count("rms_norm_bwd") == 3, (mode, calls)
