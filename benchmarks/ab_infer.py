"""Inference (or training-step) speed of this tree against an earlier revision, in one run, interleaved.

    python benchmarks/ab_infer.py --base REV [--new REV] [--models videomamba_tiny]
                                  [--frames 8 16 32 64] [--batch 1 8] [--dtype fp32 bf16]
                                  [--mode infer|train] [--variants default ckpt FIELD=VALUE ...]
                                  [--rounds 3] [--out benchmarks/results/ab_infer.json]

Each configuration is measured by the benchmark harness's own child (``harness.child``: a fresh
process, warm-up, median of the timed runs, as a user runs it), once per round for each side, the
two sides in alternating order (base first in even rounds, this tree first in odd ones), so slow
drifts of a shared machine hit both alike. Both revisions (``--new`` defaults to HEAD) are checked
out into temporary git worktrees and imported from there, so the working tree may change while
the run goes on. The machine's matmul and copy ceilings
are measured once at the start, and every inference configuration gets its roofline
(``benchmarks/harness/roofline.py``): the figure reported per side is the median over rounds of
the per-round medians, and measured / roofline from that. ``--mode train`` times a training step
(forward, backward, AdamW) instead, and ``--variants`` measures each configuration in several
model settings on both sides: ``default``, ``ckpt`` (gradient checkpointing), a VideoMambaConfig
override ``FIELD=VALUE``, or several joined with ``,`` (``ckpt,mixer_recompute=never``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import analysis, workloads  # noqa: E402
from harness.cli import _parse_set  # noqa: E402
from harness.runner import describe_machine, run_spec  # noqa: E402
from harness.suite import _attach_flops, _m, micro_spec, save_results  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git revision to compare against (e.g. a commit or tag)")
    p.add_argument("--new", default="HEAD", help="git revision measured against it (default HEAD)")
    p.add_argument("--models", nargs="+", default=["videomamba_tiny"])
    p.add_argument("--frames", nargs="+", type=int, default=[8, 16, 32, 64])
    p.add_argument("--batch", nargs="+", type=int, default=[1])
    p.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    p.add_argument("--mode", default="infer", choices=("infer", "train"),
                   help="inference, or a training step (forward, backward, AdamW)")
    p.add_argument("--variants", nargs="+", default=["default"],
                   help="model settings measured on both sides: default, ckpt, FIELD=VALUE, joined with ','")
    p.add_argument("--rounds", type=int, default=3, help="measurements per side and configuration")
    p.add_argument("--repeats", type=int, default=3, help="timed runs inside each measurement")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    p.add_argument("--out", default=str(HERE / "results" / "ab_infer.json"))
    return p.parse_args(argv)


def _git(*args, cwd=ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def side_env(src: Path) -> dict:
    """A side's environment: its tree's ``src`` on the path and its own kernel cache next to it.
    Sharing the user's cache, two revisions with the same kernel sources would share one build
    directory, and (in revisions before the sources were staged into it) each switch of side
    rebuilt the kernels before the child's timed runs, whose peak RSS then held the compiler's."""
    return {**_clean_env(), "PYTHONPATH": str(src), "VIDEOMAMBA_EXT_DIR": str(Path(src).parent / ".ext")}


def _measure(spec: dict, src: Path, timeout: float) -> dict:
    rec = run_spec(spec, timeout_s=timeout, env=side_env(src))
    return {k: rec.get(k) for k in ("status", "median_s", "cpu_share", "peak_rss_mb", "error")}


def parse_variant(text: str) -> dict:
    """``default`` / ``ckpt`` / ``FIELD=VALUE``, joined with ``,`` -> the spec fields it sets."""
    grad_ckpt, overrides = False, {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "default":
            continue
        if part == "ckpt":
            grad_ckpt = True
        elif "=" in part:
            k, v = _parse_set(part)
            overrides[k] = v
        else:
            raise ValueError(f"a variant is 'default', 'ckpt' or FIELD=VALUE (joined with ','), got {part!r}")
    return {"grad_ckpt": grad_ckpt, "overrides": overrides or None}


def _clean_env() -> dict:
    import os
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIDEOMAMBA_EXT_DIR")}


def summarize(specs: list[dict], runs: dict, micro: dict) -> list[dict]:
    """One row per configuration: each side's median over rounds of its per-round medians, the
    speed-up (base time / new time) and each side's time over the roofline. ``runs`` maps a
    configuration id to ``{"base": [record, ...], "new": [...]}`` (records of :func:`_measure`)."""
    rows = []
    for spec in specs:
        sid = workloads.spec_id(spec)
        fake = {"spec": spec}
        _attach_flops(fake, spec)
        rf = analysis.roofline(fake, micro)
        row = {"id": sid, "spec": spec, "roofline_s": rf["roofline_s"] if rf else None}
        for side in ("base", "new"):
            recs = runs[sid][side]
            ts = [x["median_s"] for x in recs if x["status"] == "ok"]
            med = statistics.median(ts) if ts else None
            row[side] = {"median_s": med, "per_round_s": ts,
                         "cpu_share": [x.get("cpu_share") for x in recs],
                         "peak_rss_mb": [x.get("peak_rss_mb") for x in recs],
                         "median_peak_rss_mb": statistics.median(mb) if (mb := [x["peak_rss_mb"] for x in recs
                                                                             if x.get("peak_rss_mb")]) else None,
                         "over_roofline": med / rf["roofline_s"] if med and rf else None,
                         "errors": [x.get("error") for x in recs if x["status"] != "ok"]}
        b, n = row["base"]["median_s"], row["new"]["median_s"]
        row["speedup"] = b / n if b and n else None
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    revs = {"base": _git("rev-parse", args.base), "new": _git("rev-parse", args.new)}
    variants = [parse_variant(v) for v in args.variants]
    specs = [{**_m(m, f, mode=args.mode, batch=b, dtype=d, **v), "repeats": args.repeats, "warmup": 1}
             for m in args.models for b in args.batch for d in args.dtype for f in args.frames
             for v in variants]
    with tempfile.TemporaryDirectory(prefix="vm_ab.") as tmp:
        trees = {side: Path(tmp) / side for side in revs}
        for side, rev in revs.items():
            _git("worktree", "add", "--detach", "-f", str(trees[side]), rev)
        try:
            sides = {side: tree / "src" for side, tree in trees.items()}
            t0 = time.time()
            print("[micro] matmul and copy ceilings", flush=True)
            micro = run_spec(micro_spec("cpu"), timeout_s=300, env=_clean_env())
            for side, src in sides.items():   # build each side's kernel outside the timed runs
                run_spec({**_m("toy_videomamba", 2, img=32), "repeats": 1}, timeout_s=900,
                         env=side_env(src))
            runs: dict[str, dict[str, list]] = {workloads.spec_id(s): {"base": [], "new": []} for s in specs}
            for r in range(args.rounds):
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for spec in specs:
                    sid = workloads.spec_id(spec)
                    for side in order:
                        rec = _measure(spec, sides[side], args.timeout)
                        runs[sid][side].append(rec)
                        print(f"[round {r + 1}/{args.rounds}] {sid} {side}: {rec['status']} "
                              f"{(rec.get('median_s') or float('nan')):.3f} s, cpu share "
                              f"{rec.get('cpu_share') or float('nan'):.2f}", flush=True)
        finally:
            for tree in trees.values():
                _git("worktree", "remove", "--force", str(tree))
    rows = summarize(specs, runs, micro)
    data = {"script": "benchmarks/ab_infer.py", "command": "python benchmarks/ab_infer.py " + " ".join(argv or sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": time.time() - t0,
            "base": revs["base"], "new": revs["new"],
            "machine": describe_machine(), "micro": micro, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_results(out, data)
    print(f"\n{'configuration':60s} {'base s':>8s} {'new s':>8s} {'speed-up':>8s} {'new/roofline':>12s}"
          f" {'base MB':>8s} {'new MB':>8s}")
    for row in rows:
        fmt = lambda v, f: f"{v:{f}}" if v is not None else "-"  # noqa: E731
        print(f"{row['id']:60s} {fmt(row['base']['median_s'], '8.3f'):>8s} {fmt(row['new']['median_s'], '8.3f'):>8s} "
              f"{fmt(row['speedup'], '7.2f'):>7s}x {fmt(row['new']['over_roofline'], '11.2f'):>11s}x"
              f" {fmt(row['base']['median_peak_rss_mb'], '8.0f'):>8s} {fmt(row['new']['median_peak_rss_mb'], '8.0f'):>8s}")
    print(f"results: {out}")
    return data


if __name__ == "__main__":
    main()
