"""The convolutional stem (``VideoMambaConfig.conv_stem``) against a frame-by-frame computation written
out with functional ops, its counts against the module, and its errors.

The stem is not part of the release: with ``conv_stem=()`` (the default) the patch embedding is the
release's linear kernel, which the conformance tests cover.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import videomamba as vm
from videomamba.checkpoint.io import CheckpointError
from videomamba.checkpoint.infer import backbone_kwargs
from videomamba.layers.embed import PatchEmbed
from videomamba.models.flops import count_flops


def reference(pe: PatchEmbed, x: torch.Tensor, widths: tuple[int, ...], pool: int) -> torch.Tensor:
    """One frame at a time: conv 3x3 / 2 -> GroupNorm -> ReLU per width; each cell's maximum and the
    frame's maximum; then the tubelet projection as a sum over the tubelet's frames of 1x1 projections."""
    body = list(pe.stem.body)
    B, C, T, H, W = x.shape
    k = pe.tubelet_size
    w, b = pe.proj.weight, pe.proj.bias                        # (D, c, k, 1, 1)
    feats = []
    for t in range(T):
        y = x[:, :, t]
        for i, c in enumerate(widths):
            conv, norm = body[3 * i], body[3 * i + 1]
            y = F.conv2d(y, conv.weight, conv.bias, stride=2, padding=1)
            y = F.relu(F.group_norm(y, norm.num_groups, norm.weight, norm.bias, norm.eps))
        cell = F.max_pool2d(y, pool)                            # (B, c, h, w)
        whole = y.flatten(2).max(-1).values[:, :, None, None].expand_as(cell)
        feats.append(torch.cat([cell, whole], 1))
    out = []
    for s in range(T // k):
        acc = b.view(1, -1, 1, 1)
        for j in range(k):
            acc = acc + torch.einsum("bchw,dc->bdhw", feats[s * k + j], w[:, :, j, 0, 0])
        out.append(acc)
    return torch.stack(out, 2)                                  # (B, D, t, h, w)


@pytest.mark.parametrize("widths,patch,tub,size", [((16, 32, 64), 32, 2, 64), ((8, 16), 16, 1, 48),
                                                   ((12,), 8, 4, 40)])
def test_stem_matches_frame_by_frame_reference(widths, patch, tub, size):
    torch.manual_seed(0)
    pe = PatchEmbed(patch, tub, 3, 24, stem=widths)
    for p in pe.parameters():                                   # non-trivial norms and biases
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 3, 2 * tub, size, size)
    got = pe(x)
    g = size // patch
    assert got.shape == (2, 24, 2, g, g)
    torch.testing.assert_close(got, reference(pe, x, widths, patch // 2 ** len(widths)), rtol=1e-5, atol=1e-5)


def test_stem_feature_ignores_where_an_object_sits_in_its_patch():
    """The point of the stem: with the max pool, a pattern moved inside its patch (stride-multiple
    shifts that keep it inside) gives the same patch feature; the linear kernel's changes."""
    torch.manual_seed(0)
    stem = PatchEmbed(16, 1, 3, 8, stem=(8, 8)).eval()
    plain = PatchEmbed(16, 1, 3, 8).eval()
    blob = torch.randn(3, 4, 4)

    def frame(y, x):
        v = torch.zeros(1, 3, 1, 32, 32)
        v[0, :, 0, y:y + 4, x:x + 4] = blob
        return v

    a, b = frame(4, 4), frame(8, 8)                             # both inside patch (0, 0); shift = 4 px
    with torch.no_grad():
        # GroupNorm sees the whole frame, so the shift changes nothing but where the maximum is
        torch.testing.assert_close(stem(a)[..., 0, 0], stem(b)[..., 0, 0], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(plain(a)[..., 0, 0], plain(b)[..., 0, 0], atol=1e-3)


def test_counts_match_the_module():
    cfg = vm.get_config("videomamba_tiny", embed_dim=64, depth=2, patch_size=32, tubelet_size=2, num_frames=8,
                        img_size=64, conv_stem=(16, 32, 64), num_classes=5)
    model = vm.VideoMamba(cfg)
    c = count_flops(cfg)
    assert c.params == sum(p.numel() for p in model.parameters())
    # by hand: per frame 32x32x3x16x9 + 16x16x16x32x9 + 8x8x32x64x9; 8 frames; then 4 x 4 tokens, each
    # from 2 frames x (64 cell + 64 frame maxima) to 64
    per_frame = 32 * 32 * 3 * 16 * 9 + 16 * 16 * 16 * 32 * 9 + 8 * 8 * 32 * 64 * 9
    assert c.breakdown["patch_embed"] == 8 * per_frame + 4 * 4 * 2 * 128 * 64
    assert model(torch.randn(1, 3, 8, 64, 64)).shape == (1, 5)


@pytest.mark.parametrize("kw,match", [
    (dict(conv_stem=(8, 8, 8, 8, 8), patch_size=16, img_size=64), "multiple of 32"),
    (dict(conv_stem=(16,), patch_size=16, patch_stride=8, img_size=64), "no patch_stride"),
    (dict(conv_stem="16,32"), "list of positive"),
    (dict(conv_stem=(16, 0)), "list of positive"),
])
def test_bad_stems_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        vm.get_config("videomamba_tiny", **kw)


def test_a_stem_state_dict_without_config_is_a_named_error():
    cfg = vm.get_config("videomamba_tiny", embed_dim=32, depth=1, patch_size=16, img_size=32, num_frames=2,
                        conv_stem=(8,), num_classes=0)
    sd = vm.VideoMamba(cfg).state_dict()
    with pytest.raises(CheckpointError, match="conv-stem"):
        backbone_kwargs(sd)
