"""Masks for masked pretraining: exact counts, row/tube structure, attention-guided sampling."""
import pytest
import torch

from videomamba.models.masking import MASK_TYPES, make_mask, num_masked, visible_positions

GRID = (3, 4, 5)          # t, h, w -> S = 20, N = 60
RATIO = 0.7
# hand-computed with the release's int() truncation:
#   random: int(0.7 * 60) = 42; tube / attention: 3 * int(0.7 * 20) = 3 * 14 = 42;
#   rows: int(0.7 * 4) = 2 rows of 5 per frame -> 3 * 2 * 5 = 30; random_row: 3 * 2 = 6 of the 12 rows
EXPECTED = {"random": 42, "tube": 42, "frame_row": 30, "clip_row": 30, "random_row": 30, "attention": 42}


def _mask(kind, B=6, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    if kind == "attention" and "attention" not in kw:
        kw["attention"] = torch.rand(B, 60, generator=torch.Generator().manual_seed(seed + 1))
    return make_mask(kind, B, GRID, RATIO, generator=g, **kw)


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_exact_equal_counts(kind):
    m = _mask(kind)
    assert m.dtype == torch.bool and m.shape == (6, 60)
    assert m.sum(1).tolist() == [EXPECTED[kind]] * 6
    assert num_masked(kind, GRID, RATIO) == EXPECTED[kind]
    assert visible_positions(m).shape == (6, 60 - EXPECTED[kind])


def test_default_ratio_is_point_eight():
    m = make_mask("random", 2, (8, 14, 14))
    assert m.sum(1).tolist() == [int(0.8 * 8 * 196)] * 2 == [1254, 1254]


def test_tube_is_the_same_in_every_frame():
    m = _mask("tube").view(6, 3, 20)
    assert torch.equal(m, m[:, :1].expand_as(m))
    assert m[:, 0].sum(1).tolist() == [14] * 6
    assert not torch.equal(m[0, 0], m[1, 0])      # samples differ (seeded, checked once)


def test_frame_row_masks_whole_rows_independently_per_frame():
    m = _mask("frame_row").view(6, 3, 4, 5)       # (B, t, h, w)
    rows = m[..., 0]
    assert torch.equal(m, rows[..., None].expand_as(m))     # whole rows only
    assert rows.sum(-1).eq(2).all()                          # 2 of 4 rows in every frame
    differs = any(not torch.equal(rows[b, 0], rows[b, i]) for b in range(6) for i in range(1, 3))
    assert differs                                           # rows are drawn per frame


def test_random_row_draws_rows_over_the_whole_clip():
    # the release's RandomRowMaskingGenerator: t * int(ratio * h) rows out of all t * h, so the
    # per-frame count varies (over 200 samples a frame with other than 2 masked rows must appear)
    m = make_mask("random_row", 200, GRID, RATIO, generator=torch.Generator().manual_seed(0)).view(200, 3, 4, 5)
    rows = m[..., 0]
    assert torch.equal(m, rows[..., None].expand_as(m))     # whole rows only
    assert rows.sum((1, 2)).eq(6).all()                      # 6 of the clip's 12 rows
    per_frame = rows.sum(-1)
    assert (per_frame != 2).any() and per_frame.max() <= 4
    # every row position is drawn about equally often: 6 / 12 = 0.5 each, 200 samples
    freq = rows.float().mean(0)
    assert (freq - 0.5).abs().max() < 0.15


def test_clip_row_uses_the_same_rows_in_every_frame():
    m = _mask("clip_row").view(6, 3, 4, 5)
    rows = m[..., 0]
    assert torch.equal(m, rows[..., None].expand_as(m))
    assert torch.equal(rows, rows[:, :1].expand_as(rows))
    assert rows[:, 0].sum(-1).eq(2).all()


def test_generator_makes_masks_reproducible():
    assert torch.equal(_mask("random", seed=3), _mask("random", seed=3))
    assert not torch.equal(_mask("random", seed=3), _mask("random", seed=4))


def test_attention_topk_keeps_the_highest_per_frame():
    attn = torch.rand(2, 3, 20, generator=torch.Generator().manual_seed(0))
    m = make_mask("attention", 2, GRID, RATIO, attention=attn, sampling="topk").view(2, 3, 20)
    keep = 20 - 14
    for b in range(2):
        for i in range(3):
            expected_kept = set(attn[b, i].argsort(descending=True)[:keep].tolist())
            assert set((~m[b, i]).nonzero().flatten().tolist()) == expected_kept


def test_attention_multinomial_follows_the_weights():
    # all attention on 6 tokens per frame: sampling 6 without replacement must pick exactly them
    attn = torch.zeros(4, 3, 20)
    hot = torch.tensor([0, 3, 7, 11, 16, 19])
    attn[:, :, hot] = torch.tensor([5.0, 1.0, 2.0, 3.0, 1.0, 4.0])
    m = make_mask("attention", 4, GRID, RATIO, attention=attn, generator=torch.Generator().manual_seed(0))
    kept = (~m.view(4, 3, 20)).nonzero()[:, 2].view(4, 3, 6).sort(-1).values
    assert torch.equal(kept, hot.expand(4, 3, 6))
    # with uniform weights, every token is kept sometimes: the draw is random, not top-k
    many = make_mask("attention", 200, GRID, RATIO, attention=torch.ones(200, 60),
                     generator=torch.Generator().manual_seed(1))
    assert (~many).any(0).all()


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="mask ratio must be in"):
        make_mask("random", 2, GRID, 1.0)
    with pytest.raises(ValueError, match="mask type 'blocks' is not valid"):
        make_mask("blocks", 2, GRID, 0.5)
    with pytest.raises(ValueError, match="needs attention="):
        make_mask("attention", 2, GRID, 0.5)
    with pytest.raises(ValueError, match=r"attention must have shape \(2, 60\)"):
        make_mask("attention", 2, GRID, 0.5, attention=torch.rand(2, 59))
    with pytest.raises(ValueError, match="grid must be"):
        make_mask("tube", 2, (3, 4), 0.5)


def test_aliases():
    assert make_mask("frame-row", 1, GRID, RATIO).sum() == 30
    assert make_mask("clip-row", 1, GRID, RATIO).sum() == 30
