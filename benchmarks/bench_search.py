"""Video search benchmarks: indexer throughput, memory on long video, query latency and recall.

    python benchmarks/bench_search.py throughput   # indexer clips/s against the model's raw batch clips/s
    python benchmarks/bench_search.py memory       # peak RSS indexing 1, 10 and 60 minutes of video
    python benchmarks/bench_search.py latency      # query latency / recall@10 / bytes per vector at 1e4..1e6
    python benchmarks/bench_search.py make-long-video OUT.mp4 --minutes 60

Each writes ``benchmarks/results/search_<name>.json`` (paths in it are repo-relative). Models are
randomly initialised presets saved with ``save_pretrained`` (speed and memory do not depend on the
weights). The videos are synthetic (a square moving in turn left, right, up and down on a textured
background), written frame by frame, so making a long one needs no memory either.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {
    # the demo's model (64 px): the cheapest model, so the indexer's own costs show the most
    "demo": dict(name="videomamba_tiny", embed_dim=64, depth=4, num_frames=8, img_size=64, num_classes=8),
    # the released tiny geometry (192 wide, 24 layers) at 8 frames of 224 px
    "tiny": dict(name="videomamba_tiny", num_frames=8, img_size=224, num_classes=400),
}


def machine() -> dict:
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "torch": torch.__version__}


def rel(p) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return Path(p).name


def write_result(name: str, data: dict) -> Path:
    from videomamba.fileio import atomic_write_text

    out = RESULTS / f"search_{name}.json"
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    print(f"wrote {rel(out)}")
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------- videos
def make_long_video(path: Path, minutes: float, fps: int = 8, size: int = 96, seed: int = 0) -> Path:
    """A square that moves left, right, up, down in turn (4 s each) over a fixed textured background;
    frames are rendered and encoded one at a time (h264, yuv420p)."""
    rng = np.random.default_rng(seed)
    bg = (rng.integers(40, 90, (size, size, 3))).astype(np.uint8)
    n = int(round(minutes * 60 * fps))
    per = 4 * fps
    steps = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
    sq, travel = size // 8, size / 3
    path.parent.mkdir(parents=True, exist_ok=True)
    from videomamba.data.video import write_video

    def frames():
        for t in range(n):
            dx, dy = steps[(t // per) % 4]
            u = (t % per) / (per - 1)
            cx = size / 2 - dx * travel / 2 + dx * travel * u
            cy = size / 2 - dy * travel / 2 + dy * travel * u
            f = bg.copy()
            f[int(cy - sq):int(cy + sq), int(cx - sq):int(cx + sq)] = (230, 200, 40)
            yield f

    return write_video(path, frames(), fps=fps, crf=23, preset="veryfast")


def save_model(preset: str, out: Path) -> Path:
    import torch

    import videomamba

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    cfg = dict(MODELS[preset])
    videomamba.save_pretrained(videomamba.create_model(cfg.pop("name"), **cfg), out)
    return out


# ------------------------------------------------------------------------------------- children
def child_index(model: str, video: str, index: str, length: float, stride: float, batch: int) -> dict:
    """Index one video in this process; peak RSS before (model loaded) and after."""
    from videomamba.apps.search import Index, WindowSpec, load_embedder

    import torch

    emb = load_embedder(model, device="cpu")
    c = emb.clip
    emb.embed_video(torch.zeros(batch, 3, c.num_frames, c.img_size, c.img_size))   # warm-up, as for the raw rate
    before = peak_rss_mb()
    t0 = time.perf_counter()
    with Index.open(index, emb, window=WindowSpec(length, stride)) as ix:
        rep = ix.add([video], emb, batch_size=batch, progress=False)
    secs = time.perf_counter() - t0
    assert not rep.skipped, rep.skipped
    return {"windows": rep.windows_embedded, "seconds": secs, "clips_per_s": rep.windows_embedded / secs,
            "peak_rss_mb_model_loaded": before, "peak_rss_mb": peak_rss_mb()}


def child_raw(model: str, batch: int, clips: int) -> dict:
    """The model alone: batches of random input of the model's geometry, no decoding, no storage."""
    import torch

    from videomamba.apps.search import load_embedder

    emb = load_embedder(model, device="cpu")
    c = emb.clip
    x = torch.randn(batch, 3, c.num_frames, c.img_size, c.img_size)
    emb.embed_video(x)                                              # warm-up (kernel build, allocator)
    n = 0
    t0 = time.perf_counter()
    while n < clips:
        emb.embed_video(x)
        n += batch
    secs = time.perf_counter() - t0
    return {"clips": n, "seconds": secs, "clips_per_s": n / secs}


def run_child(fn: str, **kw) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_search as b; "
            f"print('RESULT' + json.dumps(b.{fn}(**{kw!r})))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.split("RESULT", 1)[1].strip())


# -------------------------------------------------------------------------------------- commands
def cmd_memory(args) -> None:
    work = Path(args.work)
    model = save_model(args.model, work / f"model_{args.model}")
    rows = []
    for minutes in args.minutes:
        video = work / f"long_{minutes}min.mp4"
        if not video.exists():
            t0 = time.perf_counter()
            make_long_video(video, minutes)
            print(f"made {video.name} in {time.perf_counter() - t0:.0f} s")
        index = work / f"index_mem_{minutes}"
        if index.exists():
            import shutil
            shutil.rmtree(index)
        r = run_child("child_index", model=str(model), video=str(video), index=str(index), length=args.window,
                      stride=args.stride, batch=args.batch_size)
        r["minutes"] = minutes
        rows.append(r)
        print(f"{minutes:>4} min: {r['windows']} windows, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(model loaded: {r['peak_rss_mb_model_loaded']:.0f} MB), {r['clips_per_s']:.1f} clips/s")
    peaks = [r["peak_rss_mb"] for r in rows]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    write_result("memory", {
        "what": "peak RSS of a fresh process indexing one synthetic video of each length (h264, 96x96, 8 fps)",
        "command": "python benchmarks/bench_search.py memory",
        "model": MODELS[args.model], "window_s": args.window, "stride_s": args.stride,
        "frames_per_window": MODELS[args.model]["num_frames"], "batch_size": args.batch_size,
        "runs": rows, "peak_rss_spread": spread, "flat_within_10_percent": spread <= 0.10,
        "decoded_size_of_longest_mb": max(args.minutes) * 60 * 8 * 96 * 96 * 3 / 2**20,
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    })


THROUGHPUT_MINUTES = {"demo": 10, "tiny": 2}     # of video per model: a few hundred windows, or ~60 for tiny


def cmd_throughput(args) -> None:
    work = Path(args.work)
    out = {"what": "indexer clips/s (decode + preprocess + embed + SQLite + FAISS, timed over Index.add) against "
                   "the model alone on random input of the same shape and batch size; both after one warm-up batch",
           "command": "python benchmarks/bench_search.py throughput",
           "window_s": args.window, "stride_s": args.stride, "batch_size": args.batch_size, "models": {},
           "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    for preset in args.models:
        minutes = args.minutes or THROUGHPUT_MINUTES[preset]
        video = work / f"long_{minutes}min.mp4"
        if not video.exists():
            make_long_video(video, minutes)
        model = save_model(preset, work / f"model_{preset}")
        index = work / f"index_tp_{preset}"
        if index.exists():
            import shutil
            shutil.rmtree(index)
        idx = run_child("child_index", model=str(model), video=str(video), index=str(index), length=args.window,
                        stride=args.stride, batch=args.batch_size)
        raw = run_child("child_raw", model=str(model), batch=args.batch_size, clips=idx["windows"])
        overhead = 1 - idx["clips_per_s"] / raw["clips_per_s"]
        out["models"][preset] = {"config": MODELS[preset], "video_minutes": minutes, "indexer": idx, "raw": raw,
                                 "overhead": overhead}
        print(f"{preset}: indexer {idx['clips_per_s']:.2f} clips/s, raw {raw['clips_per_s']:.2f} clips/s, "
              f"overhead {100 * overhead:.1f} %")
    write_result("throughput", out)


def synthetic_vectors(n: int, d: int, seed: int = 0, clusters: int = 1000, intrinsic: int = 32) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres, spread within ``intrinsic``-dimensional subspaces:
    embeddings cluster and have a low intrinsic dimension (isotropic noise in all d dimensions would make
    every neighbour equally far, which no index - and no real model - faces)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    basis = rng.standard_normal((clusters, intrinsic, d)).astype(np.float32) / math.sqrt(intrinsic)
    out = np.empty((n, d), np.float32)
    step = 50_000
    for i in range(0, n, step):
        m = min(step, n - i)
        c = rng.integers(0, clusters, m)
        z = rng.standard_normal((m, intrinsic)).astype(np.float32)
        x = centres[c] + 0.8 * np.einsum("mi,mid->md", z, basis[c])
        out[i:i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _queries(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), n, replace=False)] + 0.3 * rng.standard_normal((n, x.shape[1])).astype(np.float32) \
        / math.sqrt(x.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def cmd_latency(args) -> None:
    import faiss

    from videomamba.apps.search.vectors import RECALL_K, VectorStore, exact_search, recall_at_k

    rows = []
    for n in args.sizes:
        x = synthetic_vectors(n, args.dim, seed=n)
        ids = np.arange(n, dtype=np.int64)
        q = _queries(x, args.queries, seed=1)                       # held out from calibration's queries
        faiss.omp_set_num_threads(args.threads)
        truth = exact_search(x, q, RECALL_K)
        for kind in args.kinds:
            if kind == "hnsw" and n > args.hnsw_max:
                continue
            faiss.omp_set_num_threads(args.threads)
            t0 = time.perf_counter()
            store = VectorStore.build(x, ids, kind)
            build_s = time.perf_counter() - t0
            faiss.omp_set_num_threads(1)                            # one query at a time, one thread
            for i in range(10):
                store.search(q[i:i + 1], RECALL_K)
            lat = []
            found = []
            for i in range(len(q)):
                t = time.perf_counter()
                found.append(store.search(q[i:i + 1], RECALL_K)[1][0])
                lat.append(time.perf_counter() - t)
            lat_ms = sorted(1000 * v for v in lat)
            row = {"n": n, "dim": args.dim, "kind": kind, "params": {k: v for k, v in store.params.items()
                                                                      if k in ("nlist", "nprobe", "efSearch")},
                   "build_s": build_s, "latency_ms_median": statistics.median(lat_ms),
                   "latency_ms_p95": lat_ms[int(0.95 * (len(lat_ms) - 1))],
                   "recall_at_10": recall_at_k(np.stack(found), truth),
                   "bytes_per_vector": store.memory_bytes() / n}
            rows.append(row)
            if kind == "ivf":
                ivf_nprobe = store.params["nprobe"]
            if kind == "ivfpq":
                rows.append(_rerank_row(store, x, q, truth, args, ivf_nprobe if "ivf" in args.kinds else None))
            print(f"n={n:>8} {kind:6s} median {row['latency_ms_median']:.3f} ms p95 {row['latency_ms_p95']:.3f} ms "
                  f"recall@10 {row['recall_at_10']:.3f} {row['bytes_per_vector']:.0f} B/vector "
                  f"(build {build_s:.0f} s) {row['params']}", flush=True)
            del store
    out = {"what": "single-query latency (1 thread), recall@10 against exact search and serialised bytes per "
                   "vector, on clustered synthetic unit vectors",
           "command": "python benchmarks/bench_search.py latency", "dim": args.dim, "queries": args.queries,
           "rows": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    out["projection_1e8"] = project(rows, 10**8)
    write_result("latency", out)


def _rerank_row(store, x: np.ndarray, q: np.ndarray, truth: np.ndarray, args, nprobe: int | None) -> dict:
    """IVF-PQ shortlist of ``SHORTLIST`` re-ranked by exact inner products with the full vectors, read
    from a file on disk (memory-mapped): codes in memory, vectors on disk."""
    from videomamba.apps.search.vectors import RECALL_K, recall_at_k

    n, d = x.shape
    path = Path(args.work) / f"vectors_{n}_{d}.f32"
    path.parent.mkdir(parents=True, exist_ok=True)
    x.tofile(path)
    disk = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    if nprobe is not None:
        store.index.nprobe = int(nprobe)
    lat, found = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        cand = store.search(q[i:i + 1], SHORTLIST)[1][0]
        cand = np.sort(cand[cand >= 0])
        scores = np.asarray(disk[cand]) @ q[i]
        found.append(cand[np.argsort(-scores)[:RECALL_K]])
        lat.append(time.perf_counter() - t)
    lat_ms = sorted(1000 * v for v in lat)
    del disk
    path.unlink()
    return {"n": n, "dim": d, "kind": "ivfpq+rerank", "params": {"nprobe": int(store.index.nprobe),
                                                                 "shortlist": SHORTLIST},
            "latency_ms_median": statistics.median(lat_ms), "latency_ms_p95": lat_ms[int(0.95 * (len(lat_ms) - 1))],
            "recall_at_10": recall_at_k(np.stack(found), truth),
            "bytes_per_vector": store.memory_bytes() / n, "disk_bytes_per_vector": 4 * d}


SHORTLIST = 100


def project(rows: list[dict], target: int, shard_counts=(1, 4, 16)) -> dict | None:
    """Memory and latency at ``target`` vectors with product-quantised IVF codes, sharded over machines.

    Design: IVF-PQ codes in memory give a shortlist of 100, re-ranked exactly with the full vectors
    read from local disk (the ``ivfpq+rerank`` rows). Memory: bytes per vector measured at the largest
    size (codes + ids + lists) times the vectors per shard; the full vectors (4 d bytes each) stay on
    disk. Latency: shards search in parallel, so a query costs one shard's search; with nlist ~ 4 sqrt(N)
    and a fixed nprobe, a shard's search grows like sqrt(N), so the measured latency at the largest size
    is scaled by sqrt(N_shard / N_measured) (conservative: calibration found smaller nprobe at larger
    sizes here). The merge of k results per shard and network time are not included.
    """
    pq = sorted((r for r in rows if r["kind"] == "ivfpq+rerank"), key=lambda r: r["n"])
    if not pq:
        return None
    b = pq[-1]
    bpv = b["bytes_per_vector"]
    out = {"vectors": target, "measured_at": b["n"], "bytes_per_vector": bpv,
           "recall_at_10_measured": b["recall_at_10"], "total_memory_gb": bpv * target / 1e9,
           "disk_gb_total": b.get("disk_bytes_per_vector", 0) * target / 1e9, "shards": []}
    for s in shard_counts:
        per = target / s
        f = math.sqrt(per / b["n"])
        out["shards"].append({"machines": s, "vectors_per_machine": per, "memory_gb_per_machine": bpv * per / 1e9,
                              "disk_gb_per_machine": b.get("disk_bytes_per_vector", 0) * per / 1e9,
                              "latency_ms_median": b["latency_ms_median"] * f, "latency_ms_p95": b["latency_ms_p95"] * f})
    out["assumptions"] = " ".join(project.__doc__.split("\n\n", 1)[1].split())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    work_default = str(Path(tempfile.gettempdir()) / "videomamba_bench_search")
    m = sub.add_parser("memory")
    m.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    m.add_argument("--model", default="demo", choices=list(MODELS))
    m.add_argument("--window", type=float, default=4.0)
    m.add_argument("--stride", type=float, default=4.0)
    m.add_argument("--batch-size", type=int, default=8)
    m.add_argument("--work", default=work_default)
    t = sub.add_parser("throughput")
    t.add_argument("--models", nargs="+", default=["demo", "tiny"], choices=list(MODELS))
    t.add_argument("--minutes", type=float, default=None, help="video length (default: 10 min demo, 2 min tiny)")
    t.add_argument("--window", type=float, default=4.0)
    t.add_argument("--stride", type=float, default=2.0)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--work", default=work_default)
    lt = sub.add_parser("latency")
    lt.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    lt.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw", "ivfpq"])
    lt.add_argument("--dim", type=int, default=512, help="the video-text model's joint space (512)")
    lt.add_argument("--queries", type=int, default=300)
    lt.add_argument("--threads", type=int, default=2, help="threads for building and ground truth")
    lt.add_argument("--hnsw-max", type=int, default=10**5, help="largest size to build HNSW at (slow on few cores)")
    lt.add_argument("--work", default=work_default)
    mk = sub.add_parser("make-long-video")
    mk.add_argument("out")
    mk.add_argument("--minutes", type=float, default=60)
    args = p.parse_args(argv)
    if args.cmd == "memory":
        cmd_memory(args)
    elif args.cmd == "throughput":
        cmd_throughput(args)
    elif args.cmd == "latency":
        cmd_latency(args)
    else:
        make_long_video(Path(args.out), args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
