"""Video decoding: one interface over PyAV (default), decord and torchcodec.

Frame index ``i`` always means the i-th frame, in presentation order, of a full sequential decode of
the file's first video stream. Frames come out as uint8 tensors, ``(T, H, W, 3)`` ("THWC") or
``(T, 3, H, W)`` ("TCHW"), RGB.

The PyAV reader decodes only what is asked for. It first demuxes the stream without decoding (cheap:
no pixel work) to learn every frame's timestamp and where the keyframes are. For each wanted frame it
then seeks to the keyframe at or before it and decodes forward only as far as needed, reusing one open
container and skipping the seek when continuing forward costs less. Only the wanted frames are converted
to RGB. Seeking is used only in containers with a reliable keyframe index (MP4/MOV, Matroska/WebM)
and is checked as it runs: a seek that lands after its target or skips a frame switches the call to a
plain sequential decode, which defines the result. AVI and other containers always decode sequentially.

PyAV is imported lazily so that ``import videomamba.data`` does not load FFmpeg. Display-rotation
metadata (phone videos) is not applied.
"""
from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "decord", "torchcodec")
LAYOUTS = ("THWC", "TCHW")
# Environment override for backend="auto": the one place where the default decoder is chosen.
BACKEND_ENV = "VIDEOMAMBA_VIDEO_BACKEND"
# FFmpeg demuxer names whose seek lands on a keyframe at or before the requested timestamp.
_SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm")


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a file's first video stream. ``duration`` is in seconds, ``fps`` the average rate."""
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str


@dataclass
class VideoClip:
    """Decoded frames: ``frames`` uint8 (T, H, W, 3) or (T, 3, H, W); ``indices`` the frame index of each
    row (repeats allowed); ``times`` each row's timestamp in seconds from the first frame, when known."""
    frames: torch.Tensor
    indices: list[int]
    fps: float
    duration: float
    times: list[float] | None = field(default=None, repr=False)


class VideoDecodeError(ValueError):
    """A file that cannot be decoded as asked. ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class VideoNotFoundError(VideoDecodeError, FileNotFoundError):
    """The file does not exist; also a FileNotFoundError so generic handlers catch it."""


def resolve_backend(backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise ValueError(f"video backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "pyav") or "pyav"
        if backend not in BACKENDS[1:]:
            raise ValueError(f"${BACKEND_ENV} must be one of {BACKENDS[1:]}, got {backend!r}")
    return backend


def open_video(path, backend: str = "auto", threads: int = 0, seek: bool = True) -> "VideoReader":
    """Open ``path`` for random frame access. ``threads``: decoder threads, 0 lets FFmpeg choose.
    ``seek=False`` makes the PyAV reader always decode sequentially (the reference the seek path must match).

    Raises VideoDecodeError (naming the file and the reason) for a missing, empty, unreadable,
    audio-only, zero-frame or truncated file, and ImportError when the asked-for backend is missing.
    """
    backend = resolve_backend(backend)
    path = Path(path)
    if not path.exists():
        raise VideoNotFoundError(path, "file not found")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    if backend == "pyav":
        return PyAVReader(path, threads=threads, seek=seek)
    if backend == "decord":
        return DecordReader(path, threads=threads)
    return TorchCodecReader(path, threads=threads)


def probe_video(path, backend: str = "auto") -> VideoInfo:
    """Frame count, fps, duration, size and codec of ``path`` without decoding any frame (PyAV)."""
    with open_video(path, backend=backend) as reader:
        return reader.info


def decode_video(path, indices=None, backend: str = "auto", layout: str = "THWC",
                 threads: int = 0, seek: bool = True) -> VideoClip:
    """Decode the frames ``indices`` (all frames when None; repeats allowed, any order) of ``path``."""
    with open_video(path, backend=backend, threads=threads, seek=seek) as reader:
        if indices is None:
            indices = range(reader.info.num_frames)
        return reader.get_clip(indices, layout=layout)


class VideoReader:
    """Random access to the frames of one file. Subclasses fill ``info`` and implement ``_read``."""

    path: Path
    info: VideoInfo
    frame_times: list[float] | None = None  # seconds from the first frame, per frame index

    def _read(self, unique_sorted: list[int]) -> dict[int, np.ndarray | torch.Tensor]:
        raise NotImplementedError

    def get_frames(self, indices, layout: str = "THWC") -> torch.Tensor:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        idx = self._check_indices(indices)
        got = self._read(sorted(set(idx)))
        rows = [got[i] for i in idx]
        if not rows:
            frames = torch.empty((0, self.info.height, self.info.width, 3), dtype=torch.uint8)
        elif isinstance(rows[0], np.ndarray):
            frames = torch.from_numpy(np.stack(rows))  # torch.stack of uint8 HWC rows is ~100x slower
        else:
            frames = torch.stack(rows)
        if layout == "TCHW":
            frames = frames.permute(0, 3, 1, 2).contiguous()
        return frames

    def get_clip(self, indices, layout: str = "THWC") -> VideoClip:
        idx = self._check_indices(indices)
        frames = self.get_frames(idx, layout=layout)
        times = [self.frame_times[i] for i in idx] if self.frame_times is not None else None
        return VideoClip(frames, idx, self.info.fps, self.info.duration, times)

    def _check_indices(self, indices) -> list[int]:
        out = []
        n = self.info.num_frames
        for i in indices:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                if isinstance(i, torch.Tensor) and i.ndim == 0 and not i.is_floating_point():
                    i = int(i)
                else:
                    raise TypeError(f"{self.path}: frame indices must be integers, got {i!r}")
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: frame index {i} out of range for a video of {n} frames")
            out.append(i)
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemoryReader(VideoReader):
    """Every frame of an open reader's file, decoded once and kept in memory (uint8 THWC); reads
    like the file. For small datasets read many times (``VideoDataset(cache=True)``)."""

    def __init__(self, reader: VideoReader):
        self.path, self.info, self.frame_times = reader.path, reader.info, reader.frame_times
        self.frames = reader.get_frames(range(reader.info.num_frames))

    def get_frames(self, indices, layout: str = "THWC") -> torch.Tensor:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        frames = self.frames[self._check_indices(indices)]
        return frames.permute(0, 3, 1, 2).contiguous() if layout == "TCHW" else frames


class _SeekUnreliable(Exception):
    """Raised inside the seek path when the decoder's output contradicts the index; caller goes sequential."""


class PyAVReader(VideoReader):
    """PyAV reader. ``stats`` counts, over the reader's life, ``seeks``, ``decoded`` frames, ``skipped``
    packets (unwanted non-reference frames) and ``sequential`` full decodes (fallbacks included)."""

    def __init__(self, path: Path, threads: int = 0, seek: bool = True):
        import av  # lazy: FFmpeg is only loaded by code that decodes

        self._av = av
        self.path = path
        self.threads = threads
        self._allow_seek = seek
        self.stats = {"seeks": 0, "decoded": 0, "skipped": 0, "sequential": 0}
        self._reformatter = None
        self._container = None
        self._container = self._open()
        try:
            self._build_index()
        except BaseException:
            self.close()
            raise

    # -- opening and indexing ------------------------------------------------------------------
    def _open(self):
        av = self._av
        try:
            container = av.open(str(self.path), metadata_errors="replace")
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"cannot open as a video container "
                                              f"({_ffmpeg_reason(e)})") from None
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            container.close()
            raise VideoDecodeError(self.path, f"no video stream (streams found: {', '.join(kinds)}); "
                                              "audio-only or not a video file")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            container.close()
            raise VideoDecodeError(self.path, "no decoder for its video codec in this FFmpeg build")
        ctx = stream.codec_context
        if self.threads != 1:
            ctx.thread_type = "AUTO"
            ctx.thread_count = max(0, self.threads)
        else:
            ctx.thread_count = 1
        self._stream = stream
        return container

    def _build_index(self):
        av = self._av
        stream = self._stream
        pts, keys, durations = [], [], {}
        present = 0          # every payload packet, discarded ones included (the header counts those)
        pts_missing = False
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue
                present += 1
                if packet.is_discard:
                    continue
                if packet.pts is None:
                    pts_missing = True
                    pts.append(None)
                    continue
                pts.append(packet.pts)
                durations[packet.pts] = packet.duration or 0
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt container data ({_ffmpeg_reason(e)})") from None

        n = len(pts)
        ctx = stream.codec_context
        tb = float(stream.time_base) if stream.time_base else 0.0
        if n == 0:
            raise VideoDecodeError(self.path, "the video stream contains no frames")
        declared = stream.frames or 0
        if declared > present:
            raise VideoDecodeError(self.path, f"truncated: the header declares {declared} frames but only "
                                              f"{present} are present")
        self._pts = None
        self.frame_times = None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if not pts_missing and tb > 0:
            order = sorted(pts)
            t0 = order[0]
            deltas = np.diff(order) if n > 1 else np.array([])
            step = float(np.median(deltas)) if len(deltas) else (1.0 / fps / tb if fps > 0 else 0.0)
            last = max(durations.get(order[-1], 0), 0) or step  # a held last frame (VFR) counts in full
            duration = (order[-1] - t0 + last) * tb
            self.frame_times = [(p - t0) * tb for p in order]
            if len(set(order)) == n:
                self._pts = order
            self._check_truncated_by_duration(duration, step * tb)
        else:
            duration = n / fps if fps > 0 else 0.0
        if fps <= 0 and duration > 0:
            fps = n / duration
        keys.sort()
        fmt = self._container.format.name.split(",")
        self._seekable = (self._allow_seek and self._pts is not None and bool(keys) and tb > 0
                          and any(f in _SEEKABLE_FORMATS for f in fmt))
        self._keys = keys
        self.info = VideoInfo(num_frames=n, fps=fps, duration=float(duration), width=int(ctx.width),
                              height=int(ctx.height), codec=str(ctx.name))
        if self.info.width <= 0 or self.info.height <= 0:
            raise VideoDecodeError(self.path, "the video stream has no frame size (corrupt header)")

    def _check_truncated_by_duration(self, present_s: float, frame_s: float):
        # Matroska/WebM carry no frame count, only a duration written in the header. Compare it with
        # what is present; use the container's duration only when the video is the only stream, since
        # otherwise a longer audio track would look like missing video.
        if self._stream.frames:
            return
        declared = None
        if self._stream.duration and self._stream.time_base:
            declared = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration and len(self._container.streams) == 1:
            declared = self._container.duration / 1e6
        if declared and present_s < declared - max(3 * frame_s, 0.02 * declared):
            raise VideoDecodeError(self.path, f"truncated: the header declares {declared:.2f} s of video "
                                              f"but frames end at {present_s:.2f} s")

    # -- decoding ---------------------------------------------------------------------------
    def _rgb(self, frame) -> np.ndarray:
        # One reformatter per reader: it keeps its scaler context, where frame.to_ndarray builds a new one
        # per frame. Resolution can change mid-stream; every row comes out at the stream's size.
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        rgb = self._reformatter.reformat(frame, format="rgb24", width=self.info.width, height=self.info.height)
        return rgb.to_ndarray()

    def _read(self, wanted: list[int]) -> dict[int, np.ndarray]:
        if not wanted:
            return {}
        if self._seekable:
            try:
                return self._read_seek(wanted)
            except _SeekUnreliable as e:
                log.debug("%s: seeking unreliable (%s); decoding sequentially", self.path, e)
        return self._read_sequential(wanted)

    def _read_seek(self, wanted: list[int]) -> dict[int, np.ndarray]:
        av = self._av
        container, stream, pts, keys = self._container, self._stream, self._pts, self._keys
        out: dict[int, np.ndarray] = {}
        wanted_pts = {pts[i] for i in wanted}
        nonref = _h264_nonref_test(stream)

        def run_from(key_pts):
            container.seek(key_pts, stream=stream, backward=True, any_frame=False)
            self.stats["seeks"] += 1
            for packet in container.demux(stream):
                # No other frame predicts from a non-reference frame, so an unwanted one need not be
                # decoded at all: about 45 % of the frames of a typical x264 file.
                if nonref is not None and packet.size and packet.pts not in wanted_pts and nonref(packet):
                    self.stats["skipped"] += 1
                    continue
                for frame in packet.decode():
                    self.stats["decoded"] += 1
                    yield frame

        gen, pos = None, None
        try:
            for i in wanted:
                target = pts[i]
                k = bisect.bisect_right(keys, target) - 1
                key = keys[k] if k >= 0 else pts[0]   # frames before the first keyframe: start of file
                if gen is None or pos < key:
                    gen, first = run_from(key), True
                for frame in gen:
                    if frame.pts is None:
                        raise _SeekUnreliable("decoded frame without timestamp")
                    if first and frame.pts > target:
                        raise _SeekUnreliable(f"seek for pts {target} landed at pts {frame.pts}")
                    first = False
                    pos = frame.pts
                    if frame.pts == target:
                        out[i] = self._rgb(frame)
                        break
                    if frame.pts > target:
                        raise _SeekUnreliable(f"frame with pts {target} was skipped")
                else:
                    raise _SeekUnreliable(f"stream ended before pts {target}")
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt video data ({_ffmpeg_reason(e)})") from None
        return out

    def _read_sequential(self, wanted: list[int]) -> dict[int, np.ndarray]:
        av = self._av
        self._container.close()
        self._container = self._open()  # a fresh demuxer: some formats cannot seek back to the start
        want = set(wanted)
        last = wanted[-1]
        out: dict[int, np.ndarray] = {}
        n = -1
        self.stats["sequential"] += 1
        try:
            for n, frame in enumerate(self._container.decode(self._stream)):
                self.stats["decoded"] += 1
                if n in want:
                    out[n] = self._rgb(frame)
                if n >= last:
                    break
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt video data after frame {n} "
                                              f"({_ffmpeg_reason(e)})") from None
        if len(out) < len(want):
            missing = min(want - set(out))
            raise VideoDecodeError(self.path, f"only {n + 1} of {self.info.num_frames} indexed frames decode "
                                              f"(frame {missing} is missing): truncated or corrupt")
        return out

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class DecordReader(VideoReader):
    """decord backend (optional, ``pip install decord``); frame indices follow decord's own index."""

    def __init__(self, path: Path, threads: int = 0):
        try:
            import decord
        except ImportError:
            raise ImportError("video backend 'decord' was asked for but decord is not installed "
                              "(pip install decord), or use backend='pyav'") from None
        self.path = path
        try:
            self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
            n = len(self._vr)
            fps = float(self._vr.get_avg_fps())
            h, w = self._vr[0].shape[:2] if n else (0, 0)
        except decord.DECORDError as e:
            raise VideoDecodeError(path, f"decord cannot read it ({e})") from None
        if n == 0:
            raise VideoDecodeError(path, "the video stream contains no frames")
        self.info = VideoInfo(n, fps, n / fps if fps > 0 else 0.0, int(w), int(h), "unknown")
        self._decord = decord

    def _read(self, wanted):
        try:
            batch = self._vr.get_batch(wanted).asnumpy()
        except self._decord.DECORDError as e:
            raise VideoDecodeError(self.path, f"decord failed to decode ({e})") from None
        return {i: batch[j] for j, i in enumerate(wanted)}


class TorchCodecReader(VideoReader):
    """torchcodec backend (optional; its registry wheels are CUDA builds, so it is never a dependency)."""

    def __init__(self, path: Path, threads: int = 0):
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError:
            raise ImportError("video backend 'torchcodec' was asked for but torchcodec is not installed, "
                              "or use backend='pyav'") from None
        self.path = path
        try:
            self._dec = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact",
                                     num_ffmpeg_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(path, f"torchcodec cannot read it ({e})") from None
        m = self._dec.metadata
        n = int(m.num_frames or 0)
        if n == 0:
            raise VideoDecodeError(path, "the video stream contains no frames")
        fps = float(m.average_fps or 0.0)
        self.info = VideoInfo(n, fps, float(m.duration_seconds or (n / fps if fps else 0.0)),
                              int(m.width), int(m.height), str(m.codec))

    def _read(self, wanted):
        try:
            data = self._dec.get_frames_at(wanted).data
        except (RuntimeError, IndexError) as e:
            raise VideoDecodeError(self.path, f"torchcodec failed to decode ({e})") from None
        return {i: data[j] for j, i in enumerate(wanted)}


def _h264_nonref_test(stream):
    """A test ``packet -> bool`` for 'this H.264 packet is a non-reference picture', or None.

    Only for length-prefixed (MP4/Matroska "avcC") H.264, where the NAL unit header's nal_ref_idc of the
    first slice tells. Anything unexpected answers False, so the packet is decoded.
    """
    ctx = stream.codec_context
    extra = ctx.extradata
    if ctx.name != "h264" or not extra or len(extra) < 7 or extra[0] != 1:
        return None
    size = (extra[4] & 3) + 1

    def nonref(packet) -> bool:
        data = memoryview(packet)
        i, n = 0, len(data)
        while i + size < n:
            length = int.from_bytes(data[i:i + size], "big")
            header = data[i + size]
            if header & 0x1F in (1, 5):          # coded slice: its nal_ref_idc speaks for the picture
                return (header >> 5) & 3 == 0
            i += size + length
        return False

    return nonref


def _ffmpeg_reason(e) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    log_msg = getattr(e, "log", None)
    if log_msg and isinstance(log_msg, tuple) and len(log_msg) >= 3 and log_msg[2]:
        msg = f"{msg}: {str(log_msg[2]).strip()}"
    return msg


# ------------------------------------------------------------------------------------------ writing
def write_video(path, frames, fps: float = 8, crf: int = 17, preset: str = "medium", codec: str = "libx264") -> Path:
    """Encode uint8 (H, W, 3) RGB frames (an array (T, H, W, 3) or any iterable, consumed one frame
    at a time so that long videos need no memory) as an mp4, atomically. Odd sizes are padded by one
    pixel (yuv420p needs even ones). One encoder thread and no macroblock tree: x264 then gives the
    same bytes for the same frames (with mbtree it did not, now and then, on tiny frames)."""
    import fractions

    import av

    from ..fileio import atomic_path

    if codec not in av.codecs_available:
        codec = "mpeg4"
    path = Path(path)
    rate = fractions.Fraction(fps).limit_denominator(1000)
    options = {"threads": "1"}
    if codec == "libx264":
        options.update({"crf": str(crf), "preset": preset, "x264-params": "no-mbtree=1"})
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = None
            for t, frame in enumerate(frames):
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                if frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"{path}: frames must be (H, W, 3) uint8 RGB, got {frame.shape}")
                H, W = frame.shape[:2]
                if H % 2 or W % 2:
                    frame = np.pad(frame, ((0, H % 2), (0, W % 2), (0, 0)), mode="edge")
                if stream is None:
                    stream = container.add_stream(codec, rate=rate, options=options)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.codec_context.thread_count = 1
                f = av.VideoFrame.from_ndarray(frame, format="rgb24")
                f.pts, f.time_base = t, 1 / rate
                for packet in stream.encode(f):
                    container.mux(packet)
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return path
