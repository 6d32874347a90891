"""Every model switch against an independent expectation, value by value.

The expectations: ``reference.py`` (a plain forward written from the papers: hand-folded patches,
positions looked up per token, hand-inserted cls token, scan orders spelled out with loops and
run through the sequential oracle), hand-computed sinusoids, and identities between switches
built from the same weights (``merge="mean"`` is half the sum; ``spatiotemporal_v2`` is the mean
of the two single-order mixers).

Tolerance for model vs reference (fp32 on both sides, the model through the compiled or pure-torch
kernels, the reference through the oracle): 1e-4 of the tensor's scale plus 1e-4 relative. The
differences are summation order only (~1e-6 observed); every test also checks that a wrong
switch (another scan order, swapped directions) moves the output by far more than the tolerance.
The models use ``init="fan_in"``: with the release's 0.02 init a tiny model's mixers barely move
the residual stream, and a wrong order would hide under the tolerance.
"""
from __future__ import annotations

import pytest
import torch

import videomamba as vm
from videomamba.layers import BiMambaMixer, ScanOrder, sincos_table

from ops.helpers import assert_close_scaled
from . import reference as ref

TINY = dict(embed_dim=16, depth=2, num_classes=5, num_frames=4, img_size=32, init="fan_in", pos_init_std=0.5)
RTOL = ATOL = 1e-4


def build(name="videomamba_tiny", seed=0, **kw):
    torch.manual_seed(seed)
    model = vm.create_model(name, **{**TINY, **kw}).eval()
    with torch.no_grad():  # non-zero temporal table (the release's init is zeros)
        if model.temporal_pos_embedding is not None:
            model.temporal_pos_embedding.normal_(std=0.5)
    return model


def video(T=4, size=32, seed=1, B=2):
    return torch.randn(B, 3, T, size, size, generator=torch.Generator().manual_seed(seed))


def capture_inputs(module):
    """Records the first positional input of every call of ``module``."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen, handle


def scale_gap(a, b):
    """max |a - b| relative to b's scale."""
    return ((a - b).abs().max() / b.abs().max()).item()


# ----------------------------------------------------------------------------- the whole model
SCANS = ["spatial_first", "temporal_first", "spatiotemporal_v1", "spatiotemporal_v2"]
BACKWARDS = ["full_flip", "spatial_reversal", "temporal_reversal"]
CASES = [dict(scan_order=s, backward_order=b) for s in SCANS for b in BACKWARDS] + [
    dict(cls_position="middle"),
    dict(cls_position="middle", scan_order="temporal_first", backward_order="spatial_reversal"),
    dict(cls_position="middle", scan_order="spatiotemporal_v2", backward_order="temporal_reversal"),
    dict(cls_position="none", scan_order="temporal_first", backward_order="temporal_reversal"),
    dict(merge="mean"),
    dict(merge="mean", scan_order="spatiotemporal_v2", backward_order="spatial_reversal"),
    dict(pos_embed="sinusoidal"),
    dict(pos_embed="sinusoidal", cls_position="none"),
    dict(pos_embed="joint"),
    dict(pos_embed="none", cls_position="middle"),
    dict(tubelet_size=2),
    dict(tubelet_size=2, pos_embed="joint", scan_order="temporal_first", cls_position="none"),
]


def case_id(kw):
    return "-".join(f"{v}" for v in kw.values())


@pytest.mark.parametrize("kw", CASES, ids=case_id)
def test_model_matches_reference(kw):
    model = build(**kw)
    x = video()
    with torch.no_grad():
        tokens = model.forward_features(x)
        logits = model.forward_head(tokens)
        exp_tokens, exp_logits = ref.forward(model, x)
    assert_close_scaled(tokens, exp_tokens, RTOL, ATOL, "tokens")
    assert_close_scaled(logits, exp_logits, RTOL, ATOL, "logits")


@pytest.mark.parametrize("kw", [dict(scan_order="temporal_first", backward_order="spatial_reversal"),
                                dict(scan_order="spatiotemporal_v1"),
                                dict(cls_position="middle")], ids=case_id)
def test_reference_tells_switches_apart(kw):
    """The comparison above can fail: the reference built with another order, or with the two
    directions swapped, is far (> 100x the tolerance) from the model."""
    model = build(**kw)
    x = video()
    with torch.no_grad():
        tokens = model.forward_features(x)
        cfg = model.cfg
        for other in [dict(scan_order="spatial_first" if cfg.scan_order != "spatial_first" else "temporal_first"),
                      dict(backward_order="temporal_reversal" if cfg.backward_order != "temporal_reversal"
                           else "full_flip"),
                      dict(cls_position="head" if cfg.cls_position != "head" else "middle")]:
            model.cfg = cfg.replace(**other)
            try:
                wrong, _ = ref.forward(model, x)
            finally:
                model.cfg = cfg
            if wrong.shape == tokens.shape:
                assert scale_gap(tokens, wrong) > 100 * ATOL, other
        # both directions swapped: each branch's parameters run the other's order
        swapped = _swap_directions(model)
        wrong, _ = ref.forward(swapped, x)
        assert scale_gap(tokens, wrong) > 100 * ATOL


def _swap_directions(model):
    """A copy whose forward and backward parameters are exchanged."""
    import copy
    m = copy.deepcopy(model)
    for blk in m.layers:
        mx = blk.mixer
        for a, b in [("conv1d", "conv1d_b"), ("x_proj", "x_proj_b"), ("dt_proj", "dt_proj_b")]:
            ma, mb = getattr(mx, a), getattr(mx, b)
            setattr(mx, a, mb)
            setattr(mx, b, ma)
        mx.A_log, mx.A_b_log = mx.A_b_log, mx.A_log
        mx.D, mx.D_b = mx.D_b, mx.D
    return m


def test_kaist_preset_matches_reference():
    """KAIST preset: tubelet 2, joint positions over t*S, full flip."""
    model = build("videomamba_kaist_tiny")
    assert (model.cfg.tubelet_size, model.cfg.pos_embed) == (2, "joint")
    x = video()
    with torch.no_grad():
        tokens = model.forward_features(x)
        exp_tokens, _ = ref.forward(model, x)
    assert_close_scaled(tokens, exp_tokens, RTOL, ATOL, "tokens")


# ----------------------------------------------------------------------------- merge = mean
@pytest.mark.parametrize("order", [None, "perm"])
def test_mixer_mean_is_half_the_sum(order):
    torch.manual_seed(0)
    summed = BiMambaMixer(16, merge="sum", init="fan_in").eval()
    mean = BiMambaMixer(16, merge="mean", init="fan_in").eval()
    mean.load_state_dict(summed.state_dict())
    x = torch.randn(2, 9, 16)
    perm = torch.tensor([0, 1, 4, 2, 5, 3, 6, 8, 7])
    o = ScanOrder(perm, perm.flip(0)[torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 8])], False) if order else None
    args = (x,) if o is None else (x, o)
    with torch.no_grad():
        a, b = mean(*args), summed(*args)
    assert scale_gap(a, b) > 0.3  # not the same function
    assert_close_scaled(a, 0.5 * b, 1e-6, 1e-6, "mean vs sum / 2")


def test_model_mean_merge_is_half_the_summed_mixer_output():
    """Depth 1: the block's mixer output is what norm_f's input adds to the embeddings; with
    merge="mean" it is half that of merge="sum" on the same weights."""
    out = {}
    for merge in ("sum", "mean"):
        m = build(depth=1, merge=merge)
        emb, h1 = capture_inputs(m.layers[0].norm)
        fin, h2 = capture_inputs(m.norm_f)
        with torch.no_grad():
            m(video())
        h1.remove(), h2.remove()
        out[merge] = (emb[0], fin[0] - emb[0])
    torch.testing.assert_close(out["mean"][0], out["sum"][0], rtol=0, atol=0)
    assert out["sum"][1].abs().max() > 0.1
    assert_close_scaled(out["mean"][1], 0.5 * out["sum"][1], 1e-5, 1e-5, "mixer output")


# ----------------------------------------------------------------------------- spatiotemporal v2
@pytest.mark.parametrize("backward", BACKWARDS)
def test_spatiotemporal_v2_is_the_mean_of_the_two_orders(backward):
    """Depth 1, same weights: v2's mixer output (norm_f input - embeddings) is the mean of the
    spatial-first and the temporal-first models' outputs."""
    hidden = {}
    for scan in ("spatiotemporal_v2", "spatial_first", "temporal_first"):
        m = build(depth=1, scan_order=scan, backward_order=backward)
        emb, h1 = capture_inputs(m.layers[0].norm)
        fin, h2 = capture_inputs(m.norm_f)
        with torch.no_grad():
            m(video())
        h1.remove(), h2.remove()
        hidden[scan] = fin[0] - emb[0]
    sf, tf = hidden["spatial_first"], hidden["temporal_first"]
    assert scale_gap(sf, tf) > 0.05  # the two orders differ
    assert_close_scaled(hidden["spatiotemporal_v2"], (sf + tf) / 2, 1e-5, 1e-5, "v2")


def test_spatiotemporal_v1_alternates_by_layer():
    """Depth 2, same weights: v1's first layer is the spatial-first model's, its second the
    temporal-first model's (checked on the stream entering norm_f via the reference above; here
    on the first block's output directly)."""
    out = {}
    for scan in ("spatiotemporal_v1", "spatial_first", "temporal_first"):
        m = build(scan_order=scan)
        seen, h = capture_inputs(m.layers[1].norm)      # stream after block 0
        with torch.no_grad():
            m(video())
        h.remove()
        out[scan] = seen[0]
    torch.testing.assert_close(out["spatiotemporal_v1"], out["spatial_first"], rtol=0, atol=1e-6)
    assert scale_gap(out["spatial_first"], out["temporal_first"]) > 0.01


# ----------------------------------------------------------------------------- sinusoidal positions
def test_sincos_table_formula_at_chosen_indices():
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)); values worked out by hand."""
    tab = sincos_table(50, 16)[0].double()
    assert tab.shape == (50, 16)
    hand = {(0, 0): 0.0, (0, 1): 1.0, (0, 15): 1.0,
            (1, 0): 0.8414709848078965,    # sin(1)
            (1, 1): 0.5403023058681398,    # cos(1)
            (7, 4): 0.644217687237691,     # sin(7 / 10000^(4/16)) = sin(0.7)
            (7, 5): 0.7648421872844885,    # cos(0.7)
            (49, 14): 0.015494540477594824,  # sin(49 / 10000^(14/16)) = sin(0.0154952)
            (49, 15): 0.9998799524019812}
    for (p, c), v in hand.items():
        assert tab[p, c].item() == pytest.approx(v, abs=2e-6), (p, c)
    torch.testing.assert_close(tab, ref.sinusoid_table(50, 16), rtol=0, atol=2e-5)
    assert sincos_table(4, 32)[0, 3, 10].item() == pytest.approx(0.16790330979242943, abs=1e-6)


@pytest.mark.parametrize("cls_position", ["head", "none"])
def test_sinusoidal_positions_enter_the_model_by_token_index(cls_position):
    """Token j of the sequence entering block 0 is its patch embedding plus PE(j) (cls: PE(0))."""
    m = build(pos_embed="sinusoidal", cls_position=cls_position)
    x = video()
    seen, h = capture_inputs(m.layers[0].norm)
    with torch.no_grad():
        m(x)
    h.remove()
    patches = ref.fold_patches(x, m.patch_embed.proj.weight, m.patch_embed.proj.bias, 1, 16).flatten(1, 3)
    c = m.cfg.num_cls
    table = ref.sinusoid_table(c + patches.shape[1], 16).float()
    expected = patches.detach() + table[c:]
    if c:
        expected = torch.cat([(m.cls_token[0] + table[:1]).detach().expand(2, 1, 16), expected], 1)
    assert_close_scaled(seen[0], expected, 1e-5, 1e-5, "embeddings")


# ----------------------------------------------------------------------------- positions, cls, tubelet
@pytest.mark.parametrize("kw", [dict(), dict(pos_embed="joint"), dict(pos_embed="joint", tubelet_size=2),
                                dict(cls_position="middle"), dict(tubelet_size=2)], ids=case_id)
def test_embeddings_entering_the_first_block(kw):
    m = build(**kw)
    x = video()
    seen, h = capture_inputs(m.layers[0].norm)
    with torch.no_grad():
        m(x)
        expected = ref.embeddings(m, x)
    h.remove()
    assert_close_scaled(seen[0], expected, 1e-5, 1e-5, "embeddings")


def test_middle_cls_is_a_hand_inserted_token():
    """cls_position="middle": the sequence is the head model's patch tokens with the cls token
    (cls_token + pos_embed row 0) inserted at P // 2, and the head reads that slot."""
    head = build()
    mid = build(cls_position="middle")
    mid.load_state_dict(head.state_dict())
    x = video()
    seen_h, h1 = capture_inputs(head.layers[0].norm)
    seen_m, h2 = capture_inputs(mid.layers[0].norm)
    with torch.no_grad():
        head(x)
        tokens = mid.forward_features(x)
    h1.remove(), h2.remove()
    P = 16
    cls, patches = seen_h[0][:, :1], seen_h[0][:, 1:]
    expected = torch.cat([patches[:, :P // 2], cls, patches[:, P // 2:]], 1)
    torch.testing.assert_close(seen_m[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(mid.forward_head(tokens, pre_logits=True), tokens[:, P // 2])


def test_tubelet_two_is_a_hand_folded_conv3d():
    """Tubelet 2: token (i, y, x) = W . video[:, :, 2i:2i+2, 16y:16y+16, 16x:16x+16] + b, with the
    frame pair in time order; the temporal table has T / 2 rows."""
    m = build(tubelet_size=2)
    x = video()
    with torch.no_grad():
        got = m.patch_embed(x).permute(0, 2, 3, 4, 1)                          # (B, t, h, w, D)
        W, b = m.patch_embed.proj.weight, m.patch_embed.proj.bias
        assert W.shape == (16, 3, 2, 16, 16)
        # one token by hand, straight from the definition
        i, yy, xx = 1, 0, 1
        cube = x[0, :, 2 * i:2 * i + 2, 16 * yy:16 * yy + 16, 16 * xx:16 * xx + 16]
        torch.testing.assert_close(got[0, i, yy, xx], (W * cube).sum((1, 2, 3, 4)) + b, rtol=1e-5, atol=1e-5)
        assert_close_scaled(got, ref.fold_patches(x, W, b, 2, 16), 1e-5, 1e-5, "tubelet tokens")
        # swapping the two frames of each tubelet changes the tokens: order within a tubelet matters
        swapped = x.reshape(2, 3, 2, 2, 32, 32).flip(3).reshape(2, 3, 4, 32, 32)
        assert scale_gap(m.patch_embed(swapped).permute(0, 2, 3, 4, 1), got) > 0.05
    assert m.temporal_pos_embedding.shape == (1, 2, 16)
