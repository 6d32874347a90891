"""RMSNorm: hand-computed values and the fp32-math contract."""
from __future__ import annotations

import pytest
import torch

from videomamba.ops import rms_norm, rms_norm_ref


def test_hand_computed():
    # mean(x^2) = (9 + 16) / 2 = 12.5; rsqrt(12.5 + 1e-5) = 0.28284258
    x = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(rms_norm(x, w), torch.tensor([[0.8485277, 2.2627404]]),
                               rtol=1e-6, atol=0)
    # eps matters for small inputs: x = 1e-3 -> 1e-3 / sqrt(1e-6 + 1e-5) = 0.30151134
    torch.testing.assert_close(rms_norm(torch.tensor([1e-3]), torch.tensor([1.0])),
                               torch.tensor([0.30151134]), rtol=1e-6, atol=0)


def test_bf16_input_uses_fp32_math():
    x = torch.tensor([[300.0, 400.0]], dtype=torch.bfloat16)  # x^2 would be rounded in bf16
    out = rms_norm(x, torch.ones(2))
    assert out.dtype == torch.float32  # follows the (fp32) weight: the residual stream stays fp32
    torch.testing.assert_close(out, torch.tensor([[0.8485281, 1.1313708]]), rtol=1e-6, atol=0)


def test_bad_weight():
    with pytest.raises(ValueError, match=r"weight must have shape \(D,\) = \(4,\)"):
        rms_norm(torch.zeros(2, 4), torch.ones(3))


def test_inference_path_matches_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 33, 40, generator=g) * 3
    w = torch.randn(40, generator=g)
    with torch.no_grad():
        fast = rms_norm(x, w)
    torch.testing.assert_close(fast, rms_norm_ref(x, w), rtol=1e-6, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    out = rms_norm(xg, w)  # autograd: the reference path
    assert out.grad_fn is not None
    torch.testing.assert_close(out.detach(), fast, rtol=1e-6, atol=1e-6)
