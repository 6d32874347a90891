"""The blocks' memory-light backward on the CPU kernels (recompute the cheap part, take the scans'
outputs from their backward kernels) against plain autograd with every activation kept."""
from __future__ import annotations

import pytest
import torch
from _requirements import require_cpu_kernel

import videomamba as vm
from videomamba.layers import block as block_mod
from videomamba.layers import mixer as mixer_mod
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


# "auto" takes the light path at any length here, keeping the in- and x-projections' outputs;
# "always" keeps only the block's input
LIGHT_MODES = ["always", "auto"]


@pytest.fixture
def auto_everywhere(monkeypatch):
    monkeypatch.setattr(block_mod.Block, "RECOMPUTE_MIN_TOKENS", 0)


def count_known(monkeypatch) -> list:
    """Calls of the projection that reuses a kept output instead of multiplying again."""
    calls = []
    orig = mixer_mod._KnownProjection.apply
    monkeypatch.setattr(mixer_mod._KnownProjection, "apply", lambda *a: calls.append(1) or orig(*a))
    return calls


def count_light(monkeypatch) -> list:
    calls = []
    orig = block_mod._LightMix.apply
    monkeypatch.setattr(block_mod._LightMix, "apply", lambda *a: calls.append(1) or orig(*a))
    return calls


@pytest.mark.parametrize("mode", LIGHT_MODES)
@pytest.mark.parametrize("merge", ["sum", "mean"])
def test_fp32_gradients_equal_plain_autograd(monkeypatch, auto_everywhere, merge, mode):
    x = torch.randn(2, 3, 4, 32, 32)
    calls, known = count_light(monkeypatch), count_known(monkeypatch)
    out, light = grads_of(mode, x, merge=merge)
    assert len(calls) == SMALL["depth"]                    # every block took the light path
    # "auto" reuses in_proj's and both x_proj's outputs in every block; "always" recomputes them
    assert len(known) == (3 * SMALL["depth"] if mode == "auto" else 0)
    want_out, want = grads_of("never", x, merge=merge)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    assert set(light) == set(want)
    for n, g in want.items():
        torch.testing.assert_close(light[n], g, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("mode", LIGHT_MODES)
def test_bf16_autocast_gradients_close_to_plain_autograd(monkeypatch, auto_everywhere, mode):
    """Under bf16 autocast both paths round at bf16; the light one computes out_proj's input gradient
    in fp32, so the two agree to bf16 precision (relative to each gradient's scale)."""
    x = torch.randn(2, 3, 4, 32, 32)
    calls, known = count_light(monkeypatch), count_known(monkeypatch)
    _, light = grads_of(mode, x, amp=True)
    assert calls and len(known) == (3 * SMALL["depth"] if mode == "auto" else 0)
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


@pytest.mark.parametrize("light", LIGHT_MODES)
def test_frozen_parameters_and_input_without_gradient(auto_everywhere, light):
    """Frozen mixer parameters get no gradient and the rest the same as plain autograd; an input that
    needs no gradient still gives the block's parameters theirs."""
    x = torch.randn(1, 3, 4, 32, 32)
    res = {}
    for mode in (light, "never"):
        torch.manual_seed(0)
        m = vm.create_model("videomamba_tiny", **SMALL, mixer_recompute=mode).train()
        for blk in m.layers:
            blk.mixer.D.requires_grad_(False)
            blk.mixer.A_b_log.requires_grad_(False)
            blk.mixer.x_proj_b.requires_grad_(False)       # a kept projection with a frozen weight
        m.patch_embed.requires_grad_(False)
        m.pos_embed.requires_grad_(False)
        m.cls_token.requires_grad_(False)
        m.temporal_pos_embedding.requires_grad_(False)
        m(x).square().sum().backward()
        res[mode] = {n: p.grad for n, p in m.named_parameters()}
    for n, g in res["never"].items():
        if g is None:
            assert res[light][n] is None, n
        else:
            torch.testing.assert_close(res[light][n], g, rtol=1e-4, atol=1e-6, msg=n)
    assert res[light]["layers.0.mixer.in_proj.weight"] is not None


def test_grad_checkpointing_keeps_the_least(monkeypatch, auto_everywhere):
    """The model's gradient checkpointing takes the light path without keeping the projections'
    outputs, whatever ``mixer_recompute`` says: it is the setting for the least memory."""
    calls, known = count_light(monkeypatch), count_known(monkeypatch)
    m = vm.create_model("videomamba_tiny", **SMALL, mixer_recompute="auto", grad_checkpointing=True).train()
    m(torch.randn(1, 3, 4, 32, 32)).square().sum().backward()
    assert len(calls) == SMALL["depth"] and not known


def test_kept_outputs_need_the_lean_forward():
    mixer = mixer_mod.BiMambaMixer(16)
    with pytest.raises(ValueError, match="without autograd"):
        mixer(torch.randn(1, 5, 16), kept=[])
