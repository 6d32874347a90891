"""The CUDA path against the oracle, on a GPU with mamba_ssm and causal_conv1d installed.

Run with ``python -m pytest -m gpu tests/ops/test_cuda_kernels.py``; the default run deselects
these tests (tests/conftest.py). Without a GPU the CUDA adapters are checked only against a
stand-in for mamba_ssm that *is* the oracle (tests/ops/test_scan_backend.py): that covers the
adapters' dtype handling, not the CUDA kernels' numbers. These tests cover the numbers.

Tolerances as in test_selective_scan.py: fp32 rtol = atol = 2e-5 of the scale; bf16 inputs half
an ulp relative (the kernels compute in fp32 and round once), with the oracle on the same
rounded inputs.
"""
from __future__ import annotations

import pytest
import torch

from _requirements import require_module, skip_or_fail
from videomamba.ops import causal_conv1d, selective_scan

from .helpers import assert_close_scaled, run_with_grads, scan_inputs

pytestmark = pytest.mark.gpu
HOW = "a CUDA GPU with `pip install mamba-ssm causal-conv1d` (built for the installed torch)"


@pytest.fixture(scope="module")
def cuda():
    if not torch.cuda.is_available():
        skip_or_fail("no CUDA device visible", HOW)
    require_module("mamba_ssm", HOW)
    require_module("causal_conv1d", HOW)
    return torch.device("cuda")


def _to(x: dict, device, dtype=None):
    low = ("u", "delta", "B", "C", "z")
    return {k: (None if v is None else v.to(device, dtype if (dtype and k in low) else v.dtype))
            for k, v in x.items()}


@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 2e-5), (torch.bfloat16, 2.0 ** -8)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_cuda_scan_matches_oracle(cuda, dtype, rtol, groups, reverse):
    x = scan_inputs(2, 64, 16, 257, G=groups, seed=1)
    kw = dict(delta_softplus=True, return_last_state=False, reverse=reverse)
    xc = _to(x, cuda, dtype)
    outs, grads = run_with_grads(selective_scan, xc, backend="cuda", out_dtype=dtype, **kw)
    oracle = {k: (None if v is None else v.detach().float().cpu()) for k, v in xc.items()}
    ref_outs, ref_grads = run_with_grads(selective_scan, oracle, backend="ref", out_dtype=dtype, **kw)
    assert_close_scaled(outs[0].float().cpu(), ref_outs[0], rtol, 2e-5, "out")
    for k in ref_grads:
        assert_close_scaled(grads[k].float().cpu(), ref_grads[k], max(rtol, 1e-4), 1e-4, f"grad {k}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_cuda_conv_matches_reference(cuda, dtype, reverse):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 64, 130, generator=g), torch.randn(64, 4, generator=g), torch.randn(64, generator=g)
    out = causal_conv1d(x.to(cuda, dtype), w.to(cuda), b.to(cuda), "silu", backend="cuda", reverse=reverse)
    xr = x.to(dtype).float()
    ref = causal_conv1d(xr, w, b, "silu", backend="ref", reverse=reverse)
    assert out.dtype == dtype
    assert_close_scaled(out.float().cpu(), ref, 2e-5 if dtype == torch.float32 else 2.0 ** -8, 2e-5, "out")


def test_model_on_cuda_matches_cpu(cuda):
    import videomamba as vm
    torch.manual_seed(0)
    m = vm.create_model("videomamba_tiny", embed_dim=64, depth=2, num_classes=5, num_frames=4, img_size=32).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        cpu = m(x)
        gpu = m.to(cuda)(x.to(cuda)).cpu()
    assert_close_scaled(gpu, cpu, 1e-4, 1e-4, "logits")
