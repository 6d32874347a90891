"""Which frames of a video make a clip: pure functions of the frame count (and a torch generator).

Glossary: n frames in the video (or in a window of it), T frames per clip, s dense stride, K clips per
video at test time, k the clip index in [0, K).

- **segment** (sparse, TSN): the video is cut into T equal segments of length ``n / T`` (fractional).
  Training draws one uniform position per segment; testing takes fixed positions, clip k of K using
  offset ``(k + 0.5) / K`` inside every segment, so K=1 is the segment centres and K clips interleave.
  Each clip covers the whole video.
- **dense**: T frames at stride s, spanning ``(T-1)*s + 1`` frames. Training picks a uniform start;
  testing spreads K starts evenly from the first to the last possible start (K=1: centred).

Videos shorter than the request:
- segment sampling repeats frames: each segment still maps to one frame, so frames appear
  ``T / n`` times on average and time order is kept.
- dense sampling uses ``short``: "pad" (default) repeats the last frame after the video ends, keeping
  time monotonic, which matters when classes depend on temporal order; "loop" wraps round to frame 0.

All functions return python ints in [0, n).
"""
from __future__ import annotations

import math

import torch

SAMPLINGS = ("segment", "dense")
SHORT_MODES = ("pad", "loop")


def _uniform(count: int, generator: torch.Generator | None) -> list[float]:
    return torch.rand(count, generator=generator, dtype=torch.float64).tolist()


def segment_indices(num_frames: int, num_segments: int, train: bool, clip_idx: int = 0,
                    num_clips: int = 1, generator: torch.Generator | None = None) -> list[int]:
    """TSN sampling: one frame per equal segment; random in training, fixed at test."""
    _check(num_frames, num_segments, clip_idx, num_clips)
    tick = num_frames / num_segments
    offsets = _uniform(num_segments, generator) if train else [(clip_idx + 0.5) / num_clips] * num_segments
    return [min(int(math.floor(tick * (x + u))), num_frames - 1) for x, u in enumerate(offsets)]


def dense_indices(num_frames: int, clip_len: int, stride: int, train: bool, clip_idx: int = 0,
                  num_clips: int = 1, generator: torch.Generator | None = None,
                  short: str = "pad") -> list[int]:
    """Dense sampling: ``clip_len`` frames ``stride`` apart."""
    _check(num_frames, clip_len, clip_idx, num_clips)
    if stride < 1:
        raise ValueError(f"sample_stride must be >= 1, got {stride}")
    if short not in SHORT_MODES:
        raise ValueError(f"short must be one of {SHORT_MODES}, got {short!r}")
    span = (clip_len - 1) * stride + 1
    room = num_frames - span
    if room < 0:
        if short == "loop":
            return [(i * stride) % num_frames for i in range(clip_len)]
        return [min(i * stride, num_frames - 1) for i in range(clip_len)]
    if train:
        start = int(torch.randint(0, room + 1, (1,), generator=generator))
    elif num_clips == 1:
        start = room // 2
    else:
        start = (clip_idx * room) // (num_clips - 1)
    return [start + i * stride for i in range(clip_len)]


def sample_indices(num_frames: int, clip_len: int, sampling: str = "segment", stride: int = 4,
                   train: bool = True, clip_idx: int = 0, num_clips: int = 1,
                   generator: torch.Generator | None = None, short: str = "pad",
                   start: int = 0, end: int | None = None) -> list[int]:
    """Dispatch to segment/dense sampling inside frames ``[start, end)`` (a window) of the video."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    end = num_frames if end is None else end
    if not 0 <= start < end <= num_frames:
        raise ValueError(f"frame window [{start}, {end}) is empty or outside a video of {num_frames} frames")
    n = end - start
    if sampling == "segment":
        idx = segment_indices(n, clip_len, train, clip_idx, num_clips, generator)
    else:
        idx = dense_indices(n, clip_len, stride, train, clip_idx, num_clips, generator, short)
    return [start + i for i in idx]


def window_bounds(duration: float, window: float = 60.0, stride: float = 16.0) -> list[tuple[float, float]]:
    """LVU-style windows ``(start_s, end_s)`` of ``window`` seconds every ``stride`` seconds.

    A video no longer than one window is a single window. Otherwise windows start at 0, stride, 2*stride...
    while they fit, and a last window ending exactly at ``duration`` is added when the regular ones stop
    short of the end, so every second of the video is covered.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0, got window={window}, stride={stride}")
    if duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if duration <= window:
        return [(0.0, float(duration))]
    out = []
    start = 0.0
    while start + window <= duration + 1e-9:
        out.append((start, start + window))
        start += stride
    if out[-1][1] < duration - 1e-9:
        out.append((duration - window, float(duration)))
    return out


def time_to_frame_range(times: list[float], start_s: float, end_s: float) -> tuple[int, int]:
    """Frames whose timestamp lies in ``[start_s, end_s)``, as ``(first, stop)``; at least one frame."""
    import bisect

    first = bisect.bisect_left(times, start_s - 1e-6)
    stop = bisect.bisect_left(times, end_s - 1e-6)
    first = min(first, len(times) - 1)
    return first, max(stop, first + 1)


def _check(num_frames: int, clip_len: int, clip_idx: int, num_clips: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video of {num_frames} frames")
    if clip_len < 1:
        raise ValueError(f"num_frames per clip must be >= 1, got {clip_len}")
    if num_clips < 1 or not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx must be in [0, {num_clips}), got {clip_idx}")
