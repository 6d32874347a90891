"""Frame sampling against hand-computed indices."""
from __future__ import annotations

import pytest
import torch

from videomamba.data.sampling import (dense_indices, sample_indices, segment_indices, time_to_frame_range,
                                      window_bounds)


def test_segment_test_positions_are_segment_centres():
    # 250 frames in 16 segments of 15.625: centres 7.8, 23.4, 39.1, 54.7, ...
    assert segment_indices(250, 16, train=False) == [7, 23, 39, 54, 70, 85, 101, 117, 132, 148, 164, 179,
                                                     195, 210, 226, 242]


def test_segment_test_clips_interleave():
    # 2 clips: offsets 1/4 and 3/4 of each 15.625-frame segment
    assert segment_indices(250, 4, train=False, clip_idx=0, num_clips=2) == [15, 78, 140, 203]
    assert segment_indices(250, 4, train=False, clip_idx=1, num_clips=2) == [46, 109, 171, 234]


def test_segment_short_video_repeats_frames_in_order():
    # 5 frames, 8 segments of 0.625: centres 0.31, 0.94, 1.56, 2.19, 2.81, 3.44, 4.06, 4.69
    assert segment_indices(5, 8, train=False) == [0, 0, 1, 2, 2, 3, 4, 4]


def test_segment_train_draws_one_frame_per_segment():
    g = torch.Generator().manual_seed(0)
    seen = [set() for _ in range(8)]
    for _ in range(300):
        idx = segment_indices(32, 8, train=True, generator=g)
        for x, i in enumerate(idx):
            assert 4 * x <= i < 4 * x + 4
            seen[x].add(i)
    assert all(s == set(range(4 * x, 4 * x + 4)) for x, s in enumerate(seen))


def test_segment_train_is_reproducible_with_a_generator():
    a = segment_indices(100, 8, True, generator=torch.Generator().manual_seed(3))
    b = segment_indices(100, 8, True, generator=torch.Generator().manual_seed(3))
    assert a == b


def test_dense_test_centred_and_spread():
    # 100 frames, 8 at stride 4 span 29 frames: 71 possible starts beyond 0
    assert dense_indices(100, 8, 4, train=False) == [35, 39, 43, 47, 51, 55, 59, 63]
    starts = [dense_indices(100, 8, 4, False, k, 3)[0] for k in range(3)]
    assert starts == [0, 35, 71]
    assert dense_indices(100, 8, 4, False, 2, 3)[-1] == 99


def test_dense_short_video_pad_or_loop():
    # 10 frames cannot hold 4 frames at stride 4 (span 13)
    assert dense_indices(10, 4, 4, train=False) == [0, 4, 8, 9]
    assert dense_indices(10, 4, 4, train=False, short="loop") == [0, 4, 8, 2]
    with pytest.raises(ValueError, match="short must be one of"):
        dense_indices(10, 4, 4, train=False, short="wrap")


def test_dense_train_start_is_uniform():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(400):
        idx = dense_indices(20, 4, 2, train=True, generator=g)
        assert [b - a for a, b in zip(idx, idx[1:])] == [2, 2, 2]
        assert 0 <= idx[0] and idx[-1] <= 19
        starts.add(idx[0])
    assert starts == set(range(0, 14))


def test_sample_indices_inside_a_window():
    idx = sample_indices(300, 4, "segment", train=False, start=100, end=140)
    assert idx == [105, 115, 125, 135]
    idx = sample_indices(300, 3, "dense", stride=5, train=False, start=100, end=140)
    assert idx == [114, 119, 124]   # span 11 in 40 frames: start 100 + (40 - 11) // 2 = 114
    with pytest.raises(ValueError, match="frame window"):
        sample_indices(300, 4, start=290, end=310)
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_indices(300, 4, "random")


@pytest.mark.parametrize("call, match", [
    (lambda: segment_indices(0, 8, False), "video of 0 frames"),
    (lambda: segment_indices(10, 0, False), "must be >= 1"),
    (lambda: segment_indices(10, 4, False, clip_idx=2, num_clips=2), "clip_idx"),
    (lambda: dense_indices(10, 4, 0, False), "sample_stride"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lvu_windows():
    assert window_bounds(100, 60, 16) == [(0, 60), (16, 76), (32, 92), (40, 100)]
    assert window_bounds(92, 60, 16) == [(0, 60), (16, 76), (32, 92)]
    assert window_bounds(50, 60, 16) == [(0, 50)]
    assert window_bounds(60, 60, 16) == [(0, 60)]
    with pytest.raises(ValueError, match="duration"):
        window_bounds(0)


def test_time_to_frame_range():
    times = [i * 0.5 for i in range(10)]            # 2 fps
    assert time_to_frame_range(times, 1.0, 3.0) == (2, 6)
    assert time_to_frame_range(times, 0.0, 100.0) == (0, 10)
    assert time_to_frame_range(times, 4.9, 6.0) == (9, 10)  # never empty
