"""Window cutting and the streaming decoder, against hand-computed bounds and the library's decoder."""
import pytest
import torch

from videomamba.data.clip_config import ClipConfig
from videomamba.apps.search.windows import (WindowSpec, batch_to_model_input, iter_windows, plan_windows,
                                            probe, to_model_input, window_bounds)
from videomamba.data import transforms as TF
from videomamba.data.video import VideoDecodeError, decode_video

from .helpers import write_motion_video


def test_window_bounds_by_hand():
    assert window_bounds(10.0, WindowSpec(4, 2)) == [(0, 4000), (2000, 6000), (4000, 8000), (6000, 10000)]
    # the grid leaves 8-9 s uncovered: one last window ends at the end
    assert window_bounds(9.0, WindowSpec(4, 2)) == [(0, 4000), (2000, 6000), (4000, 8000), (5000, 9000)]
    assert window_bounds(3.0, WindowSpec(4, 2)) == [(0, 3000)]
    assert window_bounds(8.0, WindowSpec(4, 4)) == [(0, 4000), (4000, 8000)]
    with pytest.raises(ValueError, match="stride"):
        WindowSpec(4, 0)


def test_plans_sample_inside_their_window(tmp_path):
    path = write_motion_video(tmp_path / "v.mp4", ["left", "right"], seconds_each=4, fps=8)   # 64 frames, 8 s
    info, times = probe(path)
    plans = plan_windows(info, times, WindowSpec(2, 1), num_frames=4)
    assert [(p.start_ms, p.end_ms) for p in plans] == [(s * 1000, s * 1000 + 2000) for s in range(7)]
    for p in plans:
        # window [s, s+2) holds frames 8s .. 8s+15; segment centres of 4 segments of 4 frames: +2, +6, +10, +14
        first = p.start_ms * 8 // 1000
        assert p.indices == (first + 2, first + 6, first + 10, first + 14)


def test_streaming_decode_matches_random_access_decode(tmp_path):
    path = write_motion_video(tmp_path / "v.mp4", ["left", "up", "right"], seconds_each=3, fps=8, size=48)
    info, times = probe(path)
    clip = ClipConfig(num_frames=5, img_size=32, short_side=40)
    plans = plan_windows(info, times, WindowSpec(2, 0.5), clip.num_frames)
    got = list(iter_windows(path, plans, clip))
    assert [w.plan for w in got] == plans
    for w in got:
        ref = decode_video(path, list(w.plan.indices), layout="TCHW").frames     # (T, 3, H, W) uint8
        ref = TF.center_crop(TF.resize_short_side(ref, 40), 32)
        assert torch.equal(w.frames, ref)
    x = to_model_input(got[0].frames, clip)
    assert x.shape == (3, 5, 32, 32) and x.dtype == torch.float32
    xb = batch_to_model_input([w.frames for w in got[:3]], clip)
    assert xb.shape == (3, 3, 5, 32, 32)
    torch.testing.assert_close(xb[0], x, rtol=0, atol=1e-5)     # the library's normalize, as one multiply-add


def test_truncated_file_raises_decode_error(tmp_path):
    path = write_motion_video(tmp_path / "v.mp4", ["left", "right"], seconds_each=4)
    data = path.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError):
        info, times = probe(bad)
        list(iter_windows(bad, plan_windows(info, times, WindowSpec(2, 1), 4), ClipConfig(num_frames=4, img_size=32, short_side=32)))


def test_held_frames_do_not_grow_with_video_length(tmp_path, monkeypatch):
    """Decoded frames are released once the last window using them is out: as many are alive at once
    in a 2-minute video as in a 15-second one."""
    import weakref

    from videomamba.apps.search import windows as Wn

    live = weakref.WeakSet()
    prepare = Wn._prepare

    def tracked(rgb, clip):
        t = prepare(rgb, clip)
        live.add(t)
        return t

    monkeypatch.setattr(Wn, "_prepare", tracked)
    clip = ClipConfig(num_frames=4, img_size=16, short_side=16)
    peaks = []
    for seconds in (15, 120):
        path = write_motion_video(tmp_path / f"v{seconds}.mp4", ["left", "right", "up", "down"] * (seconds // 16 + 1),
                                  seconds_each=4, fps=4, size=32)
        info, times = probe(path)
        plans = plan_windows(info, times, WindowSpec(2, 1), clip.num_frames)
        peak, count = 0, 0
        for w in iter_windows(path, plans, clip):
            count += 1
            del w                                   # tensors go when their last reference does
            peak = max(peak, len(live))
        assert count == len(plans)
        peaks.append(peak)
    # 2 s windows every second with 4 frames each: at most the frames of the next window are held
    assert peaks[0] == peaks[1] <= 4
