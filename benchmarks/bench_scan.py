#!/usr/bin/env python
"""Selective-scan speed on CPU: the reference loop vs each fast path, forward and forward+backward.

    python benchmarks/bench_scan.py                 # target point + sweep (a few minutes)
    python benchmarks/bench_scan.py --quick         # target point only
    python benchmarks/bench_scan.py --threads 1 --clock cpu   # robust to other processes

Glossary: B batch, E channels, L length, N state size.

Writes benchmarks/results/scan_<date>.json and prints a table. Every configuration is timed in
interleaved rounds (each implementation once per round, after a warm-up), and the median is
reported, so that load from other processes hits all of them alike; ratios are only taken
within one run. ``--clock cpu`` (one thread) times with the thread's CPU clock instead of the
wall clock, so time spent descheduled by other processes is not counted.

The roofline row is a floor (``benchmarks/harness/roofline.py``): the larger of the scan's least
arithmetic (4 operations per L*E*N state element -- the exp, two products, one multiply-add -- at
the multiply-add rate of a ``torch.mm`` measured in this process) and its least memory traffic
(u, delta, z, B, C, A, D, the delta bias in, y out, at the copy bandwidth measured here for a
working set no larger). No implementation can run below it. Targets (at B=1, E=384, N=16,
L=3137): forward >= 30x the reference, forward+backward >= 20x; the forward's distance from the
roofline is reported.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file

from harness import roofline as rl  # noqa: E402
from videomamba.ops import cpu_kernel, selective_scan_ref
from videomamba.ops.conv import causal_conv1d_ref
from videomamba.ops.norm import rms_norm_ref
from videomamba.ops.scan_torch import selective_scan_torch
from harness.machine import cpu_name  # noqa: E402

POINT = (384, 3137)
SWEEP_L = (1024, 3137, 6273, 12545)
SWEEP_E = (384, 768)
N = 16
# Past E * L of this, a slow path is skipped; the whole L x E grid stays in (its largest case, the
# reference's forward+backward at E=768, L=12545, takes ~16 s a run).
SLOW_MAX = {(impl, mode): max(SWEEP_E) * max(SWEEP_L) for impl in ("ref", "torch") for mode in ("fwd", "fwd+bwd")}
CLOCK = time.perf_counter


def inputs(E, L, seed=0):
    """Trained-like values: softplus(delta + bias) around 0.01..1, A = -(1..N)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(u=r(1, E, L), delta=r(1, E, L) * 0.5 - 2.0,
                A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1),
                B=r(1, N, L), C=r(1, N, L), D=r(E), z=r(1, E, L), delta_bias=0.5 * r(E))


def scan_fn(impl):
    if impl == "ref":
        return selective_scan_ref
    if impl == "torch":
        return selective_scan_torch
    return cpu_kernel.selective_scan_cpu


def make_case(impl, mode, x):
    fn = scan_fn(impl)
    if mode == "fwd":
        def run():
            with torch.no_grad():
                fn(**x, delta_softplus=True)
        return run
    xg = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    cot = torch.randn(x["u"].shape)

    def run():
        out = fn(**xg, delta_softplus=True)
        torch.autograd.backward(out, cot)
        for v in xg.values():
            v.grad = None
    return run


def timed_rounds(cases: dict, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        for f in cases.values():
            f()
    runs = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            t0 = CLOCK()
            f()
            runs[k].append((CLOCK() - t0) * 1e3)
    return runs


def roofline_row(E, L, peaks):
    """The floor of one forward scan at (B=1, E, L, N) on this machine (``peaks``: measured in this process)."""
    f = rl.floor_s(rl.scan_min_ops(1, L, E, N), peaks["matmul_fp32_flops"] / 2.0, rl.scan_min_bytes(1, L, E, N),
                   peaks["copy_bytes_per_s_by_size"])
    return dict(E=E, L=L, N=N, B=1, impl="roofline", mode="fwd", median_ms=1e3 * f["floor_s"],
                compute_ms=1e3 * f["compute_s"], memory_ms=1e3 * (f["memory_s"] or 0.0), bound=f["bound"])


def bench_scan(E, L, impls, rounds, warmup):
    x = inputs(E, L)
    cases, skipped = {}, {}
    for impl in impls:
        for mode in ("fwd", "fwd+bwd"):
            if E * L > SLOW_MAX.get((impl, mode), float("inf")):
                skipped[(impl, mode)] = "too slow at this size"
                continue
            cases[(impl, mode)] = make_case(impl, mode, x)
    t0 = time.perf_counter()
    runs = timed_rounds(cases, rounds, warmup)
    print(f"  E={E} L={L}: {len(cases)} cases x {rounds} rounds in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rows = []
    for (impl, mode), ts in runs.items():
        rows.append(dict(E=E, L=L, N=N, B=1, impl=impl, mode=mode, median_ms=statistics.median(ts),
                         runs_ms=[round(t, 3) for t in ts]))
    for (impl, mode), why in skipped.items():
        rows.append(dict(E=E, L=L, N=N, B=1, impl=impl, mode=mode, median_ms=None, skipped=why))
    return rows


def bench_aux(rounds, warmup):
    """Causal conv (F.conv1d vs the CPU kernel) and RMSNorm (reference vs F.rms_norm)."""
    E, L = POINT
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, E, L, generator=g)
    w, b = torch.randn(E, 4, generator=g), torch.randn(E, generator=g)
    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, b))
    cot = torch.randn(1, E, L, generator=g)
    h = torch.randn(1, L, E // 2, generator=g)
    nw = torch.randn(E // 2, generator=g)
    cases = {
        ("conv ref (F.conv1d)", "fwd"): lambda: causal_conv1d_ref(x, w, b, "silu"),
        ("conv ref (F.conv1d)", "fwd+bwd"):
            lambda: torch.autograd.grad(causal_conv1d_ref(xg, wg, bg, "silu"), (xg, wg, bg), cot),
        ("rms_norm ref", "fwd"): lambda: rms_norm_ref(h, nw),
        ("F.rms_norm", "fwd"): lambda: F.rms_norm(h, (E // 2,), nw, 1e-5),
    }
    if cpu_kernel.load() is not None:
        cases[("conv cpu kernel", "fwd")] = lambda: cpu_kernel.causal_conv1d_cpu(x, w, b, "silu")
        cases[("conv cpu kernel", "fwd+bwd")] = lambda: torch.autograd.grad(
            cpu_kernel.causal_conv1d_cpu(xg, wg, bg, "silu"), (xg, wg, bg), cot)
    runs = timed_rounds(cases, rounds, warmup)
    return [dict(E=E, L=L, impl=k[0], mode=k[1], median_ms=statistics.median(v),
                 runs_ms=[round(t, 3) for t in v]) for k, v in runs.items()]


REPO = Path(__file__).resolve().parents[1]


def find(rows, E, L, impl, mode):
    for r in rows:
        if (r["E"], r["L"], r["impl"], r["mode"]) == (E, L, impl, mode):
            return r["median_ms"]
    return None


def targets(rows):
    E, L = POINT
    ref_f, ref_fb = find(rows, E, L, "ref", "fwd"), find(rows, E, L, "ref", "fwd+bwd")
    cpu_f, cpu_fb = find(rows, E, L, "cpu", "fwd"), find(rows, E, L, "cpu", "fwd+bwd")
    floor = find(rows, E, L, "roofline", "fwd")
    if None in (ref_f, ref_fb, cpu_f, cpu_fb, floor):
        return {"note": "CPU kernel or reference missing at the target point"}
    t = {"fwd_speedup_vs_ref": ref_f / cpu_f, "fwd_over_roofline": cpu_f / floor,
         "fwdbwd_speedup_vs_ref": ref_fb / cpu_fb}
    t["pass"] = {"fwd >= 30x ref": t["fwd_speedup_vs_ref"] >= 30,
                 "fwd+bwd >= 20x ref": t["fwdbwd_speedup_vs_ref"] >= 20}
    torch_f, torch_fb = find(rows, E, L, "torch", "fwd"), find(rows, E, L, "torch", "fwd+bwd")
    if torch_f and torch_fb:
        t["torch_path_fwd_speedup_vs_ref"] = ref_f / torch_f
        t["torch_path_fwdbwd_speedup_vs_ref"] = ref_fb / torch_fb
    return t


def print_table(rows):
    print(f"{'E':>5} {'L':>6} {'impl':<20} {'mode':<8} {'median ms':>10} {'x ref':>7} {'/ roofline':>10}")
    for r in rows:
        if r.get("median_ms") is None:
            print(f"{r['E']:>5} {r['L']:>6} {r['impl']:<20} {r['mode']:<8} {'skipped':>10}  "
                  f"({r['skipped']})")
            continue
        ref = find(rows, r["E"], r["L"], "ref", r["mode"])
        floor = find(rows, r["E"], r["L"], "roofline", "fwd")
        speed = f"{ref / r['median_ms']:7.1f}" if ref and r["impl"] not in ("ref", "roofline") else ""
        over = f"{r['median_ms'] / floor:10.2f}" if floor and r["mode"] == "fwd" and r["impl"] != "roofline" else ""
        print(f"{r['E']:>5} {r['L']:>6} {r['impl']:<20} {r['mode']:<8} {r['median_ms']:10.2f} "
              f"{speed:>7} {over:>10}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the target point only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds at the target point")
    ap.add_argument("--sweep-rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this thread's CPU time (needs --threads 1)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu measures one thread: use --threads 1")
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    mod = cpu_kernel.load()
    load_s = time.perf_counter() - t0
    impls = ["ref", "torch"] + (["cpu"] if mod is not None else [])
    if mod is None:
        print(f"CPU kernel unavailable: {cpu_kernel.load_error()}")

    peaks = rl.measure_peaks(torch, "cpu", reps=5, matmul_sizes=(1024, 2048))
    rows = bench_scan(*POINT, impls, args.rounds, warmup=2) + [roofline_row(*POINT, peaks)]
    if not args.quick:
        for E in SWEEP_E:
            for L in SWEEP_L:
                if (E, L) != POINT:
                    rows += bench_scan(E, L, impls, args.sweep_rounds, warmup=1) + [roofline_row(E, L, peaks)]
    aux = bench_aux(args.rounds, warmup=2)
    rows.sort(key=lambda r: (r["E"], r["L"], r["impl"] != "roofline", r["mode"], r["impl"]))

    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": args.threads, "clock": args.clock,
        "machine": platform.machine(), "cpu": cpu_name(), "peaks": peaks,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": load_start, "load_average_at_end": None,
        "kernel": {"available": mod is not None, "error": cpu_kernel.load_error(),
                   "first_build_s": cpu_kernel.build_seconds(), "load_s": load_s},
        "scan": rows, "aux": aux, "targets": targets(rows),
    }
    if hasattr(os, "getloadavg"):
        result["load_average_at_end"] = os.getloadavg()
    print_table(rows)
    print()
    for r in aux:
        print(f"{r['impl']:<22} {r['mode']:<8} {r['median_ms']:8.2f} ms")
    print()
    print(json.dumps(result["targets"], indent=2))
    suffix = "" if (args.threads, args.clock) == (2, "wall") else f"_t{args.threads}_{args.clock}"
    out = args.out or (Path(__file__).resolve().parent / "results"
                       / f"scan_{_dt.date.today()}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {os.path.relpath(out.resolve(), REPO) if out.resolve().is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
