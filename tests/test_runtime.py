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
