"""Run one configuration in its own subprocess, under a time and a memory budget.

Peak memory is the child's own: ``ru_maxrss`` from ``wait4`` on the child (and its VmHWM, read
by the child itself) on CPU; ``torch.cuda.max_memory_allocated`` on CUDA. A watchdog polls the
child's RSS and kills its process group when it passes ``mem_limit_mb`` ("oom") or when the
wall clock passes ``timeout_s`` ("timeout"); the runs that finished before are kept in the
record (``warmup_s``, ``times_s``), so a timeout still gives a lower bound.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from .machine import cpu_name

POLL_S = 0.05


def _proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the child's own process group: only what we started
    except (ProcessLookupError, PermissionError):
        pass


def run_spec(spec: dict, timeout_s: float = 600.0, mem_limit_mb: float | None = None,
             env: dict | None = None) -> dict:
    """Measure ``spec`` in a fresh interpreter; always returns a record with a ``status``:
    ok, timeout, oom, error (or unsupported, decided before any process starts)."""
    spec = dict(spec)
    spec.setdefault("budget_s", 0.6 * timeout_s)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vmbench.") as d:
        out, log = Path(d) / "record.json", Path(d) / "log.txt"
        cmd = [sys.executable, "-m", "harness.child", json.dumps(spec), str(out)]
        child_env = dict(os.environ if env is None else env)
        # the harness lives in benchmarks/, outside the installed package
        here = str(Path(__file__).resolve().parents[1])
        child_env["PYTHONPATH"] = os.pathsep.join([here] + [x for x in child_env.get("PYTHONPATH", "").split(os.pathsep) if x])
        child_env.update({k: str(v) for k, v in (spec.get("env") or {}).items()})   # per-configuration
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        t0 = time.perf_counter()
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env,
                                    start_new_session=True)
        killed, watch_peak, ru, wstatus = None, 0.0, None, 0
        try:
            while True:
                pid, wstatus, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(wstatus)
                    break
                rss = _proc_rss_mb(proc.pid)
                watch_peak = max(watch_peak, rss)
                if killed is None and mem_limit_mb and rss > mem_limit_mb:
                    killed = "oom"
                    _kill_group(proc)
                elif killed is None and time.perf_counter() - t0 > timeout_s:
                    killed = "timeout"
                    _kill_group(proc)
                time.sleep(POLL_S)
        except BaseException:          # Ctrl-C / SIGTERM of the parent: take the child down too
            _kill_group(proc)
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        rec: dict = {}
        if out.is_file():
            try:
                rec = json.loads(out.read_text())
            except json.JSONDecodeError:
                rec = {}
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
    rec.setdefault("warmup_s", [])
    rec.setdefault("times_s", [])
    rec["ru_maxrss_mb"] = ru.ru_maxrss / 1024 if ru is not None else None
    rec["peak_rss_mb"] = max(x for x in (rec.get("peak_rss_mb"), rec["ru_maxrss_mb"], watch_peak) if x is not None)
    rec["wall_s"] = wall
    rec["load_before"] = [round(x, 2) for x in load_before]
    rec["load_after"] = [round(x, 2) for x in os.getloadavg()]
    rec["returncode"] = proc.returncode
    if killed == "oom":
        rec["status"] = "oom"
        rec["mem_limit_mb"] = mem_limit_mb
        rec["error"] = f"RSS passed the memory budget of {mem_limit_mb:.0f} MB; killed"
    elif killed == "timeout":
        rec["status"] = "timeout"
        done = rec["times_s"] or rec["warmup_s"]
        rec["error"] = (f"passed the time budget of {timeout_s:.0f} s; killed"
                        + (f" (a finished run took {max(done):.1f} s)" if done else " before one run finished"))
    elif proc.returncode == -signal.SIGKILL and rec.get("status") != "ok":
        rec["status"] = "oom"
        rec["error"] = "killed by SIGKILL (the kernel's OOM killer?)"
    elif rec.get("status") not in ("ok", "oom", "error"):
        rec["status"] = "error"
        rec["error"] = rec.get("error") or f"exit code {proc.returncode}: {tail[-800:]}"
    if rec["status"] != "ok" and tail and "log_tail" not in rec:
        rec["log_tail"] = tail[-1500:]
    return rec


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                fl = line.split(":", 1)[1].split()
                keep = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                return [f for f in keep if f in fl]
    except OSError:
        pass
    return []


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_rev() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_machine() -> dict:
    """What the numbers were measured on: CPU, cores, memory, versions, threads, load."""
    import torch

    try:
        import transformers
        tf = transformers.__version__
    except ImportError:
        tf = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    m = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "hostname": platform.node(),
         "cpu": cpu_name(), "cpu_flags": _cpu_flags(), "cores": cores, "mem_total_gb": _mem_total_gb(),
         "python": platform.python_version(), "torch": torch.__version__, "transformers": tf,
         "torch_threads": torch.get_num_threads(), "git": _git_rev(),
         "scan_backend_env": os.environ.get("VIDEOMAMBA_SCAN_BACKEND"),
         "load_avg": [round(x, 2) for x in os.getloadavg()]}
    if torch.cuda.is_available():
        m["cuda"] = {"device": torch.cuda.get_device_name(0), "torch_cuda": torch.version.cuda,
                     "mem_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
        try:
            import mamba_ssm
            m["cuda"]["mamba_ssm"] = getattr(mamba_ssm, "__version__", "installed")
        except ImportError:
            m["cuda"]["mamba_ssm"] = None
    return m
