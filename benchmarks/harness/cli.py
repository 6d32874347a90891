"""``python benchmarks/run.py``: VideoMamba against its peers.

    python benchmarks/run.py --quick             # minutes: the target comparisons at 8-32 frames
    python benchmarks/run.py --full              # the whole grid (hours on 2 cores)
    python benchmarks/run.py one --model vit_ti_joint --attn eager --frames 64 [--mode train] [--profile]
    python benchmarks/run.py report [--out DIR]  # rebuild the page and plots from results.json
    python benchmarks/run.py list [--quick]      # the configuration ids of a grid
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

ACTIONS = ("run", "one", "report", "list")


def add_arguments(p):
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                   help="run a grid (default), measure one configuration, rebuild the report, or list a grid")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the short grid (default)")
    g.add_argument("--full", action="store_true", help="the whole grid")
    g.add_argument("--toy", action="store_true", help="tiny models at 32 px (seconds; for tests)")
    p.add_argument("--out", default=None,
                   help="results directory (default benchmarks/results for --full, benchmarks/results/quick "
                        "for --quick): results.json and the plots")
    p.add_argument("--page", default=None,
                   help="markdown page to write (default benchmarks/RESULTS.md for --full, OUT/RESULTS.md otherwise)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per configuration before it is killed and recorded as timeout "
                        "(default 900 full, 180 quick)")
    p.add_argument("--mem-limit-gb", type=float, default=12.0,
                   help="RSS budget per configuration; above it the child is killed and recorded as OOM")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (default 5 full, 3 quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each child (default: torch's)")
    p.add_argument("--only", default=None, help="glob over configuration ids, e.g. 'infer/videomamba_tiny/*'")
    p.add_argument("--resume", action="store_true", help="keep configurations already in results.json")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for every child, e.g. VIDEOMAMBA_MALLOC_TUNE=1 (repeatable); a "
                        "tuning variable makes every record 'tuned', not 'as a user runs it'")
    p.add_argument("--no-gpu", action="store_true", help="skip the CUDA section even when CUDA is present")
    p.add_argument("--no-scan", action="store_true", help="do not run benchmarks/bench_scan.py")
    p.add_argument("--no-micro", action="store_true", help="skip the matmul / exp ceilings")
    # `one`
    p.add_argument("--model", default="videomamba_tiny", help="one: videomamba_tiny, videomamba_small, "
                   "vit_ti_joint, videomae_s, timesformer_b, toy_videomamba, toy_vit")
    p.add_argument("--attn", default=None, choices=("sdpa", "eager"), help="one: attention implementation of a peer")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--mode", default="infer", choices=("infer", "train"))
    p.add_argument("--grad-ckpt", action="store_true",
                   help="one: gradient checkpointing (ours per block; peers: gradient_checkpointing_enable())")
    p.add_argument("--device", default="cpu")
    p.add_argument("--profile", action="store_true", help="one: torch.profiler top operators after timing")
    p.add_argument("--saved", action="store_true", help="one: MB saved for backward per module type (train)")
    p.add_argument("--memtrace", action="store_true",
                   help="one: peak of live tensor bytes in one step, and the tensors alive at that peak")
    p.add_argument("--scan-backend", default=None, choices=("ref", "torch", "cpu", "cuda", "auto"),
                   help="one: VIDEOMAMBA_SCAN_BACKEND for the child (ref = the release-equivalent path)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="one: a VideoMambaConfig override, e.g. --set mixer_recompute=never (repeatable)")
    p.add_argument("--json", action="store_true", help="one / list: print JSON")


def _defaults(args):
    from . import suite

    kind = "full" if args.full else "toy" if args.toy else "quick"
    out = Path(args.out) if args.out else suite.BENCH_DIR / "results" / ("" if kind == "full" else kind)
    page = Path(args.page) if args.page else (suite.BENCH_DIR / "RESULTS.md" if kind == "full" else out / "RESULTS.md")
    timeout = args.timeout or {"full": 900.0, "quick": 180.0, "toy": 120.0}[kind]
    repeats = args.repeats or {"full": 5, "quick": 3, "toy": 2}[kind]
    return kind, out, page, timeout, repeats


def _grid(kind: str, args) -> list[dict]:
    import torch

    from . import suite

    if kind == "toy":
        return suite.toy_grid()
    grid = suite.full_grid() if kind == "full" else suite.quick_grid()
    if torch.cuda.is_available() and not args.no_gpu:
        grid += suite.full_grid("cuda") if kind == "full" else suite.quick_grid("cuda")
    return grid


def run(args) -> int:
    from . import report, suite, workloads
    from .runner import run_spec

    kind, out, page, timeout, repeats = _defaults(args)
    if args.action == "list":
        ids = [workloads.spec_id(s) for s in suite._sorted_series(_grid(kind, args))]
        print(json.dumps(ids, indent=1) if args.json else "\n".join(ids))
        return 0
    if args.action == "one":
        spec = {"kind": "model", "model": args.model, "attn": args.attn, "frames": args.frames,
                "img": args.img_size, "batch": args.batch, "dtype": args.dtype, "mode": args.mode,
                "grad_ckpt": args.grad_ckpt, "device": args.device, "repeats": args.repeats or 3,
                "warmup": args.warmup, "profile": args.profile, "saved": args.saved, "memtrace": args.memtrace}
        if args.scan_backend:      # part of the configuration (its id and label), as in the grids
            spec["env"] = {"VIDEOMAMBA_SCAN_BACKEND": args.scan_backend}
        if args.threads:
            spec["threads"] = args.threads
        if args.set:
            spec["overrides"] = dict(_parse_set(kv) for kv in args.set)
        workloads.family(args.model)            # unknown names fail here, before a process starts
        # build (or find cached) the compiled kernel here: a child that compiled it would count the
        # compiler's memory in its peak RSS (wait4 reports the largest of its waited-for descendants)
        from videomamba.ops import cpu_kernel
        cpu_kernel.load()
        rec = run_spec(spec, timeout_s=args.timeout or 900.0, mem_limit_mb=args.mem_limit_gb * 1024,
                       env=_child_env(args))
        rec["spec"], rec["id"] = spec, workloads.spec_id(spec)
        suite._attach_flops(rec, spec)
        if args.json:
            print(json.dumps(rec, indent=1, default=str))
        else:
            print(f"{rec['id']}: {suite._one_line(rec)}")
            for e in (rec.get("profile") or {}).get("by_self_cpu", []):
                print(f"  {e['self_cpu_ms']:10.1f} ms {100 * e['share']:5.1f}%  {e['calls']:6d}  {e['op']}")
            for e in (rec.get("profile") or {}).get("by_self_cpu_memory", []):
                print(f"  {e['self_cpu_memory_mb']:10.1f} MB  {e['calls']:6d}  {e['op']}")
            mt = rec.get("memtrace")
            if mt:
                print(f"  live tensors at the peak: {mt['peak_live_mb']:.0f} MB")
                for e in mt["at_peak"]:
                    print(f"    {e['mb']:10.1f} MB  {e['count']:4d} x  {e['op_shape']}")
                print(f"    {mt['at_peak_other_mb']:10.1f} MB  (the rest)")
            sv = rec.get("saved_for_backward")
            if sv:
                print(f"  saved for backward: {sv['total_mb']:.0f} MB")
                for k, v in sv["by_module_mb"].items():
                    print(f"    {v:10.1f} MB  {k}")
        return 0 if rec["status"] == "ok" else 1
    results = out / "results.json"
    if args.action == "report":
        data = suite.load_results(results)
        if data is None:
            raise FileNotFoundError(f"no results at {results}; run `python benchmarks/run.py` first")
        print(report.write_page(data, page, out, data.get("commands") or data.get("command")))
        return 0
    command = " ".join([Path(sys.argv[0]).name] + [shlex.quote(a) for a in sys.argv[1:]])
    import signal
    # SIGTERM -> SystemExit while the grid runs, so that the runner kills the child it is waiting on;
    # the previous handler comes back afterwards (an in-process caller, e.g. the tests, keeps its own,
    # and processes it forks later are not left with one that a Pool's terminate() cannot stop)
    previous = signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        data = suite.run_suite(_grid(kind, args), results, timeout_s=timeout,
                               mem_limit_mb=args.mem_limit_gb * 1024, repeats=repeats, warmup=args.warmup,
                               threads=args.threads, resume=args.resume, only=args.only, micro=not args.no_micro,
                               scan=not args.no_scan and kind != "toy", prepare=kind != "toy",
                               quick=kind != "full", mode_name=kind, env=_child_env(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
    data["command"] = command
    data.setdefault("commands", []).append(command)     # a resumed run keeps every invocation
    suite.save_results(results, data)
    print(f"results: {results}")
    print(f"page:    {report.write_page(data, page, out, data['commands'])}")
    return 0


def _parse_set(kv: str) -> tuple:
    if "=" not in kv:
        raise ValueError(f"--set wants FIELD=VALUE, got {kv!r}")
    k, v = kv.split("=", 1)
    try:
        v = json.loads(v)           # numbers, true/false
    except json.JSONDecodeError:
        pass                        # plain strings
    return k.strip(), v


def _child_env(args) -> dict | None:
    if not args.env:
        return None
    import os
    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k.strip()] = v
    return env


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0].strip("`"))
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return int(run(args) or 0)
    except (FileNotFoundError, ValueError) as e:
        print(f"benchmarks/run.py: error: {e}", file=sys.stderr)
        return 2
