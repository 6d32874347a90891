"""Frame reorderings (KAIST Table 1) and Delta maps."""
import pytest
import torch

import videomamba as vm
from videomamba.analysis.delta import (compute_delta_maps, default_layers, delta_maps, normalise_per_layer,
                                       upsample_maps, visualise_clip)
from videomamba.analysis.reorder import (REORDERINGS, evaluate_reorderings, format_reorder_table, frame_order,
                                         reorder_frames)


# ------------------------------------------------------------------ reorderings
def test_eight_frames_reproduce_the_paper_exactly():
    one = {n: [i + 1 for i in frame_order(n, 8)] for n in REORDERINGS}
    assert one == {"original": [1, 2, 3, 4, 5, 6, 7, 8],
                   "block-wise": [5, 6, 7, 8, 1, 2, 3, 4],
                   "pairwise": [1, 2, 7, 8, 5, 6, 3, 4],
                   "interleaved": [1, 8, 2, 7, 3, 6, 4, 5]}


def test_other_frame_counts_follow_the_documented_rules():
    assert frame_order("block-wise", 5) == [2, 3, 4, 0, 1]
    assert frame_order("pairwise", 5) == [0, 1, 4, 2, 3]
    assert frame_order("interleaved", 5) == [0, 4, 1, 3, 2]
    assert frame_order("pairwise", 16) == [0, 1, 14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3]
    assert frame_order("block-wise", 1) == frame_order("interleaved", 1) == [0]


@pytest.mark.parametrize("T", range(1, 18))
def test_every_reordering_is_a_permutation(T):
    for n in REORDERINGS:
        assert sorted(frame_order(n, T)) == list(range(T))
    if T % 2 == 0:                      # pairwise keeps each tubelet of 2 whole
        o = frame_order("pairwise", T)
        assert all(o[i] % 2 == 0 and o[i + 1] == o[i] + 1 for i in range(0, T, 2))


def test_reorder_frames_on_tensors():
    v = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 2, 2)
    out = reorder_frames(v, "interleaved")
    assert out[0, 0, :, 0, 0].tolist() == [0, 7, 1, 6, 2, 5, 3, 4]
    views = torch.arange(8.0).view(1, 1, 1, 8, 1, 1).expand(2, 2, 3, 8, 2, 2)   # (B, V, C, T, H, W)
    assert reorder_frames(views, "block-wise")[1, 1, 2, :, 0, 0].tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="permutation of 8 frames"):
        reorder_frames(v, [0, 0, 1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="reordering 'shuffle' is not valid"):
        frame_order("shuffle", 8)


class FirstFrameIsZero(torch.nn.Module):
    """Predicts class 0 when the clip's first frame is frame 0 (frames carry their index)."""

    def forward(self, x):
        first = x[:, 0, 0, 0, 0]
        return torch.stack([(first == 0).float(), (first != 0).float()], -1) * 10


def test_evaluate_reorderings_hand_computed():
    video = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(3, 3, 8, 2, 2)
    batches = [{"video": video, "label": torch.zeros(3, dtype=torch.long)}] * 2
    res = evaluate_reorderings(FirstFrameIsZero(), batches)
    # only block-wise moves frame 1 away from the front
    assert {n: r["top1"] for n, r in res.items()} == {"original": 100.0, "block-wise": 0.0,
                                                      "pairwise": 100.0, "interleaved": 100.0}
    assert res["block-wise"]["count"] == 6 and res["block-wise"]["top5"] == 100.0
    table = format_reorder_table(res)
    assert "block-wise   5,6,7,8,1,2,3,4" in table


# ------------------------------------------------------------------ Delta maps
def test_delta_maps_shapes_and_cls_removal():
    L, E = 1 + 2 * 6, 4
    d_f = torch.arange(L).float().view(1, 1, L).expand(2, E, L)
    d_b = 3 * d_f
    maps = delta_maps([(d_f, d_b)] * 3, (2, 2, 3), cls_index=0)
    assert maps.shape == (3, 2, 2, 2, 3)
    # mean of directions = 2 * position; cls (position 0) dropped -> patch p has value 2 * (p + 1)
    assert maps[0, 0].flatten().tolist() == [2.0 * (p + 1) for p in range(12)]
    mid = delta_maps([(d_f, d_b)], (2, 2, 3), cls_index=6)
    assert mid[0, 0].flatten().tolist() == [2.0 * p for p in range(6)] + [2.0 * p for p in range(7, 13)]


def test_upsample_covers_each_tubelet_and_normalises_per_layer():
    maps = torch.arange(8.0).view(1, 2, 2, 2)                       # (layers, t, h, w)
    up = upsample_maps(maps, tubelet=2, size=(4, 4), mode="nearest")
    assert up.shape == (1, 4, 4, 4)
    assert torch.equal(up[0, 0], up[0, 1]) and torch.equal(up[0, 2], up[0, 3])
    assert up[0, 2, :2, :2].unique().tolist() == [4.0]
    n = normalise_per_layer(torch.stack([maps[0], 100 * maps[0]]))
    assert n.min() == 0 and n.max() == 1 and torch.allclose(n[0], n[1])
    # one extreme token: min..max squashes the rest, the percentile scale keeps them apart
    spiky = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1000.0]])
    assert normalise_per_layer(spiky)[0, :9].max().item() == pytest.approx(8 / 1000)
    # q = 0.1 over 10 values: quantiles at 0.9 and 107.2 (linear interpolation) -> 8 maps to 7.1/106.3
    robust = normalise_per_layer(spiky, q=0.1)[0]
    assert robust[0].item() == 0.0 and robust[9].item() == 1.0
    assert robust[8].item() == pytest.approx(7.1 / 106.3, rel=1e-5)


def _identity_conv_first_layer(model):
    """Make layer 0's causal convs pass each token through unchanged (tap on the current token):
    its delta then depends on that token alone, whatever order the scan visits tokens in."""
    m = model.layers[0].mixer
    with torch.no_grad():
        for conv in (m.conv1d, m.conv1d_b):
            conv.weight.zero_()
            conv.weight[:, 0, -1] = 1.0
            conv.bias.zero_()


@pytest.mark.parametrize("kw", [dict(scan_order="temporal_first"), dict(backward_order="spatial_reversal"),
                                dict(backward_order="temporal_reversal"), dict(cls_position="middle")])
def test_scan_order_models_give_maps_in_canonical_order(kw):
    torch.manual_seed(0)
    base = dict(embed_dim=16, depth=2, num_classes=3, num_frames=4, img_size=48, tubelet_size=2)
    ref = vm.create_model("videomamba_tiny", **base).eval()
    other = vm.create_model("videomamba_tiny", **{**base, **kw}).eval()
    other.load_state_dict(ref.state_dict())
    _identity_conv_first_layer(ref)
    _identity_conv_first_layer(other)
    x = torch.randn(2, 3, 4, 48, 48)
    # per direction, layer 0: same delta at the same canonical (patch) token in both models
    _, (d_ref, *_) = ref.forward_deltas(x)
    _, (d_oth, *_) = other.forward_deltas(x)
    ci = other.cls_index(18)
    for a, b in zip(d_ref, d_oth):
        b = torch.cat([b[..., :ci], b[..., ci + 1:]], -1) if ci else b[..., 1:]
        torch.testing.assert_close(b, a[..., 1:])
    # and the maps agree; the check has teeth: the scan's own order differs from the canonical one
    m_ref, _ = compute_delta_maps(ref, x)
    m_oth, _ = compute_delta_maps(other, x)
    assert m_ref.shape == m_oth.shape == (2, 2, 2, 3, 3)
    torch.testing.assert_close(m_oth[0], m_ref[0])
    o = other._scan_orders(2, 9, ci, x.device)[0][0]
    visit = o.fwd if o.fwd is not None else o.bwd
    if visit is not None:
        assert not torch.allclose(d_oth[0], d_oth[0][..., visit])


def test_default_layers():
    assert default_layers(4) == [0, 1, 2, 3]
    assert default_layers(24) == [0, 5, 9, 14, 18, 23]


def test_visualise_clip_writes_png_grid_and_gif(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = vm.create_model("videomamba_tiny", embed_dim=16, depth=3, num_classes=3, num_frames=4,
                            img_size=32, tubelet_size=2)
    res = visualise_clip(model, torch.randn(3, 4, 32, 32), tmp_path, layers=[0, 2], class_names=["a", "b", "c"])
    png, gif = Image.open(res["png"]), Image.open(res["animation"])
    assert png.format == "PNG" and png.size[0] > png.size[1] > 0
    assert gif.format == "GIF" and gif.n_frames == 4
    assert gif.size == (3 * 32, 32 + 12)                          # frame | layer 0 | layer 2, label row
    assert res["prediction"]["label"] in "abc" and res["layers"] == [0, 2]
    with pytest.raises(ValueError, match="out of range"):
        visualise_clip(model, torch.randn(3, 4, 32, 32), tmp_path, layers=[3])
