"""The blocks' memory-light backward on the CPU kernels (recompute the cheap part, take the scans'
outputs from their backward kernels) against plain autograd with every activation kept."""
from __future__ import annotations

import pytest
import torch
from _requirements import require_cpu_kernel

import videomamba as vm
from videomamba.layers import block as block_mod
from videomamba.ops import use_backend

SMALL = dict(embed_dim=32, depth=2, num_classes=5, num_frames=4, img_size=32)


@pytest.fixture(autouse=True)
def _kernel():
    require_cpu_kernel()


def grads_of(mode: str, x: torch.Tensor, amp: bool = False, **kw):
    torch.manual_seed(0)
    m = vm.create_model("videomamba_tiny", **{**SMALL, **kw}, mixer_recompute=mode).train()
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = m(x)
    out.float().square().sum().backward()
    return out.detach().float(), {"input": x.grad, **{n: p.grad for n, p in m.named_parameters()}}


def count_light(monkeypatch) -> list:
    calls = []
    orig = block_mod._LightMix.apply
    monkeypatch.setattr(block_mod._LightMix, "apply", lambda *a: calls.append(1) or orig(*a))
    return calls


@pytest.mark.parametrize("merge", ["sum", "mean"])
def test_fp32_gradients_equal_plain_autograd(monkeypatch, merge):
    x = torch.randn(2, 3, 4, 32, 32)
    calls = count_light(monkeypatch)
    out, light = grads_of("always", x, merge=merge)
    assert len(calls) == SMALL["depth"]                    # every block took the light path
    want_out, want = grads_of("never", x, merge=merge)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    assert set(light) == set(want)
    for n, g in want.items():
        torch.testing.assert_close(light[n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast_gradients_close_to_plain_autograd(monkeypatch):
    """Under bf16 autocast both paths round at bf16; the light one computes out_proj's input gradient
    in fp32, so the two agree to bf16 precision (relative to each gradient's scale)."""
    x = torch.randn(2, 3, 4, 32, 32)
    calls = count_light(monkeypatch)
    _, light = grads_of("always", x, amp=True)
    assert calls
    _, want = grads_of("never", x, amp=True)
    _, exact = grads_of("never", x)
    for n, g in exact.items():
        scale = g.abs().max().clamp_min(1e-12)
        err_light = ((light[n].float() - g).abs().max() / scale).item()
        err_plain = ((want[n].float() - g).abs().max() / scale).item()
        assert err_light <= max(2 * err_plain, 2e-2), (n, err_light, err_plain)


def test_other_orders_and_backends_take_the_checkpoint(monkeypatch):
    x = torch.randn(1, 3, 4, 32, 32)
    calls = count_light(monkeypatch)
    _, light = grads_of("always", x, scan_order="temporal_first", backward_order="spatial_reversal")
    assert not calls
    _, want = grads_of("never", x, scan_order="temporal_first", backward_order="spatial_reversal")
    for n, g in want.items():
        torch.testing.assert_close(light[n], g, msg=n)
    with use_backend("torch"):
        grads_of("always", x)
    assert not calls


def test_frozen_parameters_and_input_without_gradient():
    """Frozen mixer parameters get no gradient and the rest the same as plain autograd; an input that
    needs no gradient still gives the block's parameters theirs."""
    x = torch.randn(1, 3, 4, 32, 32)
    res = {}
    for mode in ("always", "never"):
        torch.manual_seed(0)
        m = vm.create_model("videomamba_tiny", **SMALL, mixer_recompute=mode).train()
        for blk in m.layers:
            blk.mixer.D.requires_grad_(False)
            blk.mixer.A_b_log.requires_grad_(False)
        m.patch_embed.requires_grad_(False)
        m.pos_embed.requires_grad_(False)
        m.cls_token.requires_grad_(False)
        m.temporal_pos_embedding.requires_grad_(False)
        m(x).square().sum().backward()
        res[mode] = {n: p.grad for n, p in m.named_parameters()}
    for n, g in res["never"].items():
        if g is None:
            assert res["always"][n] is None, n
        else:
            torch.testing.assert_close(res["always"][n], g, rtol=1e-4, atol=1e-6, msg=n)
    assert res["always"]["layers.0.mixer.in_proj.weight"] is not None
