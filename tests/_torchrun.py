"""Run a command under ``torchrun`` (2 CPU processes) with a deadline that explains itself.

Used as ``from _torchrun import run_torchrun`` (tests/ is on sys.path, see conftest.py). A hung rank
must not cost the whole test budget nor fail without a word: the process group gets a collective
timeout (``VIDEOMAMBA_DIST_TIMEOUT``), and at the deadline every worker is sent SIGABRT, which makes
Python's faulthandler print each thread's stack, before all of them are killed and the test fails
with that output.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; torchrun starts its workers in sessions of their own,
    so a process-group signal would miss them)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def run_torchrun(args: list[str], timeout: float = 300, collective_timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS``; returns the
    finished process (stdout / stderr as text) or fails the test with the stacks of a hang."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
                "VIDEOMAMBA_DIST_TIMEOUT": str(collective_timeout)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        workers = _descendants(p.pid)
        _signal_all(workers, signal.SIGABRT)            # faulthandler prints every thread's stack
        try:
            p.wait(timeout=10)                          # the launcher sees its workers die and exits
        except subprocess.TimeoutExpired:
            pass
        _signal_all([p.pid, *workers], signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"torchrun did not finish within {timeout:.0f} s; the processes' stacks at the deadline:\n"
                    f"--- stdout ---\n{(out or '')[-4000:]}\n--- stderr ---\n{(err or '')[-20000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
