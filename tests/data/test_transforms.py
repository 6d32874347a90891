"""Clip transforms: one draw per clip, geometry, value ranges, normalisation constants, RandAugment, mixup."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videomamba.data import IMAGENET_MEAN, IMAGENET_STD, Mixup, RandAugment, smooth_one_hot
from videomamba.data import rand_augment as ra
from videomamba.data import transforms as T


def shifted_clip(t=6, h=40, w=56, seed=0):
    """Float clip whose frame k is frame 0 plus k: any shared geometric op keeps that offset."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h, w, generator=g) * 200
    return base + torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1)


def test_constants_are_imagenet():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_random_resized_crop_is_shared_by_all_frames():
    clip = shifted_clip()
    for seed in range(20):
        out = T.random_resized_crop(clip, 32, generator=torch.Generator().manual_seed(seed))
        assert out.shape == (6, 3, 32, 32)
        for k in range(6):   # bilinear weights sum to one, so the +k offset survives exactly
            torch.testing.assert_close(out[k] - out[0], torch.full_like(out[0], float(k)), atol=1e-3, rtol=0)


def test_random_resized_crop_params_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = T.random_resized_crop_params(200, 300, (0.08, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
        assert 0.08 * 0.9 <= h * w / 60000 <= 1.0
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # a range that can never fit falls back to a centred box of legal aspect
    assert T.random_resized_crop_params(10, 100, (1.0, 1.0), (1.0, 1.0), g) == (0, 45, 10, 10)
    with pytest.raises(ValueError, match="scale"):
        T.random_resized_crop_params(10, 10, (0.5, 0.2))


def test_short_side_resize_and_crops():
    assert T.short_side_size(272, 640, 224) == (224, 527)
    assert T.short_side_size(640, 272, 224) == (527, 224)
    clip = torch.arange(2 * 3 * 10 * 20, dtype=torch.float32).view(2, 3, 10, 20)
    crops = T.spatial_crops(clip, 10, 3)
    for c, left in zip(crops, (0, 5, 10)):
        assert torch.equal(c, clip[..., 0:10, left:left + 10])
    tall = clip.transpose(-1, -2)                            # 20 high, 10 wide
    crops = T.spatial_crops(tall, 10, 3)
    for c, top in zip(crops, (0, 5, 10)):
        assert torch.equal(c, tall[..., top:top + 10, 0:10])
    assert torch.equal(T.spatial_crops(clip, 8, 1)[0], clip[..., 1:9, 6:14])
    with pytest.raises(ValueError, match="does not fit"):
        T.spatial_crops(clip, 11, 3)


def test_resize_keeps_dtype_and_range():
    u8 = torch.randint(0, 256, (3, 3, 31, 47), dtype=torch.uint8)
    out = T.resize(u8, (16, 20))
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 16, 20)
    const = torch.full((2, 3, 30, 30), 77, dtype=torch.uint8)
    assert torch.equal(T.resize(const, (64, 50)), torch.full((2, 3, 64, 50), 77, dtype=torch.uint8))


def test_normalize_constants_and_layout():
    clip = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    clip[:, 0], clip[:, 1], clip[:, 2] = 0, 128, 255
    x = T.normalize(clip)
    assert x.shape == (3, 4, 2, 2) and x.dtype == torch.float32
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    for c in range(3):
        torch.testing.assert_close(x[c], torch.full((4, 2, 2), expected[c]), atol=1e-6, rtol=0)


def test_hflip_mirrors_every_frame():
    clip = torch.arange(2 * 3 * 2 * 3).view(2, 3, 2, 3)
    f = T.hflip(clip)
    assert torch.equal(f[..., 0], clip[..., 2]) and torch.equal(T.hflip(f), clip)


def test_random_erasing_is_one_box_on_every_frame():
    x = torch.zeros(3, 5, 32, 32)
    hits = 0
    for seed in range(40):
        out = T.random_erasing(x, prob=1.0, generator=torch.Generator().manual_seed(seed))
        changed = out != 0
        if not changed.any():
            continue
        hits += 1
        mask = changed.any(0)                     # (T, H, W)
        assert torch.equal(mask, mask[:1].expand_as(mask)), "box differs between frames"
        rows, cols = mask[0].any(1).nonzero(), mask[0].any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(mask[0].sum()) == int(box), "erased region is not one rectangle"
        assert 0.02 * 1024 * 0.8 <= int(box) <= 1024 / 3 * 1.2
    assert hits >= 35
    assert torch.equal(T.random_erasing(x, prob=0.0), x)


# -- RandAugment ----------------------------------------------------------------------------------
def test_rand_augment_parses_the_release_policy():
    r = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (r.num_ops, r.magnitude, r.magnitude_std, r.prob) == (4, 7.0, 0.5, 0.5)
    assert "PosterizeIncreasing" in r.ops and "Posterize" not in r.ops and len(r.ops) == 15
    r0 = RandAugment.from_string("rand-m9-n2-inc0")
    assert "Posterize" in r0.ops
    for bad in ("auto-m7", "rand-m7-x3", "rand-q"):
        with pytest.raises(ValueError, match="RandAugment policy"):
            RandAugment.from_string(bad)


def test_rand_augment_applies_the_same_ops_to_every_frame():
    frame = torch.randint(0, 256, (1, 3, 24, 32), dtype=torch.uint8)
    clip = frame.expand(8, 3, 24, 32).contiguous()
    r = RandAugment.from_string("rand-m9-n4-mstd0.5-inc1")
    changed = 0
    for seed in range(30):
        out = r(clip, generator=torch.Generator().manual_seed(seed))
        assert out.dtype == torch.uint8 and out.shape == clip.shape
        assert torch.equal(out, out[:1].expand_as(out)), "frames of one clip were augmented differently"
        changed += int(not torch.equal(out, clip))
    assert changed >= 20
    with pytest.raises(ValueError, match="uint8"):
        r(clip.float())


@pytest.mark.parametrize("op", sorted(ra._OPS))
def test_every_op_runs_with_identical_frames(op):
    fn, level = ra._OPS[op]
    frame = torch.randint(0, 256, (1, 3, 20, 22), dtype=torch.uint8)
    clip = frame.expand(3, 3, 20, 22).contiguous()
    out = fn(clip, level(10.0, torch.Generator().manual_seed(0)))
    assert out.dtype == torch.uint8 and out.shape == clip.shape
    assert torch.equal(out, out[:1].expand_as(out))


def test_ops_match_pil():
    Image = pytest.importorskip("PIL.Image", reason="Pillow is the reference for the ops")
    from PIL import ImageEnhance, ImageOps

    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    pil = Image.fromarray(img)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]

    def diff(ours, ref, inside=None):
        d = np.abs(ours[0].permute(1, 2, 0).numpy().astype(int) - np.asarray(ref).astype(int)).max(-1)
        return d[inside].max() if inside is not None else d.max()

    def fully_inside(warp):
        """Pixels whose whole bilinear footprint lies inside the source: edges blend the fill differently
        (PIL fills a pixel whose centre maps outside; we blend by coverage)."""
        white = warp(torch.full_like(t, 255), fill=(0, 0, 0))[0, 0].float()
        return (-torch.nn.functional.max_pool2d(-white[None, None], 3, 1, 1))[0, 0].numpy() == 255

    assert diff(ra.equalize(t), ImageOps.equalize(pil)) == 0
    assert diff(ra.auto_contrast(t), ImageOps.autocontrast(pil)) == 0
    assert diff(ra.posterize(t, 3), ImageOps.posterize(pil, 3)) == 0
    assert diff(ra.solarize(t, 100), ImageOps.solarize(pil, 100)) == 0
    assert diff(ra.invert(t), ImageOps.invert(pil)) == 0
    for fn, enh in ((ra.color, ImageEnhance.Color), (ra.contrast, ImageEnhance.Contrast),
                    (ra.brightness, ImageEnhance.Brightness), (ra.sharpness, ImageEnhance.Sharpness)):
        assert diff(fn(t, 0.3), enh(pil).enhance(0.3)) <= 1
        assert diff(fn(t, 1.7), enh(pil).enhance(1.7)) <= 1
    fill = ra._FILL
    # geometry follows PIL's conventions: positive angle = counter-clockwise, output -> input matrices
    for matrix, ref in (
            (ra.rotate_matrix(17, 30, 40), pil.rotate(17, resample=Image.BILINEAR, fillcolor=fill)),
            ((1, 0.2, 0, 0, 1, 0), pil.transform(pil.size, Image.AFFINE, (1, 0.2, 0, 0, 1, 0),
                                                 resample=Image.BILINEAR, fillcolor=fill)),
            ((1, 0, 0, 0, 1, 6), pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0, 1, 6),
                                               resample=Image.BILINEAR, fillcolor=fill))):
        inside = fully_inside(lambda c, fill: ra.affine(c, matrix, fill))
        assert inside.mean() > 0.5
        assert diff(ra.affine(t, matrix), ref, inside) <= 1
    assert torch.equal(ra.rotate(t, 17), ra.affine(t, ra.rotate_matrix(17, 30, 40)))
    assert torch.equal(ra.translate_y_rel(t, 0.2), ra.affine(t, (1, 0, 0, 0, 1, 6)))


def test_rotate_direction_without_pil():
    x = torch.zeros(1, 3, 21, 21, dtype=torch.uint8)
    x[:, :, 10, 17] = 255                     # right of centre
    y = ra.rotate(x, 90.0)                    # counter-clockwise on screen: moves to the top
    assert (y[0, 0] > 128).nonzero().tolist() == [[3, 10]]


# -- mixup / cutmix -------------------------------------------------------------------------------
def test_smooth_one_hot():
    t = smooth_one_hot(torch.tensor([0, 2]), 4, 0.1)
    torch.testing.assert_close(t, torch.tensor([[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025]]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        smooth_one_hot(torch.tensor([4]), 4)
    with pytest.raises(ValueError, match="integer"):
        smooth_one_hot(torch.tensor([0.5]), 4)


def test_mixup_blends_inputs_and_targets_with_one_lambda():
    x = torch.randn(4, 3, 2, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    m = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=4,
              generator=torch.Generator().manual_seed(0))
    xm, t = m(x, y)
    lam = float(t[0, 0])
    assert 0 < lam < 1
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(t, lam * torch.eye(4) + (1 - lam) * torch.eye(4).flip(0))


def test_cutmix_box_is_shared_by_frames_and_lambda_matches_area():
    x = torch.zeros(2, 3, 4, 32, 32)
    x[1] = 1.0
    y = torch.tensor([0, 1])
    for seed in range(10):
        m = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2,
                  generator=torch.Generator().manual_seed(seed))
        xm, t = m(x, y)
        pasted = xm[0] == 1.0                               # (3, T, H, W)
        assert torch.equal(pasted, pasted[:, :1].expand_as(pasted))
        frac = pasted[0, 0].float().mean().item()
        assert m.last_lam == pytest.approx(1 - frac)
        on = smooth_one_hot(y, 2, 0.1)
        torch.testing.assert_close(t, on * m.last_lam + on.flip(0) * (1 - m.last_lam))
        torch.testing.assert_close(t.sum(1), torch.ones(2))


def test_mixup_off_leaves_inputs_and_smooths_labels():
    x = torch.randn(3, 3, 2, 4, 4)
    xm, t = Mixup(prob=0.0, label_smoothing=0.1, num_classes=5)(x, torch.tensor([1, 0, 4]))
    assert torch.equal(xm, x)
    torch.testing.assert_close(t, smooth_one_hot(torch.tensor([1, 0, 4]), 5, 0.1))


def test_mixup_is_reproducible_and_checks_inputs():
    x = torch.randn(4, 3, 2, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    a = Mixup(num_classes=4, generator=torch.Generator().manual_seed(5))(x, y)
    b = Mixup(num_classes=4, generator=torch.Generator().manual_seed(5))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        Mixup(num_classes=4)(x[0], y)
    with pytest.raises(ValueError, match="batch sizes differ"):
        Mixup(num_classes=4)(x, y[:3])


def test_beta_sampler_mean():
    m = Mixup(mixup_alpha=0.8, num_classes=2, generator=torch.Generator().manual_seed(0))
    draws = [m._beta(0.8) for _ in range(3000)]
    assert np.mean(draws) == pytest.approx(0.5, abs=0.02)
    # Beta(a, a) variance is 1 / (4 (2a + 1))
    assert np.var(draws) == pytest.approx(1 / (4 * (2 * 0.8 + 1)), rel=0.1)
    assert math.isfinite(m._beta(0.1))
