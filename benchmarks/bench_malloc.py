#!/usr/bin/env python
"""Training-step time and peak RSS under glibc malloc settings: which one a process should use.

    python benchmarks/bench_malloc.py                        # the demo's model (seconds per setting)
    python benchmarks/bench_malloc.py --model videomamba_tiny --frames 64 --img 224 --batch 1 --steps 4
                                                             # the 64-frame training step (minutes)

Each setting runs in its own process, as a user's process would start with it in the environment
(glibc reads ``MALLOC_MMAP_THRESHOLD_`` / ``GLIBC_TUNABLES`` at start): glibc's default; the mmap
threshold fixed at 1 MiB (what ``VIDEOMAMBA_MALLOC_TUNE=1`` sets), 4 MiB and 16 MiB; 1 MiB with
transparent huge pages for the mapped blocks, asked of glibc (``glibc.malloc.hugetlb=1``) or of
torch's CPU allocator (``THP_MEM_ALLOC_ENABLE=1``: blocks of 2 MiB or more aligned and advised as
huge pages): one page fault per 2 MiB instead of per 4 KiB, where the kernel allows it; at most
two malloc arenas, and one (every thread allocates from the main heap). A step is forward, a loss,
backward and AdamW; the median of the steps after the first, the process's peak RSS (``ru_maxrss``)
and its minor page faults (``ru_minflt``, a count that other load does not change) are recorded.

Writes ``benchmarks/results/bench_malloc.json`` (or ``--out``; the CPU's name, the command,
repo-relative paths) and prints one line per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file

from harness.machine import cpu_name  # noqa: E402
from harness.paths import REPO, scrub  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "bench_malloc.json"
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "VIDEOMAMBA_MALLOC_TUNE",
               "VIDEOMAMBA_NO_MALLOC_TUNE", "THP_MEM_ALLOC_ENABLE")
SETTINGS = {
    "glibc default": {},
    "mmap threshold 1 MiB": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
    "mmap threshold 4 MiB": {"MALLOC_MMAP_THRESHOLD_": "4194304"},
    "mmap threshold 16 MiB": {"MALLOC_MMAP_THRESHOLD_": "16777216"},
    "mmap threshold 1 MiB + huge pages": {"MALLOC_MMAP_THRESHOLD_": "1048576", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "mmap threshold 1 MiB + torch huge pages": {"MALLOC_MMAP_THRESHOLD_": "1048576", "THP_MEM_ALLOC_ENABLE": "1"},
    "at most 2 arenas": {"MALLOC_ARENA_MAX": "2"},
    "one arena": {"MALLOC_ARENA_MAX": "1"},
}

CHILD = r"""
import json, statistics, sys, time, torch, videomamba
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
kw = dict(num_classes=8, num_frames=cfg["frames"], img_size=cfg["img"])
if cfg["model"] == "demo":
    m = videomamba.create_model("videomamba_tiny", embed_dim=64, depth=4, patch_size=16, **kw)
else:
    m = videomamba.create_model(cfg["model"], **kw)
opt = torch.optim.AdamW(m.parameters())
x = torch.randn(cfg["batch"], 3, cfg["frames"], cfg["img"], cfg["img"])
times = []
for _ in range(cfg["steps"]):
    t = time.perf_counter()
    m(x).logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
print(json.dumps({"median_step_s": statistics.median(times[1:] or times), "steps": len(times)}))
"""


def run_setting(env_extra: dict, cfg: dict) -> dict:
    """One setting in a fresh process; its median step time and its peak RSS (MB, ``ru_maxrss`` from wait4)."""
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
    env.update(env_extra)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env, stdout=out, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    if proc.returncode != 0:
        return {"status": "error", "error": errors[-1500:]}
    return {"status": "ok", **json.loads(text.strip().splitlines()[-1]), "peak_rss_mb": ru.ru_maxrss / 1024,
            "minor_page_faults": ru.ru_minflt, "wall_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="demo (the demo's model: D=64, depth 4) or a preset name")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=41, help="steps per setting (the first is not timed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, choices=list(SETTINGS), help="some settings only")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg = {"model": args.model, "frames": args.frames, "img": args.img, "batch": args.batch, "steps": args.steps,
           "threads": args.threads}
    res = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "workload": cfg,
           "command": shlex.join(["python", "benchmarks/bench_malloc.py", *(argv if argv is not None else sys.argv[1:])]),
           "settings": {}}
    from videomamba.fileio import atomic_write_text
    from videomamba.ops import cpu_kernel
    cpu_kernel.load()   # built (or found cached) here: a child that compiled it would count the compiler's RSS
    for name, env in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        r = {"env": env, **run_setting(env, cfg)}
        res["settings"][name] = r
        print(json.dumps({"setting": name, **{k: r[k] for k in ("status", "median_step_s", "peak_rss_mb", "minor_page_faults")
                                              if k in r}}), flush=True)
        atomic_write_text(args.out, json.dumps(scrub(res), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
