#!/usr/bin/env python
"""Inference time of a VideoMamba model, eager vs ``torch.compile`` (Inductor), on CPU.

    python benchmarks/bench_compile.py                    # tiny 8x224 and 4x112, batch 1
    python benchmarks/bench_compile.py --repeats 5 --configs tiny_f4_112

Both run the same weights in eval mode under ``torch.no_grad``: eager through the compiled CPU
kernels (``videomamba.ops``), compiled with ``torch.compile(model, fullgraph=True)``, where the
kernels are the custom ops of ``videomamba/ops/library.py`` and Inductor generates the rest
(projections, norms, embeddings, head). After a warm-up (the compiled model's first call
compiles; its time is reported apart), every round runs each mode once (interleaved, so that
load from other processes hits both alike), and the median of the rounds is reported.

Writes benchmarks/results/compile.json (repo-relative paths only) and prints the ratios.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import videomamba
from videomamba.fileio import atomic_write_text
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "compile.json"
# name -> (preset, frames, img_size)
CONFIGS = {
    "tiny_f8_224": ("videomamba_tiny", 8, 224),
    "tiny_f4_112": ("videomamba_tiny", 4, 112),
}


def bench_config(name: str, repeats: int, warmup: int, batch: int) -> dict:
    preset, frames, size = CONFIGS[name]
    torch.manual_seed(0)
    model = videomamba.create_model(preset, num_frames=frames, img_size=size).eval()
    x = torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        out_c = compiled(x)
        compile_s = time.perf_counter() - t0
        out_e = model(x)
        diff = (out_c - out_e).abs().max().item()
        fns = {"eager": lambda: model(x), "compiled": lambda: compiled(x)}
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = (frames // model.cfg.tubelet_size) * (size // model.cfg.patch_size) ** 2 + model.cfg.num_cls
    return {"config": name, "model": preset, "frames": frames, "img_size": size, "batch": batch,
            "tokens": tokens, "eager_s": med["eager"], "compiled_s": med["compiled"],
            "speedup": med["eager"] / med["compiled"], "first_compiled_call_s": compile_s,
            "max_abs_diff": diff, "eager_all_s": times["eager"], "compiled_all_s": times["compiled"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for name in args.configs:
        r = bench_config(name, args.repeats, args.warmup, args.batch)
        rows.append(r)
        print(f"{name:12s} tokens {r['tokens']:5d}  eager {r['eager_s'] * 1e3:8.1f} ms  "
              f"compiled {r['compiled_s'] * 1e3:8.1f} ms  eager/compiled {r['speedup']:.2f}x  "
              f"(first compiled call {r['first_compiled_call_s']:.0f} s, max |diff| "
              f"{r['max_abs_diff']:.2g})", flush=True)
    result = {
        "script": "benchmarks/bench_compile.py",
        "command": "python benchmarks/bench_compile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "timing": f"median of {args.repeats} interleaved rounds after {args.warmup} warm-up rounds; "
                  "eval mode, torch.no_grad, fp32",
        "results": rows,
    }
    out = Path(args.out)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    try:
        shown = out.resolve().relative_to(ROOT)
    except ValueError:
        shown = out
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
