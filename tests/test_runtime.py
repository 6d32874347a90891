"""videomamba.runtime: the malloc setting of long jobs, and when it is left alone."""
import sys

import pytest

from videomamba import runtime


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(runtime, "_state", None)
    for k in (runtime.OPT_OUT_ENV, "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_opt_out_and_user_settings_are_respected(fresh):
    fresh.setenv(runtime.OPT_OUT_ENV, "1")
    assert runtime.tune_malloc().startswith("default: opted out")
    assert runtime.tune_malloc().startswith("default: opted out")   # decided once per process
    for key, value in (("MALLOC_MMAP_THRESHOLD_", "131072"),
                       ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")):
        fresh.setattr(runtime, "_state", None)
        fresh.delenv(runtime.OPT_OUT_ENV, raising=False)
        fresh.setenv(key, value)
        assert runtime.tune_malloc() == f"environment: {key}={value}"
        fresh.delenv(key)


def test_sets_the_threshold_on_glibc(fresh):
    fresh.setenv(runtime.OPT_OUT_ENV, "0")   # "0" does not opt out
    state = runtime.tune_malloc()
    if runtime._glibc() is None:
        assert state == "default: not glibc"
    else:
        assert sys.platform.startswith("linux")
        assert state == f"mallopt M_MMAP_THRESHOLD={runtime.MMAP_THRESHOLD}"


# ------------------------------------------------------------------ OpenMP waiting
def test_passive_openmp_only_before_torch_and_never_over_the_users_choice():
    env, mods = {}, {}
    assert runtime.prefer_passive_openmp(env, mods) == "OMP_WAIT_POLICY=PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        env = {key: "7"}
        assert runtime.prefer_passive_openmp(env, mods) == f"environment: {key}=7" and env == {key: "7"}
    env = {}       # too late: the OpenMP runtime came with torch and has read its settings already
    assert runtime.prefer_passive_openmp(env, {"torch": object()}).startswith("default: spinning")
    assert env == {}


def test_cli_process_is_the_videomamba_command_only():
    assert runtime.is_cli_process(["/venv/bin/videomamba", "demo"], ["/venv/bin/python", "/venv/bin/videomamba"])
    assert runtime.is_cli_process(["-m"], ["python", "-m", "videomamba", "train"])
    assert runtime.is_cli_process(["-m"], ["python", "-u", "-m", "videomamba", "demo"])      # torchrun's form
    assert not runtime.is_cli_process(["-m"], ["python", "-m", "pytest", "-q"])
    assert not runtime.is_cli_process(["train.py"], ["python", "train.py"])
    assert not runtime.is_cli_process(["-c"], ["python", "-c", "import videomamba"])


def _spincount(code: list[str], **env) -> str | None:
    """GOMP_SPINCOUNT as GNU OpenMP reports it when it loads (OMP_DISPLAY_ENV=VERBOSE), or None."""
    import os
    import re
    import subprocess

    e = {k: v for k, v in os.environ.items() if k not in runtime.OMP_WAIT_VARS}
    e.update(OMP_DISPLAY_ENV="VERBOSE", **env)
    out = subprocess.run([sys.executable, *code], env=e, capture_output=True, text=True, timeout=300)
    m = re.search(r"GOMP_SPINCOUNT = '(\d+)'", out.stderr + out.stdout)
    return m.group(1) if m else None


def test_the_command_makes_openmp_wait_passively_and_the_library_does_not():
    lib = _spincount(["-c", "import videomamba, torch; torch.ones(1)"])
    if lib is None:
        pytest.skip("torch's OpenMP runtime is not GNU libgomp here (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    assert lib != "0"                                             # a library user's process: untouched
    assert _spincount(["-m", "videomamba", "--version"]) == "0"   # the command: passive, read at load
    assert _spincount(["-m", "videomamba", "--version"], OMP_WAIT_POLICY="ACTIVE") != "0"   # the user's word


def test_malloc_state_and_request(fresh):
    assert runtime.malloc_state() == "default: glibc's own (not tuned)"
    assert not runtime.malloc_tune_requested({}) and not runtime.malloc_tune_requested({runtime.TUNE_ENV: "0"})
    assert runtime.malloc_tune_requested({runtime.TUNE_ENV: "1"})
    fresh.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert runtime.malloc_state() == "environment: MALLOC_MMAP_THRESHOLD_=65536"
