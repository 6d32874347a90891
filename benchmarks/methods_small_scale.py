#!/usr/bin/env python
"""Small-scale demonstration of the training methods (self-distillation, masked pretraining, analyses) on the synthetic dataset (CPU only).

    python benchmarks/methods_small_scale.py [--out runs/methods] [--size 32] [--epochs 30] [--student-dim 64]

Every step is a ``videomamba`` CLI call (run in-process, recorded verbatim in the results):

1. ``make-synthetic``: the default synthetic dataset (8 order-dependent classes in 4
   forward/backward pairs, 30 train / 10 val videos each, 16 frames) at ``--size`` px.
2. (a) the student from scratch: the engine's demo config (``-c demo``: D=64, depth 4, 8 frames,
   patch 16), with ``--size`` px frames, batch 8, ``--epochs`` epochs.
   The teacher is a trained demo model: with the default ``--student-dim 64`` it is (a) itself
   ("born-again" self-distillation: same architecture, same seed); with another width, the demo
   model (D=64) is trained separately and teaches a student of that width (the release's setting:
   a trained smaller model teaches a larger one).
3. (b) the same student with self-distillation from the teacher (``--distill-teacher``);
   (c) masked pretraining on the training videos (labels unused; teacher = the trained demo model;
       tube masks at 0.8), then fine-tuned exactly like (a) (``--pretrained``). (c) costs twice the
       epochs of (a).
4. the frame-reordering table (``analyze reorder``) of every model, and a Delta picture
   (``analyze delta``) of the teacher on a validation video.

Writes ``benchmarks/results/methods_small_scale.json`` and ``.md`` (numbers, commands, wall
times, the CPU; paths repo-relative) and copies the Delta picture next to them. Finished runs are
reused (``--fresh`` redoes them). Numbers are single runs on an 80-video validation set: one video
is 1.25 points. 32 px (2x2 patches per frame) is 4x cheaper per clip than the demo's 64 px.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from videomamba.cli import main as vm_main
from videomamba.fileio import atomic_write_text
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]


def rel(p: Path) -> str:
    """A path as committed result files hold it: repo-relative when inside the repository."""
    p = Path(p).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def run(argv: list[str], log: list) -> float:
    print("\n$ videomamba " + " ".join(argv), flush=True)
    t0 = time.time()
    rc = vm_main(argv)
    dt = time.time() - t0
    log.append({"command": "videomamba " + " ".join(argv), "rc": rc, "wall_s": round(dt, 1)})
    if rc != 0:
        sys.exit(f"command failed with status {rc}: videomamba {' '.join(argv)}")
    return dt


def run_unless_done(argv: list[str], done: Path, log: list) -> None:
    """``run`` unless ``done`` exists from an earlier, interrupted call (then logged as reused)."""
    if done.is_file():
        log.append({"command": "videomamba " + " ".join(argv), "reused": True})
    else:
        run(argv, log)


def reorder_top1(data: Path, model: Path, rdir: Path, log: list) -> dict:
    """Top-1 per frame order of ``videomamba analyze reorder`` on ``data``'s validation split."""
    argv = ["analyze", "reorder", str(data / "val.csv"), "--root", str(data), "-k", str(model),
            "--workers", "1", "-o", str(rdir)]
    run_unless_done(argv, rdir / "reorder_results.json", log)
    res = json.loads((rdir / "reorder_results.json").read_text())["results"]
    return {k: round(v["top1"], 2) for k, v in res.items()}


def summary(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {"val_top1": s["val"].get("top1"), "val_top5": s["val"].get("top5"),
            "best_top1": s["best"].get("value"), "best_epoch": s["best"].get("epoch"),
            "steps": s["step"], "wall_s": round(s["wall_time_s"], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/methods", help="scratch directory for data and runs")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=32, help="frame size of the synthetic videos and the model input")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--student-dim", type=int, default=64, help="student width (64: the teacher is (a) itself)")
    ap.add_argument("--distill-weight", type=float, default=1.0)
    ap.add_argument("--mask-type", default="tube")
    ap.add_argument("--mask-ratio", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="redo runs that already finished")
    ap.add_argument("--demo64", action="store_true",
                    help="also train the demo config as it stands (64 px) on this script's small synthetic set and "
                         "report its accuracy, reorder table and a Delta picture")
    args = ap.parse_args()

    out = Path(args.out)
    data = out / f"data{args.size}"
    log: list = []
    t_all = time.time()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    if not (data / "val.csv").is_file():
        run(["make-synthetic", str(data), "--seed", str(args.seed), "--size", str(args.size)], log)
    common = [f"data.train={data / 'train.csv'}", f"data.val={data / 'val.csv'}", f"data.root={data}",
              f"data.classes={data / 'classes.txt'}", f"data.img_size={args.size}",
              f"data.batch_size={args.batch_size}", f"optim.epochs={args.epochs}", f"train.seed={args.seed}",
              "train.progress=log", "train.log_every=15"]
    student = [] if args.student_dim == 64 else [f"model.embed_dim={args.student_dim}"]

    def train(name: str, extra: list[str], cmd: str = "train") -> Path:
        d = out / name
        argv = [cmd, "-c", "demo", *common, *extra, "-o", str(d)]
        if (d / "summary.json").is_file():
            log.append({"command": "videomamba " + " ".join(argv), "reused": True})
        else:
            if d.exists():
                shutil.rmtree(d)
            run(argv, log)
        return d

    a = train("a_scratch", student)
    teacher = a if args.student_dim == 64 else train("teacher", [])
    b = train("b_distill", [*student, "--distill-teacher", str(teacher / "model"),
                            "--distill-weight", str(args.distill_weight)])
    pre = train("c_pretrain", [*student, "--teacher", str(teacher / "model"), "--mask-type", args.mask_type,
                               "--mask-ratio", str(args.mask_ratio)], cmd="pretrain")
    c = train("c_finetune", [*student, "--pretrained", str(pre / "model")])

    reorder = {}
    models = {"teacher": teacher, "a_scratch": a, "b_distill": b, "c_finetune": c}
    if teacher == a:
        models.pop("teacher")
    for name, d in models.items():
        reorder[name] = reorder_top1(data, d / "model", out / "reorder" / name, log)

    val_videos = [line.split(",")[0] for line in (data / "val.csv").read_text().splitlines()]
    video = data / next(v for v in val_videos if "move_left" in v)
    run(["analyze", "delta", str(video), "-k", str(teacher / "model"), "-o", str(out / "delta")], log)
    RESULTS.mkdir(parents=True, exist_ok=True)
    demo64 = None
    if args.demo64:
        d64 = out / "data64"
        if not (d64 / "val.csv").is_file():
            run(["make-synthetic", str(d64), "--seed", str(args.seed)], log)
        argv = ["train", "-c", "demo", f"data.train={d64 / 'train.csv'}", f"data.val={d64 / 'val.csv'}",
                f"data.root={d64}", f"data.classes={d64 / 'classes.txt'}", f"train.seed={args.seed}",
                "train.progress=log", "-o", str(out / "demo64")]
        run_unless_done(argv, out / "demo64" / "summary.json", log)
        reorder["demo64"] = reorder_top1(d64, out / "demo64" / "model", out / "reorder" / "demo64", log)
        v64 = d64 / next(v for v in (d64 / "val.csv").read_text().splitlines() if "move_left" in v).split(",")[0]
        run(["analyze", "delta", str(v64), "-k", str(out / "demo64" / "model"), "-o", str(out / "delta64")], log)
        shutil.copyfile(out / "delta64" / f"{v64.stem}_grid.png", RESULTS / "methods_small_scale_delta_64px.png")
        shutil.copyfile(out / "delta64" / f"{v64.stem}.gif", RESULTS / "methods_small_scale_delta_64px.gif")
        demo64 = {**summary(out / "demo64"), "delta_picture": rel(RESULTS / "methods_small_scale_delta_64px.png")}
    pic = RESULTS / "methods_small_scale_delta.png"
    shutil.copyfile(out / "delta" / f"{video.stem}_grid.png", pic)
    shutil.copyfile(out / "delta" / f"{video.stem}.gif", RESULTS / "methods_small_scale_delta.gif")

    results = {
        "setup": {"epochs": args.epochs, "size": args.size, "batch_size": args.batch_size,
                  "student_dim": args.student_dim,
                  "teacher": "(a) itself" if teacher == a else "demo config (D=64, depth 4), trained separately",
                  "distill_weight": args.distill_weight, "mask_type": args.mask_type, "mask_ratio": args.mask_ratio,
                  "seed": args.seed, "val_videos": len(val_videos)},
        "teacher": summary(teacher) if teacher != a else "a_scratch", "a_scratch": summary(a), "b_distill": summary(b),
        "c_pretrain": {k: v for k, v in summary(pre).items() if k in ("steps", "wall_s")},
        "c_finetune": summary(c), "demo64_defaults": demo64, "reorder_top1": reorder,
        "delta_picture": rel(pic), "delta_video": rel(video), "cpu": cpu_name(),
        "commands": log, "wall_s_this_invocation": round(time.time() - t_all, 1),
    }
    atomic_write_text(RESULTS / "methods_small_scale.json", json.dumps(results, indent=2) + "\n")
    md = ["| run | val top-1 (final) | best top-1 (epoch) | val top-5 | train wall |", "|---|---|---|---|---|"]
    for k, label in (*((("teacher", "teacher (demo model, D=64)"),) if teacher != a else ()), ("a_scratch", f"(a) student D={args.student_dim}, scratch"),
                     ("b_distill", "(b) + self-distillation"), ("c_finetune", "(c) masked-pretrained, fine-tuned")):
        r = results[k]
        md.append(f"| {label} | {r['val_top1']:.2f} | {r['best_top1']:.2f} ({r['best_epoch']}) | {r['val_top5']:.2f} | "
                  f"{r['wall_s']:.0f} s |")
    if demo64:
        md.append(f"| demo config (64 px) | {demo64['val_top1']:.2f} | "
                  f"{demo64['best_top1']:.2f} ({demo64['best_epoch']}) | {demo64['val_top5']:.2f} | {demo64['wall_s']:.0f} s |")
    md += ["", "| model | original | block-wise | pairwise | interleaved |", "|---|---|---|---|---|"]
    for k, r in reorder.items():
        md.append(f"| {k} | " + " | ".join(f"{r[n]:.2f}" for n in ("original", "block-wise", "pairwise", "interleaved")) + " |")
    md += ["", f"pretraining wall time: {results['c_pretrain']['wall_s']:.0f} s ({results['cpu']})", "", "commands:"]
    md += [f"    {c['command']}" + ("   # result reused from an earlier invocation" if c.get("reused") else "")
           for c in log]
    atomic_write_text(RESULTS / "methods_small_scale.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
