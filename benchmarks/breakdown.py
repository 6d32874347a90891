"""Where a VideoMamba inference pass spends its time, part by part, against the roofline's parts.

    python benchmarks/breakdown.py [--models videomamba_tiny videomamba_small] [--frames 8 64]
                                   [--batch 1] [--dtype fp32 bf16] [--passes 3]
                                   [--out benchmarks/results/breakdown.json]

Each configuration runs in the benchmark harness's own child (``harness.child``: a fresh process,
warm-up, the median of the timed runs, as a user runs it), which then runs ``--passes`` more
passes with their time split (``harness.child.time_split``): the compiled scan, conv and RMSNorm
kernels, torch's matrix products, its other operators, and the rest (Python, dispatch). The
split passes pay for their own timing (a Python call per operator), so they run slower than the
timed ones; the kernels' and matrix products' seconds are what those calls took, and the page
sets them against their floors from the roofline (``harness.roofline.model_roofline``): the
scans' least operations at the fp32 multiply-add rate and the linear layers' multiply-adds at the
matmul rate, both measured at the start of the run. Writes the JSON (``--out``) and a Markdown
page next to it (same name, ``.md``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import analysis, workloads  # noqa: E402
from harness.child import SPLIT_PARTS  # noqa: E402
from harness.runner import describe_machine, run_spec  # noqa: E402
from harness.suite import _attach_flops, _m, micro_spec, save_results  # noqa: E402
from videomamba.fileio import atomic_write_text  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["videomamba_tiny", "videomamba_small"])
    p.add_argument("--frames", nargs="+", type=int, default=[8, 64])
    p.add_argument("--batch", nargs="+", type=int, default=[1])
    p.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    p.add_argument("--passes", type=int, default=3, help="split passes per configuration (median per part)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    p.add_argument("--out", default=str(HERE / "results" / "breakdown.json"))
    return p.parse_args(argv)


def row_for(spec: dict, rec: dict, micro: dict) -> dict:
    """One configuration's figures: the timed median, its roofline, and per part of the split
    passes its seconds and (scan kernel, matrix products) its time over its floor."""
    fake = {"spec": spec}
    _attach_flops(fake, spec)
    rf = analysis.roofline(fake, micro) or {}
    split = rec.get("split") or {}
    parts = split.get("parts_s") or {}
    floors = {"scan_kernel": rf.get("scan_s"), "matmul": rf.get("linear_s")}
    med = rec.get("median_s")
    return {"id": workloads.spec_id(spec), "spec": spec, "status": rec.get("status"), "error": rec.get("error"),
            "median_s": med, "cpu_share": rec.get("cpu_share"), "roofline": rf or None,
            "over_roofline": med / rf["roofline_s"] if med and rf.get("roofline_s") else None,
            "split_wall_s": split.get("wall_s"), "parts_s": parts,
            "part_over_floor": {k: parts[k] / f for k, f in floors.items() if f and parts.get(k) is not None},
            "kernels_loaded": split.get("kernels_loaded"), "top_ops": split.get("top_ops")}


def page(data: dict) -> str:
    """The Markdown page of a run."""
    m = data["machine"]
    lines = [
        "# Where the inference time goes",
        "",
        f"`{data['command']}` on {m.get('cpu')} ({m.get('cores')} cores, torch {m.get('torch')}, "
        f"code `{m.get('git')}`), {data['date']}, {data['wall_s'] / 60:.1f} min.",
        "",
        "Timed: the median of the configuration's timed runs; roofline and its parts from "
        "`benchmarks/harness/roofline.py` with this run's measured matmul rates "
        f"(fp32 {data['micro'].get('matmul_fp32_flops', 0) / 1e9:.0f}, "
        f"bf16 {data['micro'].get('matmul_bf16_flops', 0) / 1e9:.0f} GFLOP/s). The parts come from "
        f"{data['passes']} further passes per configuration (median per part) in which every call "
        "into the compiled kernels and every torch operator was timed: those passes (`split wall`) "
        "run slower than the timed ones by the timing's own cost, which lands in `other ops` and "
        "`rest`. `×floor`: the part's seconds over its share of the roofline (the scans' 4 operations "
        "per state element at the fp32 multiply-add rate; the linear layers' multiply-adds at the "
        "matmul rate).",
        "",
        "| model | frames | batch | dtype | timed s | roofline s | timed / roofline | split wall s "
        "| scan kernel s (×floor) | matmul s (×floor) | conv kernel s | RMSNorm kernel s | other ops s | rest s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def s(x, f="{:.3f}"):
        return "-" if x is None else f.format(x)

    for r in data["rows"]:
        sp, p, x = r["spec"], r["parts_s"], r["part_over_floor"]
        if r["status"] != "ok":
            lines.append(f"| {sp['model']} | {sp['frames']} | {sp['batch']} | {sp['dtype']} | {r['status']}: "
                         f"{(r.get('error') or '')[:80]} |" + " |" * 9)
            continue
        lines.append(
            f"| {sp['model']} | {sp['frames']} | {sp['batch']} | {sp['dtype']} | {s(r['median_s'])} "
            f"| {s((r['roofline'] or {}).get('roofline_s'))} | {s(r['over_roofline'], '{:.2f}×')} "
            f"| {s(r['split_wall_s'])} "
            f"| {s(p.get('scan_kernel'))} ({s(x.get('scan_kernel'), '{:.1f}×')}) "
            f"| {s(p.get('matmul'))} ({s(x.get('matmul'), '{:.1f}×')}) "
            f"| {s(p.get('conv_kernel'))} | {s(p.get('norm_kernel'))} | {s(p.get('other_ops'))} | {s(p.get('rest'))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    specs = [{**_m(mdl, f, batch=b, dtype=d), "repeats": args.repeats, "warmup": 1, "split": args.passes}
             for mdl in args.models for b in args.batch for d in args.dtype for f in args.frames]
    t0 = time.time()
    print("[micro] matmul and copy ceilings", flush=True)
    micro = run_spec(micro_spec("cpu"), timeout_s=300)
    rows = []
    for spec in specs:
        rec = run_spec(spec, timeout_s=args.timeout)
        row = row_for(spec, rec, micro)
        rows.append(row)
        p = row["parts_s"]
        print(f"{row['id']}: {rec.get('status')} {(row['median_s'] or float('nan')):.3f} s"
              + "".join(f", {k} {p[k]:.3f}" for k in SPLIT_PARTS if k in p), flush=True)
    data = {"script": "benchmarks/breakdown.py",
            "command": "python benchmarks/breakdown.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": time.time() - t0,
            "passes": args.passes, "machine": describe_machine(), "micro": micro, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_results(out, data)
    atomic_write_text(out.with_suffix(".md"), page(data))
    print(f"results: {out} and {out.with_suffix('.md')}")
    return data


if __name__ == "__main__":
    main()
