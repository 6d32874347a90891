"""Evaluation views: decoded frames -> the tensors a model scores, one definition for the dataset,
``predict``, ``eval`` and the analyses.

Glossary: V views (clips x crops), T frames per clip, S crop size, H x W decoded frame size.

``eval_views`` is pure (frames in, tensor out); ``read_views`` decodes one file (or one time window
of it) and calls it, without building a dataset.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import transforms as T
from .clip_config import ClipConfig
from .sampling import sample_indices, time_to_frame_range


def eval_views(clips: "list[torch.Tensor] | tuple[torch.Tensor, ...]", img_size: int, short_side: int | None = None,
               num_crops: int = 1, mean=T.IMAGENET_MEAN, std=T.IMAGENET_STD) -> torch.Tensor:
    """Clips of uint8 frames, each (T, 3, H, W) -> float (V, 3, T, S, S), V = len(clips) x num_crops:
    short side resized to ``short_side`` (default ``img_size``), ``num_crops`` square crops along the
    long side, ``(x / 255 - mean) / std``."""
    views = []
    for clip in clips:
        clip = T.resize_short_side(clip, short_side or img_size)
        views += [T.normalize(c, mean, std) for c in T.spatial_crops(clip, img_size, num_crops)]
    return torch.stack(views)


def clip_frame_indices(num_frames: int, clip: ClipConfig, num_clips: int, start: int = 0, end: int | None = None,
                       short: str = "pad") -> list[list[int]]:
    """Frame indices of ``num_clips`` test clips spread over frames ``[start, end)`` of a video."""
    return [sample_indices(num_frames, clip.num_frames, clip.sampling, clip.sample_stride, False, c, num_clips,
                           short=short, start=start, end=end if end is not None else num_frames)
            for c in range(num_clips)]


def read_views(path, clip: ClipConfig, num_clips: int | None = None, num_crops: int | None = None,
               window: tuple[float, float] | None = None, backend: str = "auto", short: str = "pad") -> torch.Tensor:
    """The evaluation views of one video file (or of the ``window`` (start_s, end_s) of it):
    float (V, 3, T, S, S), clips spread over the whole span."""
    from .video import open_video

    n_clips = num_clips or clip.test_clips
    n_crops = num_crops or clip.test_crops
    with open_video(Path(path), backend=backend, threads=0) as reader:
        n = reader.info.num_frames
        start, end = 0, n
        if window is not None:
            times = reader.frame_times
            if times is None:  # no timestamps: assume a constant rate
                fps = reader.info.fps or 1.0
                times = [i / fps for i in range(n)]
            start, end = time_to_frame_range(times, float(window[0]), float(window[1]))
        per_clip = clip_frame_indices(n, clip, n_clips, start, end, short)
        frames = reader.get_frames([i for idx in per_clip for i in idx])           # (clips*T, H, W, 3) uint8
    clips = frames.permute(0, 3, 1, 2).split(clip.num_frames)
    return eval_views(clips, clip.img_size, clip.short_side, n_crops, clip.mean, clip.std)
