"""Position-table resampling against independent computations, on ramps and random tables.

The original loader (OpenGVLab VideoMamba, ``video_sm/run_class_finetuning.py``) resamples the
spatial table as an (h, w) grid, row-major, with ``F.interpolate(mode="bicubic",
align_corners=False)``, the cls row kept apart, and the temporal table with ``mode="linear",
align_corners=False``; a joint (t*h*w) table linearly in time, then bicubically per frame. Two
expectations are computed here without the code under test:

- the loader's recipe written out by hand (reshape to the grid, ``F.interpolate``, flatten);
- interpolation matrices built from first principles: half-pixel centres (source coordinate
  (o + 0.5) * n_in / n_out - 0.5), Keys' cubic kernel with a = -0.75 and edge samples repeated
  for bicubic, two-tap linear weights clamped at the edges for linear; applied axis by axis.

Non-square grids and ramps with a different slope per axis make a transposed grid, a wrong
corner alignment or another kernel visible.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videomamba.layers import resample_joint_pos, resample_spatial_pos, resample_temporal_pos

try:
    from videomamba.checkpoint.adapters import init_joint_from_spatial
except ImportError:  # older layout: one module
    from videomamba.checkpoint import _init_joint_from_spatial as init_joint_from_spatial


def keys(s: float, a: float = -0.75) -> float:
    s = abs(s)
    if s <= 1:
        return (a + 2) * s ** 3 - (a + 3) * s ** 2 + 1
    if s < 2:
        return a * s ** 3 - 5 * a * s ** 2 + 8 * a * s - 4 * a
    return 0.0


def cubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) bicubic weights, half-pixel centres, edge samples repeated."""
    M = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        src = (o + 0.5) * n_in / n_out - 0.5
        f = math.floor(src)
        for k in range(f - 1, f + 3):
            M[o, min(max(k, 0), n_in - 1)] += keys(src - k)
    return M


def linear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) linear weights, half-pixel centres, clamped at the edges."""
    M = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        M[o, i0] += 1 - lam
        M[o, i1] += lam
    return M


def test_matrices_are_what_they_claim():
    """Sanity of the hand-built matrices: rows sum to 1; same size is the identity; linear
    upsampling by 2 gives the textbook 3/4, 1/4 weights."""
    for n_in, n_out in [(3, 5), (5, 3), (4, 8), (7, 7)]:
        for M in (cubic_matrix(n_in, n_out), linear_matrix(n_in, n_out)):
            torch.testing.assert_close(M.sum(1), torch.ones(n_out, dtype=torch.float64))
    torch.testing.assert_close(cubic_matrix(4, 4), torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(linear_matrix(2, 4), torch.tensor(
        [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], dtype=torch.float64))


def ramp_grid(h, w, D, sy=3.0, sx=0.25, c=1.0):
    """(1, h*w, D) table whose channel d holds (d + 1) * (sy * y + sx * x) + c, row-major (y, x)."""
    y = torch.arange(h, dtype=torch.float64)[:, None, None]
    x = torch.arange(w, dtype=torch.float64)[None, :, None]
    d = torch.arange(1, D + 1, dtype=torch.float64)[None, None, :]
    return (d * (sy * y + sx * x) + c).reshape(1, h * w, D)


def random_table(n, D, seed=0):
    return torch.randn(1, n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def spatial_by_matrices(table, old_hw, new_hw):
    (h, w), (h2, w2) = old_hw, new_hw
    g = table.reshape(h, w, -1)
    out = torch.einsum("Yy,Xx,yxd->YXd", cubic_matrix(h, h2), cubic_matrix(w, w2), g)
    return out.reshape(1, h2 * w2, -1)


def spatial_like_release(table, old_hw, new_hw):
    """The release's recipe: (1, h*w, D) -> (1, D, h, w) -> bicubic, align_corners=False -> flatten."""
    D = table.shape[-1]
    g = table.reshape(-1, old_hw[0], old_hw[1], D).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=tuple(new_hw), mode="bicubic", align_corners=False)
    return g.permute(0, 2, 3, 1).flatten(1, 2)


SPATIAL = [((4, 4), (6, 6)), ((6, 6), (4, 4)), ((3, 5), (4, 7)), ((5, 3), (2, 6)), ((2, 2), (14, 14)), ((7, 7), (7, 3))]


@pytest.mark.parametrize("old_hw,new_hw", SPATIAL, ids=lambda v: "x".join(map(str, v)))
@pytest.mark.parametrize("kind", ["ramp", "random"])
def test_spatial_resampling(kind, old_hw, new_hw):
    n = old_hw[0] * old_hw[1]
    table = ramp_grid(*old_hw, 3) if kind == "ramp" else random_table(n, 5, seed=n)
    got = resample_spatial_pos(table.float(), old_hw, new_hw).double()
    assert got.shape == (1, new_hw[0] * new_hw[1], table.shape[-1])
    torch.testing.assert_close(got, spatial_by_matrices(table, old_hw, new_hw), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, spatial_like_release(table, old_hw, new_hw), rtol=1e-5, atol=1e-5)


def test_spatial_hand_values():
    """A 1 x 4 grid holding 0, 1, 2, 3 along x, to 1 x 8. Output X = 3 sits at source x = 1.25:
    taps 0..3 at distances 1.25, 0.25, 0.75, 1.75 weigh -0.10546875, 0.87890625, 0.26171875,
    -0.03515625 (Keys, a = -0.75), giving 1.296875 (not 1.25: this kernel does not reproduce
    ramps). X = 0 sits at -0.25: taps -2..1, the first three repeat sample 0, so 1 * -0.10546875.
    Along y, the same table stored as 4 x 1 gives the same numbers (the grid is not transposed)."""
    row = torch.arange(4.0).reshape(1, 4, 1)
    out = resample_spatial_pos(row, (1, 4), (1, 8)).flatten()
    assert out[3].item() == pytest.approx(1.296875, abs=1e-6)
    assert out[0].item() == pytest.approx(-0.10546875, abs=1e-6)
    assert out[7].item() == pytest.approx(3.10546875, abs=1e-6)      # mirror image of X = 0
    col = resample_spatial_pos(row, (4, 1), (8, 1)).flatten()
    torch.testing.assert_close(col, out)
    # a (4 x 1) column resampled to (1 x 8) would be a transposed table: it is not what (1, 4) gives
    assert not torch.allclose(resample_spatial_pos(row, (4, 1), (2, 2)).flatten(),
                              resample_spatial_pos(row, (1, 4), (2, 2)).flatten())


def test_spatial_same_grid_is_identity_and_keeps_dtype():
    table = random_table(9, 4).float()
    assert resample_spatial_pos(table, (3, 3), (3, 3)) is table
    bf = table.bfloat16()
    out = resample_spatial_pos(bf, (3, 3), (5, 5))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), spatial_by_matrices(bf.double(), (3, 3), (5, 5)).float(),
                               rtol=2 ** -7, atol=2 ** -7)


@pytest.mark.parametrize("t_old,t_new", [(4, 8), (8, 4), (3, 7), (8, 16), (16, 8), (2, 1), (1, 4)])
@pytest.mark.parametrize("kind", ["ramp", "random"])
def test_temporal_resampling(kind, t_old, t_new):
    if kind == "ramp":
        table = (torch.arange(t_old, dtype=torch.float64)[:, None] * torch.tensor([1.0, -2.0, 0.5])
                 + 7.0).unsqueeze(0)
    else:
        table = random_table(t_old, 6, seed=t_old)
    got = resample_temporal_pos(table.float(), t_new).double()
    expected = torch.einsum("Tt,td->Td", linear_matrix(t_old, t_new), table[0]).unsqueeze(0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    release = F.interpolate(table.permute(0, 2, 1), size=(t_new,), mode="linear", align_corners=False).permute(0, 2, 1)
    torch.testing.assert_close(got, release, rtol=1e-5, atol=1e-5)


def test_temporal_hand_values():
    """4 -> 8 frames of the ramp 0, 1, 2, 3 (half-pixel centres, edges held):
    0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3; 8 -> 4 of 0..7 averages neighbours: 0.5, 2.5, 4.5, 6.5."""
    up = resample_temporal_pos(torch.arange(4.0).reshape(1, 4, 1), 8).flatten().tolist()
    assert up == pytest.approx([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    down = resample_temporal_pos(torch.arange(8.0).reshape(1, 8, 1), 4).flatten().tolist()
    assert down == pytest.approx([0.5, 2.5, 4.5, 6.5])


JOINT = [((2, 3, 3), (4, 3, 3)), ((2, 3, 3), (2, 5, 4)), ((4, 2, 3), (3, 4, 2)), ((3, 4, 4), (6, 2, 2))]


def joint_like_release(table, old, new):
    """The release's joint-table recipe: (1, t*S, D) -> per location, linear over t; then each
    frame's (h, w) grid bicubically; frame-major again."""
    (t, h, w), (t2, h2, w2) = old, new
    D = table.shape[-1]
    x = table.view(1, t, h * w, D).permute(0, 2, 3, 1).reshape(-1, D, t)
    x = F.interpolate(x, size=t2, mode="linear", align_corners=False)
    x = x.view(1, h * w, D, t2).permute(0, 3, 1, 2).reshape(t2, h, w, D).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(h2, w2), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(1, t2 * h2 * w2, D)


@pytest.mark.parametrize("old,new", JOINT, ids=lambda v: "x".join(map(str, v)))
@pytest.mark.parametrize("kind", ["ramp", "random"])
def test_joint_resampling(kind, old, new):
    """A joint (1, t*h*w, D) table, frame-major, resampled over (t, h, w): linear in time and
    bicubic in each spatial axis (align_corners=False), frame-major again."""
    (t, h, w), (t2, h2, w2) = old, new
    if kind == "ramp":
        i = torch.arange(t, dtype=torch.float64)[:, None, None, None]
        grid = (5.0 * i + ramp_grid(h, w, 2).reshape(1, h, w, 2))
        table = grid.reshape(1, t * h * w, 2)
    else:
        table = random_table(t * h * w, 3, seed=t * h * w)
    got = resample_joint_pos(table.float(), old, new).double()
    g = table.reshape(t, h, w, -1)
    expected = torch.einsum("Tt,Yy,Xx,tyxd->TYXd", linear_matrix(t, t2), cubic_matrix(h, h2),
                            cubic_matrix(w, w2), g).reshape(1, t2 * h2 * w2, -1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, joint_like_release(table, old, new), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("old,new", [((3, 2, 3), (5, 2, 3)), ((4, 4, 4), (6, 7, 5)), ((2, 3, 3), (2, 2, 2))],
                         ids=lambda v: "x".join(map(str, v)))
def test_joint_table_from_factorised_tables_resamples_as_they_do(old, new):
    """A joint table that is a spatial table plus a temporal one (how a factorised checkpoint
    becomes a joint model's table) resamples to the sum of the two resampled tables: resizing at
    load time or at run time gives the same positions."""
    (t, h, w), (t2, h2, w2) = old, new
    sp, tp = random_table(h * w, 4, seed=1), random_table(t, 4, seed=2)
    joint = (sp.unsqueeze(1) + tp.unsqueeze(2)).reshape(1, t * h * w, 4)
    got = resample_joint_pos(joint.float(), old, new).double()
    sp2 = resample_spatial_pos(sp.float(), (h, w), (h2, w2)).double()
    tp2 = resample_temporal_pos(tp.float(), t2).double()
    expected = (sp2.unsqueeze(1) + tp2.unsqueeze(2)).reshape(1, t2 * h2 * w2, 4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- joint from an image table
def test_init_joint_expand():
    sp = random_table(4, 3).float()
    out = init_joint_from_spatial(sp, 3, "expand")
    for i in range(3):
        torch.testing.assert_close(out[:, i * 4:(i + 1) * 4], sp, rtol=0, atol=0)


def test_init_joint_interpolate_dim_hand_values():
    """D = 4, t = 2: each token's channel vector v (length 4) is stretched linearly to 8 values
    (half-pixel centres, edges held) and cut into two frames. For v = (0, 4, 8, 12):
    0, 1, 3, 5 | 7, 9, 11, 12. Token s carries v + 100 s."""
    v = torch.tensor([0.0, 4.0, 8.0, 12.0])
    sp = torch.stack([v + 100 * s for s in range(3)]).unsqueeze(0)                # (1, S=3, D=4)
    out = init_joint_from_spatial(sp, 2, "interpolate_dim")
    assert out.shape == (1, 6, 4)
    frames = [[0.0, 1.0, 3.0, 5.0], [7.0, 9.0, 11.0, 12.0]]
    for i in range(2):
        for s in range(3):
            assert out[0, i * 3 + s].tolist() == pytest.approx([f + 100 * s for f in frames[i]]), (i, s)


def test_init_joint_interpolate_spatial_hand_values():
    """S = 2, t = 2: the token axis is stretched linearly from 2 to 4 rows: r0, 0.75 r0 + 0.25 r1,
    0.25 r0 + 0.75 r1, r1; frame 0 takes the first two rows, frame 1 the last two."""
    r0, r1 = torch.tensor([1.0, -2.0, 4.0]), torch.tensor([5.0, 2.0, 0.0])
    out = init_joint_from_spatial(torch.stack([r0, r1]).unsqueeze(0), 2, "interpolate_spatial")
    expected = torch.stack([r0, 0.75 * r0 + 0.25 * r1, 0.25 * r0 + 0.75 * r1, r1]).unsqueeze(0)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_init_joint_unknown_mode():
    with pytest.raises(ValueError, match="joint_pos_init"):
        init_joint_from_spatial(torch.zeros(1, 4, 2), 2, "nearest")
