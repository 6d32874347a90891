"""Causal depthwise conv1d: hand-computed values, then the fast path against the reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videomamba.ops import causal_conv1d, causal_conv1d_ref

from .helpers import assert_close_scaled, cpu_kernel_or_skip

IMPLS = ["ref", "cpu"]


@pytest.fixture(params=IMPLS)
def conv(request):
    if request.param == "cpu":
        k = cpu_kernel_or_skip()
        return k.causal_conv1d_cpu
    return causal_conv1d_ref


def test_hand_computed(conv):
    # out[t] = b + w0 x[t-3] + w1 x[t-2] + w2 x[t-1] + w3 x[t], zeros before t = 0
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    w = torch.tensor([[1000.0, 100.0, 10.0, 1.0]])
    b = torch.tensor([0.5])
    expected = torch.tensor([[[1.5, 12.5, 123.5, 1234.5, 2345.5]]])
    torch.testing.assert_close(conv(x, w, b), expected, rtol=0, atol=0)
    torch.testing.assert_close(conv(x, w, None), expected - 0.5, rtol=0, atol=0)
    # SiLU: s * sigmoid(s) at s = -1.5 + 0.5 = -1 and s = 0.5 (K = 2, w = [0, 1])
    x2 = torch.tensor([[[-1.5, 0.0]]])
    out = conv(x2, torch.tensor([[0.0, 1.0]]), torch.tensor([0.5]), "silu")
    torch.testing.assert_close(out, torch.tensor([[[-0.2689414, 0.3112297]]]), rtol=1e-6, atol=1e-7)


# L: vector chunks and a tail (37, 100), a tail only (1, 2), whole chunks only (32, 64)
@pytest.mark.parametrize("Bz,E,L,K", [(2, 5, 37, 4), (1, 3, 1, 4), (2, 4, 2, 3), (3, 33, 100, 2),
                                      (1, 4, 32, 4), (2, 3, 64, 3)])
@pytest.mark.parametrize("act", [None, "silu"])
def test_kernel_matches_reference_with_grads(Bz, E, L, K, act):
    k = cpu_kernel_or_skip()
    g = torch.Generator().manual_seed(L)
    x, w, b = (torch.randn(*s, generator=g, requires_grad=True) for s in ((Bz, E, L), (E, K), (E,)))
    cot = torch.randn(Bz, E, L, generator=g)
    out = k.causal_conv1d_cpu(x, w, b, act)
    ref = causal_conv1d_ref(x, w, b, act)
    grads = torch.autograd.grad((out * cot).sum(), (x, w, b))
    ref_grads = torch.autograd.grad((ref * cot).sum(), (x, w, b))
    assert_close_scaled(out.detach(), ref.detach(), 1e-5, 1e-6, "out")
    for name, a, r in zip("xwb", grads, ref_grads):
        assert_close_scaled(a, r, 1e-5, 1e-6, f"grad {name}")


def test_kernel_bf16_and_non_contiguous():
    k = cpu_kernel_or_skip()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 40, 6, generator=g).transpose(1, 2)  # (2, 6, 40), non-contiguous
    x = x.to(torch.bfloat16).requires_grad_(True)
    w = torch.randn(4, 6, generator=g).t().requires_grad_(True)  # (6, 4), non-contiguous
    b = torch.randn(6, generator=g, requires_grad=True)
    out = k.causal_conv1d_cpu(x, w, b, "silu")
    assert out.dtype == torch.bfloat16
    ref = causal_conv1d_ref(x.detach().float(), w.detach(), b.detach(), "silu")
    assert_close_scaled(out.detach(), ref, 2.0 ** -8, 1e-6, "out")  # one bf16 rounding
    gx, gw, gb = torch.autograd.grad(out.float().sum(), (x, w, b))
    assert (gx.dtype, gw.dtype, gb.dtype) == (torch.bfloat16, torch.float32, torch.float32)


def test_dispatcher_validates():
    x = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match=r"weight must have shape \(E, K\) = \(3, K\)"):
        causal_conv1d(x, torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"bias must have shape \(E,\) = \(3,\)"):
        causal_conv1d(x, torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, torch.zeros(3, 4), activation="relu")
    with pytest.raises(ValueError, match=r"x must have shape \(B, E, L\)"):
        causal_conv1d(torch.zeros(3, 5), torch.zeros(3, 4))


def test_matches_module_conv():
    """Same numbers as the nn.Conv1d the mixer holds (padding K-1, first L outputs)."""
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3)
    x = torch.randn(2, 6, 17)
    expected = F.silu(conv(x)[..., :17])
    out = causal_conv1d(x, conv.weight.squeeze(1), conv.bias, activation="silu")
    assert_close_scaled(out.detach(), expected.detach(), 1e-5, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("Bz,E,L,K", [(2, 5, 37, 4), (1, 3, 1, 4), (2, 4, 2, 3), (3, 33, 100, 2)])
@pytest.mark.parametrize("act", [None, "silu"])
@pytest.mark.parametrize("backend", ["cpu", "ref"])
def test_reverse_is_flip_conv_flip(backend, act, Bz, E, L, K, dtype):
    """reverse=True against flip -> conv -> flip, outputs and gradients. The CPU kernel reads x
    back to front and adds the same products in the same order: everything agrees bit for bit."""
    if backend == "cpu":
        cpu_kernel_or_skip()
    g = torch.Generator().manual_seed(L + K)
    x = torch.randn(Bz, E, L, generator=g).to(dtype).requires_grad_(True)
    # F.conv1d wants one dtype; the kernel takes fp32 weights with bf16 x, as under autocast
    wdt = dtype if backend == "ref" else torch.float32
    w, b = (torch.randn(*s, generator=g).to(wdt).requires_grad_(True) for s in ((E, K), (E,)))
    cot = torch.randn(Bz, E, L, generator=g).to(dtype).float()
    out = causal_conv1d(x, w, b, act, backend=backend, reverse=True)
    ref = causal_conv1d(x.flip(-1), w, b, act, backend=backend).flip(-1)
    assert out.dtype == ref.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grads = torch.autograd.grad((out.float() * cot).sum(), (x, w, b))
    ref_grads = torch.autograd.grad((ref.float() * cot).sum(), (x, w, b))
    for name, a, r in zip("xwb", grads, ref_grads):
        assert a.dtype == r.dtype
        torch.testing.assert_close(a, r, rtol=0, atol=0, msg=f"grad {name}")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("backend", ["cpu", "ref"])
def test_out_may_be_x(backend, reverse):
    """out= writes into a given buffer, which may be x itself (the mixer's inference path)."""
    if backend == "cpu":
        cpu_kernel_or_skip()
    g = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(2, 20, 70, generator=g), torch.randn(20, 4, generator=g), torch.randn(20, generator=g)
    expected = causal_conv1d(x, w, b, "silu", backend=backend, reverse=reverse)
    for buf in (x.clone(), torch.empty(2, 20, 70, dtype=torch.bfloat16)):
        src = buf if buf.dtype == x.dtype else x
        out = causal_conv1d(src, w, b, "silu", backend=backend, reverse=reverse, out=buf)
        assert out.data_ptr() == buf.data_ptr()
        torch.testing.assert_close(out, expected.to(buf.dtype), rtol=0, atol=0)
    with pytest.raises(ValueError, match="out= is for inference"):
        causal_conv1d(x, w.requires_grad_(True), b, backend=backend, out=torch.empty_like(x))
