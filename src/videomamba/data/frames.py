"""Raw-frame folders: a video stored as one image file per frame (the release's ``img_{:05}.jpg``
layout, numbered from 1), read through the same interface as a video file.

Frame index ``i`` (0-based, as everywhere in the data pipeline) is the file
``template.format(i + start_index)``. The frame count comes from the annotation (``dir nframes label``
lists) or, when not given, from the files present. There is no timestamp: ``fps`` (default 30) only
serves time-based windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .video import VideoDecodeError, VideoInfo, VideoNotFoundError, VideoReader

DEFAULT_TEMPLATE = "img_{:05}.jpg"


class FrameFolderReader(VideoReader):
    def __init__(self, path, num_frames: int | None = None, template: str = DEFAULT_TEMPLATE, start_index: int = 1,
                 fps: float = 30.0):
        self.path = Path(path)
        if not self.path.exists():
            raise VideoNotFoundError(self.path, "frame folder not found")
        if not self.path.is_dir():
            raise VideoDecodeError(self.path, "is not a folder of frames")
        self.template, self.start_index = template, int(start_index)
        if num_frames is None:
            num_frames = 0
            while (self.path / template.format(num_frames + self.start_index)).is_file():
                num_frames += 1
        if int(num_frames) < 1:
            raise VideoDecodeError(self.path, f"no frames (expected files named like {template.format(self.start_index)})")
        first = self._load(0)
        self.info = VideoInfo(num_frames=int(num_frames), fps=float(fps), duration=int(num_frames) / float(fps),
                              width=first.shape[1], height=first.shape[0], codec="frames")
        self.frame_times = None
        self._first = first

    def frame_file(self, i: int) -> Path:
        return self.path / self.template.format(int(i) + self.start_index)

    def _load(self, i: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        f = self.frame_file(i)
        try:
            with Image.open(f) as im:
                return np.asarray(im.convert("RGB")).copy()
        except FileNotFoundError:
            raise VideoDecodeError(self.path, f"frame {i} missing: {f.name} does not exist") from None
        except (UnidentifiedImageError, OSError) as e:
            raise VideoDecodeError(self.path, f"frame {i} ({f.name}) is not a readable image ({e})") from None

    def _read(self, unique_sorted: list[int]) -> dict[int, np.ndarray]:
        out = {}
        for i in unique_sorted:
            img = self._first if i == 0 else self._load(i)
            if img.shape[:2] != (self.info.height, self.info.width):
                raise VideoDecodeError(self.path, f"frame {i} is {img.shape[1]}x{img.shape[0]}, frame 0 is "
                                                  f"{self.info.width}x{self.info.height}")
            out[i] = img
        return out
