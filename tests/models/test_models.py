"""Backbone: presets, switches, API, resampling, scan orders (with hand-computed permutations)."""
import pytest
import torch
import torch.utils.checkpoint

import videomamba as vm
from videomamba.layers import FULL_FLIP, BiMambaMixer, ScanOrder
from videomamba.models import build_scan_orders

SMALL = dict(embed_dim=32, depth=2, num_classes=5, num_frames=4, img_size=32)


def small(name="videomamba_tiny", **kw):
    torch.manual_seed(0)
    return vm.create_model(name, **{**SMALL, **kw})


def test_registry_lists_all_presets():
    names = vm.list_models()
    for n in ["videomamba_tiny", "videomamba_small", "videomamba_middle", "videomamba_image_tiny",
              "videomamba_image_small", "videomamba_image_middle", "videomamba_kaist_tiny",
              "videomamba_kaist_small"]:
        assert n in names
    assert vm.list_models("*kaist*") == ["videomamba_kaist_small", "videomamba_kaist_tiny"]
    with pytest.raises(ValueError, match="unknown model"):
        vm.create_model("videomamba_huge")


@pytest.mark.parametrize("name", ["videomamba_tiny", "videomamba_kaist_tiny"])
def test_preset_shapes_and_grads(name):
    model = small(name)
    x = torch.randn(2, 3, 4, 32, 32)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_image_model_takes_4d_input():
    model = small("videomamba_image_tiny")
    assert model.temporal_pos_embedding is None
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="image model got 4 frames"):
        model(torch.randn(1, 3, 4, 32, 32))


SWITCHES = [
    dict(scan_order="temporal_first"),
    dict(scan_order="spatiotemporal_v1"),
    dict(scan_order="spatiotemporal_v2"),
    dict(backward_order="spatial_reversal"),
    dict(backward_order="temporal_reversal"),
    dict(pos_embed="joint"), dict(pos_embed="sinusoidal"), dict(pos_embed="none"),
    dict(cls_position="middle"), dict(cls_position="none"),
    dict(merge="mean"), dict(tubelet_size=2), dict(drop_path_rate=0.2),
]


@pytest.mark.parametrize("kw", SWITCHES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_every_switch_runs_and_trains(kw):
    model = small(**kw).train()
    out = model(torch.randn(2, 3, 4, 32, 32))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_switch_validation_messages():
    with pytest.raises(ValueError, match="scan_order='diagonal' is not valid"):
        vm.create_model("videomamba_tiny", scan_order="diagonal")
    with pytest.raises(ValueError, match="img_size=33 does not tile into patches of 16 px at stride 16"):
        vm.create_model("videomamba_tiny", img_size=33)
    model = small()
    with pytest.raises(ValueError, match=r"expected input \(B, 3, T, H, W\)"):
        model(torch.randn(2, 4, 4, 32, 32))
    with pytest.raises(ValueError, match="frame size 40x40 does not tile into 16 px patches at stride 16"):
        model(torch.randn(1, 3, 4, 40, 40))


def test_hand_computed_scan_orders():
    """t=2 frames of S=3 tokens, cls at index 0: canonical positions cls=0, (0,s)=1+s, (1,s)=4+s."""
    def orders(**kw):
        cfg = vm.get_config("videomamba_tiny", depth=1, **kw)
        (o,), = build_scan_orders(cfg, t=2, S=3, cls_index=0)
        return o
    assert orders() is FULL_FLIP
    o = orders(backward_order="spatial_reversal")            # frames in order, each reversed
    assert o.fwd is None and o.bwd.tolist() == [3, 2, 1, 6, 5, 4, 0]
    o = orders(backward_order="temporal_reversal")           # frames reversed, order within kept
    assert o.bwd.tolist() == [4, 5, 6, 1, 2, 3, 0]
    o = orders(scan_order="temporal_first")                  # location-major: s*t + i
    assert o.fwd.tolist() == [0, 1, 4, 2, 5, 3, 6] and o.bwd_is_flip
    cfg = vm.get_config("videomamba_tiny", depth=4, scan_order="spatiotemporal_v1")
    per_layer = build_scan_orders(cfg, t=2, S=3, cls_index=0)
    assert [o[0].fwd is None for o in per_layer] == [True, False, True, False]


def test_mixer_order_equals_permuted_input():
    """Scanning in order `perm` equals permuting the tokens, scanning plainly and un-permuting."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(16).eval()
    x = torch.randn(2, 7, 16)
    perm = torch.tensor([0, 1, 4, 2, 5, 3, 6])
    inv = torch.argsort(perm)
    expected = mixer(x[:, perm])[:, inv]
    got = mixer(x, ScanOrder(perm, None, True))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # an explicit full-flip index is the same as the flip fast path
    explicit = ScanOrder(None, torch.arange(6, -1, -1), False)
    torch.testing.assert_close(mixer(x, explicit), mixer(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("merge", ["sum", "mean"])
@pytest.mark.parametrize("batch", [1, 2])
def test_mixer_inference_path_matches_autograd_path(batch, merge):
    """Without autograd the mixer overwrites its dead buffers in place (conv into x, scans into
    their conv outputs, the sum into the forward branch): the same numbers, for every kind of
    order, and the input is left alone."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(16, merge=merge).eval()
    x = torch.randn(batch, 9, 16)
    before = x.clone()
    perm = torch.tensor([0, 1, 4, 2, 5, 3, 6, 8, 7])
    for order in (FULL_FLIP, ScanOrder(perm, None, True), ScanOrder(None, perm.flip(0), False),
                  ScanOrder(perm, torch.arange(8, -1, -1), False)):
        expected = mixer(x, order)
        assert expected.requires_grad
        for ctx in (torch.no_grad, torch.inference_mode):
            with ctx():
                torch.testing.assert_close(mixer(x, order), expected, rtol=0, atol=0)
    assert torch.equal(x, before)


@pytest.mark.parametrize("kw", [{}, dict(scan_order="spatiotemporal_v2", backward_order="temporal_reversal")])
def test_model_inference_path_matches_autograd_path(kw):
    """Without autograd the mixers reuse their buffers and, under inference_mode, the blocks add
    into the residual stream in place: the same logits, and the caller's input is untouched."""
    m = small(**kw).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    before = x.clone()
    expected = m(x)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
    assert torch.equal(x, before)


def test_blocks_replay_under_a_reentrant_checkpoint():
    """A reentrant checkpoint runs a block first under no_grad, then again in backward on the
    same inputs: nothing a block does without autograd may change them."""
    m = small().train()
    x = torch.randn(2, 17, 32)

    def grads(call):
        m.zero_grad()
        tokens = x.clone().requires_grad_(True)
        hidden, residual = tokens, None
        for layer in m.layers:
            hidden, residual = call(layer, hidden, residual)
        (hidden + residual).square().sum().backward()
        return [tokens.grad] + [p.grad.clone() for p in m.parameters() if p.grad is not None]

    expected = grads(lambda layer, h, r: layer(h, r))
    got = grads(lambda layer, h, r: torch.utils.checkpoint.checkpoint(layer, h, r, use_reentrant=True))
    assert len(got) == len(expected) > 1
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_middle_cls_position_and_mean_pool():
    m = small(cls_position="middle")
    tokens = m.forward_features(torch.randn(1, 3, 4, 32, 32))
    assert tokens.shape[1] == 1 + 4 * 4 and m.cls_index(16) == 8
    torch.testing.assert_close(m.forward_head(tokens, pre_logits=True), tokens[:, 8])
    m = small(cls_position="none")
    tokens = m.forward_features(torch.randn(1, 3, 4, 32, 32))
    assert tokens.shape[1] == 16
    torch.testing.assert_close(m.forward_head(tokens, pre_logits=True), tokens.mean(1))


def test_other_frame_counts_and_resolutions():
    """Users asked for this: a model built for 4 frames at 32 px runs 8 frames at 48 px, and agrees
    with a model built for 8 frames at 48 px whose tables were resampled at load time."""
    for kw in ({}, dict(pos_embed="joint", tubelet_size=2)):
        m = small(**kw).eval()
        x = torch.randn(1, 3, 8, 48, 48)
        out = m(x)
        assert out.shape == (1, 5) and torch.isfinite(out).all()
        big = vm.create_model("videomamba_tiny", **{**SMALL, **kw, "num_frames": 8, "img_size": 48})
        vm.load_checkpoint(big, m.state_dict(), source=m.cfg)
        torch.testing.assert_close(big.eval()(x), out, atol=1e-5, rtol=1e-5)


def test_grad_checkpointing_matches():
    m = small(drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 4, 32, 32)
    ref = m(x)
    ref.sum().backward()
    g_ref = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing(True)
    out = m(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g_ref[n], msg=n)


def test_drop_path_schedule():
    m = small(depth=4, drop_path_rate=0.3)
    rates = [blk.drop_path.p for blk in m.layers]
    assert rates == pytest.approx([0.0, 0.0, 0.1, 0.2])      # ([0] + linspace(0, r, depth))[i]
    assert m.drop_path_rate == 0.3


def test_api_weight_decay_and_layer_ids():
    m = small()
    nwd = m.no_weight_decay()
    for k in ["pos_embed", "cls_token", "temporal_pos_embedding", "layers.0.mixer.A_log",
              "layers.0.mixer.A_b_log", "layers.0.mixer.D", "layers.1.mixer.D_b", "layers.0.norm.weight",
              "norm_f.weight", "head.bias", "layers.0.mixer.dt_proj.bias", "patch_embed.proj.bias"]:
        assert k in nwd, k
    assert "layers.0.mixer.in_proj.weight" not in nwd and "head.weight" not in nwd
    assert m.layer_id("pos_embed") == 0 and m.layer_id("layers.1.mixer.D") == 2
    assert m.layer_id("head.weight") == 3 == m.num_layers - 1
    m.reset_classifier(7)
    assert m(torch.randn(1, 3, 4, 32, 32)).shape == (1, 7)
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 4, 32, 32)).shape == (1, 32)


def test_record_deltas_matches_manual_computation():
    m = small().eval()
    x = torch.randn(1, 3, 4, 32, 32)
    logits, deltas = m.forward_deltas(x)
    torch.testing.assert_close(logits, m(x))
    assert len(deltas) == 2 and deltas[0][0].shape == (1, 64, 17)
    # layer 0 forward direction, by hand: embeddings -> norm -> in_proj -> conv -> x_proj -> dt
    with torch.no_grad():
        tok = m.patch_embed(x).flatten(2).transpose(1, 2)                       # (1, 16, D)
        tok = tok + m.pos_embed[:, 1:].repeat(1, 4, 1) + m.temporal_pos_embedding.repeat_interleave(4, 1)
        tok = torch.cat([m.cls_token + m.pos_embed[:, :1], tok], 1)
        mix = m.layers[0].mixer
        h = m.layers[0].norm(tok)
        xx = (h @ mix.in_proj.weight.t())[..., :64].transpose(1, 2)
        u = torch.nn.functional.silu(mix.conv1d(xx)[..., :17])
        dr = (u.transpose(1, 2) @ mix.x_proj.weight.t())[..., :mix.dt_rank]
        delta = torch.nn.functional.softplus(dr @ mix.dt_proj.weight.t() + mix.dt_proj.bias).transpose(1, 2)
    torch.testing.assert_close(deltas[0][0], delta, atol=1e-5, rtol=1e-4)
    assert (deltas[1][1] > 0).all()


def test_masked_forward_keeps_visible_tokens_only():
    m = small().eval()
    x = torch.randn(2, 3, 4, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :8] = True
    mask[1, 8:] = True
    out, hidden = m.forward_features(x, mask=mask, return_hidden=True)
    assert out.shape == (2, 9, 32) and hidden.shape == (2, 9, 32)
    bad = mask.clone()
    bad[1, 0] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        m.forward_features(x, mask=bad)


@pytest.mark.parametrize("name,kw", [
    ("videomamba_tiny", {}),
    ("videomamba_tiny", dict(scan_order="spatiotemporal_v2", backward_order="temporal_reversal",
                             cls_position="middle")),
    ("videomamba_kaist_tiny", {}),
], ids=["release", "v2-temporal-middle", "kaist"])
def test_bf16_autocast_matches_fp32(name, kw):
    """bf16 autocast against fp32 on the same weights and input: logits and every parameter's
    gradient (through a fixed random cotangent).

    Tolerance: bf16 rounds each matmul's inputs to 8 significant bits (2^-8 = 0.4 %); two blocks
    of them gave 0.3-0.6 % norm-wise error on the logits and the whole gradient, at most ~1 % on
    any single parameter's gradient. Bounds: logits and the whole gradient within 2^-5 (3.1 %)
    norm-wise, each parameter's gradient within 2^-4 (6.3 %) of its norm (plus 1e-3 of the whole
    gradient's, for gradients near zero). A path that drops a direction, runs one in the wrong
    order or loses the fp32 residual stream is off by tens of percent. ``init="fan_in"``: with the
    release's 0.02 init a width-32 model's mixers barely move the residual stream, and a bf16-only
    fault in a scan (e.g. a backward branch run forwards) changed the logits by under 1 %."""
    m = small(name, init="fan_in", pos_init_std=0.3, **kw)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    cot = torch.randn(2, 5, generator=torch.Generator().manual_seed(2))

    def run(low: bool):
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = m(x)
        assert out.dtype == (torch.bfloat16 if low else torch.float32)
        (out.float() * cot).sum().backward()
        return out.detach().float(), {n: p.grad.clone() for n, p in m.named_parameters()}

    out16, g16 = run(True)
    out32, g32 = run(False)

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    assert rel(out16, out32) <= 2 ** -5, rel(out16, out32)
    flat16, flat32 = (torch.cat([g[n].flatten() for n in sorted(g32)]) for g in (g16, g32))
    assert rel(flat16, flat32) <= 2 ** -5, rel(flat16, flat32)
    floor = 1e-3 * flat32.norm()
    for n in g32:
        err = ((g16[n] - g32[n]).norm() / (g32[n].norm() + floor)).item()
        assert err <= 2 ** -4, f"{n}: bf16 gradient off by {err:.3g} of its norm"


@pytest.mark.parametrize("mode", ["always", "never"])
def test_mixer_recompute_gives_identical_gradients(mode):
    """The memory-light backward recomputes the mixer; results must not change."""
    x = torch.randn(2, 3, 4, 32, 32)
    grads = {}
    for m_ in ("never", mode):
        m = small(mixer_recompute=m_).train()
        m(x).square().sum().backward()
        grads[m_] = {n: p.grad for n, p in m.named_parameters()}
    for n, g in grads["never"].items():
        torch.testing.assert_close(grads[mode][n], g, msg=n)


def test_init_switches():
    """Default init is the release's (trunc_normal 0.02, zero temporal table); "fan_in" gives std 1/sqrt(fan_in) to the mixer's
    input projections and the head; pos_init_std sets the tables' and cls token's std."""
    D = 256  # enough weights for tight std estimates
    rel = vm.create_model("videomamba_tiny", embed_dim=D, depth=1, num_classes=64, num_frames=4, img_size=64)
    fan = vm.create_model("videomamba_tiny", embed_dim=D, depth=1, num_classes=64, num_frames=4, img_size=64,
                          init="fan_in", pos_init_std=0.3)
    E = 2 * D
    for model, std_in, std_x, std_head, std_pos in [(rel, 0.02, 0.02, 0.02, None),
                                                   (fan, D ** -0.5, E ** -0.5, D ** -0.5, 0.3)]:
        mixer = model.layers[0].mixer
        assert mixer.in_proj.weight.std().item() == pytest.approx(std_in, rel=0.05)
        assert mixer.x_proj.weight.std().item() == pytest.approx(std_x, rel=0.05)
        assert mixer.x_proj_b.weight.std().item() == pytest.approx(std_x, rel=0.05)
        assert model.head.weight.std().item() == pytest.approx(std_head, rel=0.05)
        if std_pos is None:  # the release's: 0.02 for the spatial table, zeros for the temporal one
            assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.1)
            assert not model.temporal_pos_embedding.any()
        else:
            assert model.pos_embed.std().item() == pytest.approx(std_pos, rel=0.1)
            assert model.temporal_pos_embedding.std().item() == pytest.approx(std_pos, rel=0.1)
    with pytest.raises(ValueError, match="init='xavier' is not valid"):
        vm.create_model("videomamba_tiny", **SMALL, init="xavier")
    with pytest.raises(ValueError, match="pos_init_std"):
        vm.create_model("videomamba_tiny", **SMALL, pos_init_std=-1.0)
