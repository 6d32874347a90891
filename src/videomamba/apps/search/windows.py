"""Cut videos into overlapping time windows and decode them one window at a time.

Glossary: L window length (s), S stride (s), T frames per window (the model's clip length),
H = W the model's input size, n the frame index in presentation order (as in
:mod:`videomamba.data.video`: the n-th frame of a full sequential decode).

A window ``[start, end)`` keeps T frames chosen by the library's test-time segment sampling inside
the frames whose timestamps fall in it. Windows start at 0, S, 2S, ... while they fit; a video shorter
than L is one window; when the grid leaves a tail uncovered, one last window ends at the end.

Memory does not grow with the length of a video: the file is decoded once, sequentially; a frame is
kept only if some pending window samples it, already resized and cropped to the model's input, and
is dropped as soon as the last window that uses it has been handed out.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ...data import transforms as TF
from ...data.clip_config import ClipConfig
from ...data.sampling import sample_indices
from ...data.video import VideoDecodeError, VideoInfo, open_video

# Window times are stored in milliseconds: equal windows compare equal across runs and machines.
TIME_SCALE = 1000


@dataclass(frozen=True)
class WindowSpec:
    """Window length and stride in seconds."""
    length: float = 4.0
    stride: float = 2.0

    def __post_init__(self):
        if not self.length > 0:
            raise ValueError(f"window length must be > 0 seconds, got {self.length}")
        if not 0 < self.stride:
            raise ValueError(f"window stride must be > 0 seconds, got {self.stride}")


def clip_spec(model) -> ClipConfig:
    """The model's input geometry (frames, size, normalisation): :meth:`ClipConfig.for_model`, with
    the short side filled in (windows are resized to it, then centre-cropped)."""
    if getattr(model, "cfg", None) is None:
        raise ValueError(f"{type(model).__name__} has no .cfg: cannot tell its frames and input size")
    c = ClipConfig.for_model(model)
    return c.replace(short_side=c.short_side or c.img_size)


@dataclass(frozen=True)
class WindowPlan:
    """One window: ``start`` / ``end`` in ms and the frame indices it samples (T of them)."""
    start_ms: int
    end_ms: int
    indices: tuple[int, ...]

    @property
    def start(self) -> float:
        return self.start_ms / TIME_SCALE

    @property
    def end(self) -> float:
        return self.end_ms / TIME_SCALE


def window_bounds(duration: float, spec: WindowSpec) -> list[tuple[int, int]]:
    """``[(start_ms, end_ms), ...]`` covering ``[0, duration]`` with windows of ``spec``."""
    dur = int(round(duration * TIME_SCALE))
    L, S = int(round(spec.length * TIME_SCALE)), int(round(spec.stride * TIME_SCALE))
    if dur <= 0:
        return []
    if dur <= L:
        return [(0, dur)]
    out = [(s, s + L) for s in range(0, dur - L + 1, S)]
    if out[-1][1] < dur:
        out.append((dur - L, dur))
    return out


def plan_windows(info: VideoInfo, frame_times: list[float] | None, spec: WindowSpec,
                 num_frames: int) -> list[WindowPlan]:
    """The windows of a probed video and the frames each samples (segment sampling, test positions)."""
    times = _frame_times(info, frame_times)
    return [plan_span(info, times, s, e, num_frames) for s, e in window_bounds(info.duration, spec)]


def plan_span(info: VideoInfo, frame_times: list[float] | None, start_ms: int, end_ms: int,
              num_frames: int) -> WindowPlan:
    """The frames sampled in ``[start_ms, end_ms)``: those whose timestamps fall in it (at least one)."""
    times = _frame_times(info, frame_times)
    n = info.num_frames
    lo = min(bisect.bisect_left(times, start_ms / TIME_SCALE - 1e-9), n - 1)
    hi = min(max(bisect.bisect_left(times, end_ms / TIME_SCALE - 1e-9), lo + 1), n)
    idx = sample_indices(n, num_frames, "segment", train=False, start=lo, end=hi)
    return WindowPlan(int(start_ms), int(end_ms), tuple(idx))


def _frame_times(info: VideoInfo, frame_times: list[float] | None) -> list[float]:
    if frame_times is not None:
        return frame_times
    fps = info.fps if info.fps > 0 else info.num_frames / max(info.duration, 1e-9)
    return [i / fps for i in range(info.num_frames)]


@dataclass
class Window:
    """A decoded window: ``frames`` uint8 (T, 3, H, W), already resized and cropped."""
    plan: WindowPlan
    frames: torch.Tensor


def probe(path) -> tuple[VideoInfo, list[float] | None]:
    """Validate ``path`` as a video and index its frames (no pixel decoding). Raises VideoDecodeError."""
    with open_video(path) as reader:
        return reader.info, reader.frame_times


def to_model_input(frames: torch.Tensor, clip: ClipConfig) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> (3, T, H, W) float32, normalised."""
    return TF.normalize(frames, clip.mean, clip.std)


def batch_to_model_input(clips: list[torch.Tensor], clip: ClipConfig) -> torch.Tensor:
    """B clips (T, 3, H, W) uint8 -> (B, 3, T, H, W) float32, normalised like :func:`to_model_input`
    (``(x / 255 - mean) / std`` as one multiply-add over the batch: per-clip small ops cost more than
    the arithmetic)."""
    x = torch.stack(clips).permute(0, 2, 1, 3, 4).to(torch.float32)          # (B, 3, T, H, W)
    std = torch.tensor(clip.std, dtype=torch.float32).view(1, 3, 1, 1, 1)
    mean = torch.tensor(clip.mean, dtype=torch.float32).view(1, 3, 1, 1, 1)
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std).contiguous()


def _prepare(rgb: np.ndarray, clip: ClipConfig) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)                   # (1, 3, H, W) uint8
    x = TF.center_crop(TF.resize_short_side(x, clip.short_side), clip.img_size)
    return x[0].contiguous()


def iter_windows(path, plans: list[WindowPlan], clip: ClipConfig, threads: int = 0) -> Iterator[Window]:
    """Decode ``path`` once, front to back, and yield each planned window as soon as its last frame is in.

    ``plans`` must be in time order (a subset of :func:`plan_windows`). Held memory: the frames that
    pending windows still need. Raises VideoDecodeError when the file ends or breaks before a window.
    """
    if not plans:
        return
    import av

    last_use: dict[int, int] = {}
    for w, p in enumerate(plans):
        for i in p.indices:
            last_use[i] = w
    needed_until = max(max(p.indices) for p in plans)
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot open as a video container ({e})") from None
    held: dict[int, torch.Tensor] = {}
    w = 0
    n = -1
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_type = "AUTO"
        ctx.thread_count = max(0, threads)
        width, height = ctx.width, ctx.height
        for n, frame in enumerate(container.decode(stream)):
            if n in last_use:
                rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
                held[n] = _prepare(rgb, clip)
            while w < len(plans) and max(plans[w].indices) <= n:
                p = plans[w]
                yield Window(p, torch.stack([held[i] for i in p.indices]))
                for i in set(p.indices):
                    if last_use[i] == w:
                        del held[i]
                w += 1
            if n >= needed_until:
                break
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f"corrupt video data after frame {n} ({e})") from None
    finally:
        container.close()
    if w < len(plans):
        raise VideoDecodeError(path, f"only {n + 1} frames decode but window {plans[w].start:.2f}-"
                                     f"{plans[w].end:.2f} s needs frame {max(plans[w].indices)}: truncated or corrupt")
