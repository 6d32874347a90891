"""The grids (quick and full), and the loop that runs them into ``results.json``.

A run is resumable (``resume=True`` skips configurations already in the JSON), writes the JSON
after every configuration (atomically), and stops a series early: once a configuration times out
or runs out of memory, the same model at more frames is recorded with the same status
(``inferred: true``) instead of being run.
"""
from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from videomamba.fileio import atomic_write_text
from . import analysis, workloads
from .runner import _git_rev, describe_machine, run_spec

FRAMES = (8, 16, 32, 64, 128)
OURS = ("videomamba_tiny", "videomamba_small")
REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "benchmarks"
SCHEMA = "videomamba-bench/2"   # 2: children run as a user runs them; tuned rows carry their env


# Every child runs as a user's `videomamba` process does (glibc's malloc settings, OpenMP waiting
# passively). For the record, some configurations run again with the malloc tune a user gets with
# VIDEOMAMBA_MALLOC_TUNE=1 (mmap threshold fixed at 1 MiB: peak RSS follows the live tensors, at a
# price in time): ours and the peer alike.
TUNED_ENV = {"VIDEOMAMBA_MALLOC_TUNE": "1"}
# The release-equivalent path, measured in the same run: this model with the sequential reference
# scan (both directions) and F.conv1d, which VIDEOMAMBA_SCAN_BACKEND=ref selects.
RELEASE_ENV = dict(analysis.RELEASE_ENV)
NEVER = {"mixer_recompute": "never"}
# The configurations the training-time targets compare (ours with its defaults and with every activation
# kept, sdpa ViT-Ti) and ours at batch 1 for the roofline targets run in ROUNDS rounds spread over the full
# grid: a slow spell of the machine then moves one round, not the target (analysis.step_s takes the median
# of the rounds' medians).
ROUNDS = 3


def _m(model, frames, mode="infer", batch=1, dtype="fp32", attn=None, grad_ckpt=False, img=224,
       device="cpu", overrides=None, env=None) -> dict:
    spec = {"kind": "model", "model": model, "attn": attn, "frames": frames, "img": img, "batch": batch,
            "dtype": dtype, "mode": mode, "grad_ckpt": grad_ckpt, "device": device}
    if overrides:
        spec["overrides"] = dict(overrides)
    if env:
        spec["env"] = dict(env)
    return spec


def full_grid(device: str = "cpu") -> list[dict]:
    """Every configuration of the comparison, most important first (a run cut short still has the targets):
    batch-1 fp32 inference of every model (peers with sdpa and eager) and the release-equivalent baseline,
    the training steps, then ours and ViT-Ti sdpa at bf16 and at batch 8, ViT-Ti eager at batch 8, and
    (CPU) ours and ViT-Ti sdpa inference with the malloc tune, for the record."""
    g: list[dict] = []
    g += [_m(model, T, device=device) for model in OURS for T in FRAMES]
    if device == "cpu":
        g += release_grid()
    for model, attns in (("vit_ti_joint", ("sdpa", "eager")), ("videomae_s", ("sdpa", "eager")),
                         ("timesformer_b", ("eager",))):
        g += [_m(model, T, attn=a, device=device) for a in attns for T in FRAMES]
    g += train_grid((16, 64), device)
    for batch, dtype in ((1, "bf16"), (8, "fp32"), (8, "bf16")):
        for model in OURS:
            g += [_m(model, T, batch=batch, dtype=dtype, device=device) for T in FRAMES]
        g += [_m("vit_ti_joint", T, batch=batch, dtype=dtype, attn="sdpa", device=device) for T in FRAMES]
    # the paper's kind of comparator at batch 8 too (for the record: the memory target at a batch size
    # where activations, not the process's fixed baseline, make the peak)
    g += [_m("vit_ti_joint", T, batch=8, attn="eager", device=device) for T in FRAMES]
    if device == "cpu":
        # for the record: inference with the malloc tune, i.e. what it costs in time, ours and the peer alike
        for dtype in ("fp32", "bf16"):
            for model, attn in (("videomamba_tiny", None), ("vit_ti_joint", "sdpa")):
                g += [_m(model, T, dtype=dtype, attn=attn, env=TUNED_ENV) for T in FRAMES[:4]]
    # the later rounds of the training comparisons: one after the batch-8 inference, in reverse order, one last
    later = [timing_rounds(device, k) for k in range(2, ROUNDS + 1)]
    if later:
        at = next(i for i, s in enumerate(g) if s["batch"] == 8 and s["attn"] == "eager")
        g[at:at] = later[0]
        g += [s for r in later[1:] for s in r]
    return g


def timing_rounds(device: str = "cpu", k: int = 2) -> list[dict]:
    """Round ``k`` of the configurations measured in several rounds (even rounds in reverse order): the
    training-time comparisons, and ours at batch 1, 8-64 frames, fp32 and bf16 (the roofline targets)."""
    g = [_m(model, T, dtype=dtype, device=device) for model in OURS for dtype in ("fp32", "bf16")
         for T in FRAMES if T <= 64]
    g += [_m(model, T, mode="train", attn=attn, device=device, overrides=over)
          for T in (16, 64) for model, attn, over in (("videomamba_tiny", None, None),
                                                      ("videomamba_tiny", None, NEVER),
                                                      ("vit_ti_joint", "sdpa", None))]
    return [{**s, "round": k} for s in (g[::-1] if k % 2 == 0 else g)]


def release_grid(frames=(8,)) -> list[dict]:
    """VideoMamba-Ti inference, batch 1, fp32, on the release-equivalent path (the speed-up's baseline)."""
    return [_m("videomamba_tiny", T, env=RELEASE_ENV) for T in frames]


def train_grid(frames=(16, 64), device: str = "cpu") -> list[dict]:
    """Training steps at batch 1, fp32, like for like: every model with its defaults and with gradient
    checkpointing (ours: per block; the peers: transformers' ``gradient_checkpointing_enable()``), and
    ours with its mixer recompute off (every activation kept), with and without checkpointing. For the
    record, VideoMamba-Ti and sdpa ViT-Ti again with the malloc tune."""
    g: list[dict] = []
    for T in frames:
        for model in OURS:
            g += [_m(model, T, mode="train", device=device),
                  _m(model, T, mode="train", grad_ckpt=True, device=device)]
        g += [_m("videomamba_tiny", T, mode="train", device=device, overrides=NEVER),
              _m("videomamba_tiny", T, mode="train", grad_ckpt=True, device=device, overrides=NEVER)]
        for model, attn in (("vit_ti_joint", "sdpa"), ("vit_ti_joint", "eager"), ("videomae_s", "sdpa"),
                            ("timesformer_b", "eager")):
            g += [_m(model, T, mode="train", attn=attn, device=device),
                  _m(model, T, mode="train", attn=attn, grad_ckpt=True, device=device)]
        if device == "cpu":   # the same with the malloc tune
            g += [_m("videomamba_tiny", T, mode="train", env=TUNED_ENV),
                  _m("videomamba_tiny", T, mode="train", overrides=NEVER, env=TUNED_ENV),
                  _m("vit_ti_joint", T, mode="train", attn="sdpa", env=TUNED_ENV)]
    return g


def quick_grid(device: str = "cpu") -> list[dict]:
    """A few minutes: the target comparisons at 8 / 16 / 32 frames, batch 1, the release-equivalent
    baseline, and the 16-frame training step like for like."""
    g: list[dict] = []
    for T in (8, 16, 32):
        g += [_m("videomamba_tiny", T, device=device), _m("vit_ti_joint", T, attn="sdpa", device=device),
              _m("vit_ti_joint", T, attn="eager", device=device)]
    g += [_m("videomamba_tiny", 8, dtype="bf16", device=device), _m("videomamba_small", 8, device=device)]
    if device == "cpu":
        g += release_grid()
    g += [_m("videomamba_tiny", 16, mode="train", device=device),
          _m("videomamba_tiny", 16, mode="train", overrides=NEVER, device=device),
          _m("videomamba_tiny", 16, mode="train", grad_ckpt=True, overrides=NEVER, device=device),
          _m("vit_ti_joint", 16, mode="train", attn="sdpa", device=device),
          _m("vit_ti_joint", 16, mode="train", attn="sdpa", grad_ckpt=True, device=device)]
    return g


def toy_grid() -> list[dict]:
    """Seconds: tiny models at 32 px, for the harness's own tests."""
    return ([_m("toy_videomamba", T, img=32) for T in (2, 4)]
            + [_m("toy_vit", 2, img=32, attn="sdpa"), _m("toy_videomamba", 2, img=32, mode="train"),
               _m("toy_vit", 2, img=32, attn="sdpa", mode="train", grad_ckpt=True),
               _m("toy_videomamba", 2, img=32, env=RELEASE_ENV), _m("toy_videomamba", 2, img=32, env=TUNED_ENV)])


def order_key(spec: dict) -> tuple:
    return analysis.series_key(spec) + (spec["frames"],)


def _sorted_series(grid: list[dict]) -> list[dict]:
    """Keep the grid's series order, frames ascending within a series (needed for early stops); a later
    round of a series stays where the grid put it."""
    def key(s):
        return (s.get("round", 1), analysis.series_key(s))
    first: dict[tuple, int] = {}
    for i, s in enumerate(grid):
        first.setdefault(key(s), i)
    return sorted(grid, key=lambda s: (first[key(s)], s["frames"]))


def micro_spec(device: str = "cpu", quick: bool = False) -> dict:
    spec = {"kind": "micro", "name": "ceilings", "device": device, "repeats": 3 if quick else 7}
    if quick and device == "cpu":
        spec["matmul_sizes"] = [1024]
    return spec


def load_results(path: Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def save_results(path: Path, data: dict) -> None:
    """Write ``results.json`` atomically, every path in it repo-relative."""
    from .paths import scrub
    atomic_write_text(path, json.dumps(scrub(json.loads(json.dumps(data, default=str))), indent=1, sort_keys=False))


def _attach_flops(rec: dict, spec: dict) -> None:
    try:
        rec["gflops"] = workloads.gflops(spec)
    except Exception as e:  # noqa: BLE001 -- a missing count must not lose a measurement
        rec["gflops_error"] = f"{type(e).__name__}: {e}"


def run_scan_bench(out_dir: Path, quick: bool, timeout_s: float, log=print) -> dict | None:
    """Run the kernel benchmark ``benchmarks/bench_scan.py`` if it is there.

    It owns the kernel grid (reference vs each fast path, fwd and fwd+bwd, L x E); we pass
    ``--quick`` and ``--json``/``--out`` when its ``--help`` lists them, keep its stdout, and read
    the JSON it writes. Returns None when the script is absent.
    """
    script = BENCH_DIR / "bench_scan.py"
    if not script.is_file():
        return None
    try:
        help_ = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               timeout=120, cwd=REPO).stdout
    except subprocess.TimeoutExpired:
        help_ = ""
    json_path = out_dir / "scan.json"
    argv = [sys.executable, str(script)]
    for flag in ("--json", "--out", "--output"):
        if flag in help_:
            argv += [flag, str(json_path)]
            break
    if quick and "--quick" in help_:
        argv.append("--quick")
    log(f"[scan] {' '.join(argv[1:])}")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        status, stdout = ("ok" if p.returncode == 0 else "error"), p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        status, stdout = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    shown = [os.path.relpath(a, REPO) if a.startswith(str(REPO)) else a for a in argv[1:]]   # as typed in the repo
    res = {"status": status, "argv": shown, "wall_s": time.perf_counter() - t0, "stdout": stdout[-20000:]}
    if json_path.is_file():
        try:
            res["data"] = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            pass
    return res


def run_suite(grid: list[dict], results_path: Path, *, timeout_s: float = 600.0,
              mem_limit_mb: float | None = None, repeats: int = 3, warmup: int = 1,
              threads: int | None = None, resume: bool = False, only: str | None = None,
              micro: bool = True, scan: bool = False, prepare: bool = True, quick: bool = False,
              mode_name: str = "", env: dict | None = None, log=print) -> dict:
    """Run ``grid`` (plus the machine's ceilings) and keep ``results_path`` up to date."""
    results_path = Path(results_path)
    data = load_results(results_path) if resume else None
    if data is None or data.get("schema") != SCHEMA:
        data = {"schema": SCHEMA, "mode": mode_name, "machine": describe_machine(), "micro": {},
                "records": [], "settings": {}}
    data["settings"] = {"timeout_s": timeout_s, "mem_limit_mb": mem_limit_mb, "repeats": repeats,
                        "warmup": warmup, "threads": threads, "only": only, "mode": mode_name,
                        "child_env": {k: v for k, v in (env or {}).items() if os.environ.get(k) != v}}
    data.setdefault("load_history", []).append({"when": "start", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                "load_avg": [round(x, 2) for x in os.getloadavg()],
                                                "git": _git_rev()})
    done = {r["id"]: r for r in data["records"]}
    if only:
        grid = [s for s in grid if fnmatch.fnmatch(workloads.spec_id(s), only)]
    grid = _sorted_series(grid)
    devices = sorted({s.get("device", "cpu") for s in grid}) or ["cpu"]

    if micro:
        for dev in devices:
            if resume and data["micro"].get(dev, {}).get("status") == "ok":
                continue
            log(f"[micro] {dev}: matmul and exp ceilings")
            data["micro"][dev] = run_spec({**micro_spec(dev, quick), "threads": threads}, timeout_s=300, env=env)
            save_results(results_path, data)
    if grid and prepare:
        # build any compiled kernel once, outside the timed runs (cached by torch afterwards)
        log("[prepare] one untimed toy run (kernel build, caches)")
        run_spec({**_m("toy_videomamba", 2, img=32), "repeats": 1, "threads": threads}, timeout_s=900)

    def with_settings(spec: dict) -> dict:
        return {**spec, "repeats": repeats, "warmup": warmup, **({"threads": threads} if threads else {})}

    def measure(spec: dict) -> dict:
        return run_spec(spec, timeout_s=timeout_s, mem_limit_mb=mem_limit_mb, env=env)

    failed: dict[tuple, dict] = {}
    for i, spec in enumerate(grid):
        sid = workloads.spec_id(spec)
        if spec.get("round", 1) > 1:
            head = f"[{i + 1}/{len(grid)}] {sid} round {spec['round']}"
            if _run_round(with_settings(spec), done.get(sid), failed, resume, measure, head, log):
                save_results(results_path, data)
            continue
        if resume and sid in done and done[sid].get("status") in ("ok", "oom", "timeout", "unsupported"):
            r = done[sid]
            if r["status"] in ("oom", "timeout"):
                failed.setdefault(analysis.series_key(spec), r)
            continue
        spec = with_settings(spec)
        key = analysis.series_key(spec)
        if spec.get("attn") and spec["attn"] not in workloads.supported_attn(spec["model"]):
            rec = {"status": "unsupported", "error": f"{spec['model']} has no {spec['attn']} attention in transformers"}
        elif key in failed:
            f = failed[key]
            rec = {"status": f["status"], "inferred": True, "mem_limit_mb": f.get("mem_limit_mb"),
                   "error": f"not run: {f['spec']['frames']} frames of this series already hit {f['status']}"}
        else:
            log(f"[{i + 1}/{len(grid)}] {sid} ...")
            rec = measure(spec)
            if rec["status"] in ("oom", "timeout"):
                failed[key] = {**rec, "spec": spec}
        rec["spec"], rec["id"] = spec, sid
        _attach_flops(rec, spec)
        log("    " + _one_line(rec))
        done[sid] = rec
        data["records"] = [r for r in data["records"] if r["id"] != sid] + [rec]
        save_results(results_path, data)
    if scan and not (resume and (data.get("scan") or {}).get("status") == "ok"):
        # last: the kernel grid matters less than the model comparisons if a run is cut short
        res = run_scan_bench(results_path.parent, quick, timeout_s=max(timeout_s, 1200), log=log)
        if res is not None:
            data["scan"] = res
            save_results(results_path, data)
    data["load_history"].append({"when": "end", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "load_avg": [round(x, 2) for x in os.getloadavg()]})
    analysis.annotate(data["records"], data["micro"])
    save_results(results_path, data)
    return data


def _run_round(spec, first, failed, resume, measure, head, log) -> bool:
    """Measure a later round of a configuration into its first round's record ``first`` (its ``rounds``,
    replacing an earlier measurement of the same round); whether anything was measured. Skipped where the
    first round did not complete, and on resume where this round did."""
    k = spec["round"]
    if first is None or first.get("status") != "ok" or analysis.series_key(spec) in failed:
        log(f"{head}: skipped (its first round did not complete)")
        return False
    if resume and any(x.get("round") == k and x.get("status") == "ok" for x in first.get("rounds") or []):
        return False
    log(f"{head} ...")
    rec = {key: v for key, v in measure(spec).items() if key in ROUND_FIELDS}
    rec["round"] = k
    log("    " + _one_line(rec))
    first["rounds"] = [x for x in first.get("rounds") or [] if x.get("round") != k] + [rec]
    return True


# what a later round keeps of its record (the rest is the first round's: spec, model, flops)
ROUND_FIELDS = ("status", "error", "warmup_s", "times_s", "cpu_s", "n", "median_s", "min_s", "cpu_share",
                "peak_rss_mb", "peak_cuda_mb", "baseline_rss_mb", "baseline_cuda_mb", "load_before", "load_after",
                "wall_s")


def _one_line(r: dict) -> str:
    if r["status"] == "ok":
        mem = f"peak {analysis.peak_mb(r):.0f} MB (+{analysis.increment_mb(r) or 0:.0f})"
        share = f", cpu share {r['cpu_share']:.2f}" if r.get("cpu_share") is not None else ""
        return (f"ok  median {r['median_s']:.3f} s over {r['n']} runs, {mem}, "
                f"load {r.get('load_before', ['?'])[0]}{share}")
    return f"{r['status']}: {r.get('error', '')[:200]}"
