"""Backend selection: argument / environment precedence, fallbacks that warn once, clear errors,
the CUDA adapters, and the build machinery.

The CUDA adapters are checked here on CPU against stand-ins for mamba_ssm and causal_conv1d that
*are* the oracle (``fake_mamba``): that covers what the adapters hand to the kernels (dtypes,
arguments, casts back), not the CUDA kernels' numbers. Those are checked against the oracle only
on a GPU: ``python -m pytest -m gpu tests/ops/test_cuda_kernels.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
import warnings

import pytest
import torch

from videomamba.ops import backend, cpu_kernel, describe_backends, available_backends
from videomamba.ops import selective_scan, selective_scan_ref, causal_conv1d, causal_conv1d_ref
from videomamba.ops.scan_cuda import causal_conv1d_cuda, selective_scan_cuda

from .helpers import assert_close_scaled, scan_inputs


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend._reset()
    yield
    backend._reset()


@pytest.fixture
def broken_cpu_kernel(monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_module", None)
    monkeypatch.setattr(cpu_kernel, "_error", "no compiler (simulated)")


@pytest.fixture
def fake_mamba(monkeypatch):
    """Stand-ins for mamba_ssm and causal_conv1d that record what they receive and compute with the
    oracle: they test the adapters, not the CUDA kernels (see the module docstring)."""
    calls = []

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False):
        calls.append({k: (v.dtype if isinstance(v, torch.Tensor) else v) for k, v in
                      dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias).items()})
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)

    def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, activation=None):
        calls.append({"x": x.dtype, "weight": weight.dtype, "bias": bias.dtype})
        return causal_conv1d_ref(x.float(), weight.float(), bias.float(), activation).to(x.dtype)

    mods = {name: types.ModuleType(name) for name in
            ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface", "causal_conv1d")}
    mods["mamba_ssm.ops.selective_scan_interface"].selective_scan_fn = selective_scan_fn
    mods["causal_conv1d"].causal_conv1d_fn = causal_conv1d_fn
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_requested_backend_precedence(monkeypatch):
    assert backend.requested_backend() == "auto"
    monkeypatch.setenv(backend.ENV_VAR, "Torch")
    assert backend.requested_backend() == "torch"
    assert backend.requested_backend("ref") == "ref"  # the argument wins
    monkeypatch.setenv(backend.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="VIDEOMAMBA_SCAN_BACKEND"):
        backend.requested_backend()
    with pytest.raises(ValueError, match="backend argument"):
        backend.requested_backend("gpu")


def test_env_var_selects_implementation(monkeypatch):
    u = torch.zeros(1, 4, 3)
    monkeypatch.setenv(backend.ENV_VAR, "ref")
    assert backend.get_scan_impl(None, u) is selective_scan_ref
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    from videomamba.ops.scan_torch import selective_scan_torch
    assert backend.get_scan_impl(None, u) is selective_scan_torch


def test_explicit_backend_on_wrong_device_is_an_error():
    with pytest.raises(ValueError, match="'cuda' needs CUDA tensors"):
        backend.resolve("cuda", "cpu")
    with pytest.raises(ValueError, match="'cpu' needs CPU tensors"):
        backend.resolve("cpu", "cuda")
    with pytest.raises(ValueError, match="'cuda' needs CUDA tensors"):
        selective_scan(**scan_inputs(1, 4, 2, 5), backend="cuda")


def test_explicit_unavailable_backend_is_an_error(broken_cpu_kernel):
    with pytest.raises(RuntimeError, match="no compiler"):
        backend.resolve("cpu", "cpu")
    with pytest.raises(RuntimeError, match="mamba_ssm is unavailable"):
        backend.resolve("cuda", "cuda")


def test_auto_falls_back_with_one_warning(broken_cpu_kernel):
    x = scan_inputs(1, 8, 4, 12)
    with pytest.warns(RuntimeWarning, match="pure-torch scan"):
        out = selective_scan(**x, delta_softplus=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out2 = selective_scan(**x, delta_softplus=True)
        assert backend.resolve(None, "cpu") == "torch"
    assert_close_scaled(out, selective_scan_ref(**x, delta_softplus=True), 2e-5, 2e-5)
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    # CUDA tensors without mamba_ssm: the pure path too, with its own single warning.
    with pytest.warns(RuntimeWarning, match="mamba_ssm is not importable"):
        assert backend.resolve("auto", "cuda") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.resolve("auto", "cuda") == "torch"


def test_auto_prefers_kernels(fake_mamba):
    assert backend.resolve("auto", "cuda") == "cuda"
    assert backend.resolve_conv("auto", "cuda", 4) == "cuda"
    with pytest.warns(RuntimeWarning, match="widths 2..4"):
        assert backend.resolve_conv("auto", "cuda", 5) == "ref"
    if cpu_kernel.load() is not None:
        assert backend.resolve("auto", "cpu") == "cpu"
        assert backend.resolve_conv(None, "cpu", 4) == "cpu"
    assert backend.resolve_conv("torch", "cpu", 4) == "ref"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_scan_adapter_meets_kernel_dtype_contract(fake_mamba, dtype):
    x = scan_inputs(2, 8, 4, 9, G=2, seed=1)
    x = {k: (v.to(dtype) if k in ("u", "B", "C", "z") else v) for k, v in x.items()}
    x["delta"] = x["delta"].double()  # any float dtype comes in; the kernel needs u's
    out, last = selective_scan_cuda(**x, delta_softplus=True, return_last_state=True)
    seen = fake_mamba[-1]
    assert seen["u"] == seen["delta"] == seen["B"] == seen["C"] == seen["z"] == dtype
    assert seen["A"] == seen["D"] == seen["delta_bias"] == torch.float32
    assert out.dtype == dtype and last.dtype == torch.float32
    ref = selective_scan_ref(**{k: v.to(dtype) if k == "delta" else v for k, v in x.items()},
                             delta_softplus=True)
    torch.testing.assert_close(out, ref)


def test_cuda_conv_adapter(fake_mamba):
    x = torch.randn(2, 6, 11, dtype=torch.bfloat16)
    w, b = torch.randn(6, 4), torch.randn(6, dtype=torch.float64)
    out = causal_conv1d_cuda(x, w, b, "silu")
    assert fake_mamba[-1] == {"x": torch.bfloat16, "weight": torch.float32, "bias": torch.float32}
    assert out.dtype == torch.bfloat16


def test_describe_and_available_are_json_friendly():
    d = describe_backends()
    json.dumps(d)
    assert {"requested", "auto_on_cpu", "auto_on_cuda", "cpu", "cuda", "torch", "ref"} <= d.keys()
    avail = available_backends("cpu", build=False)
    assert avail[:2] == ["ref", "torch"]


def test_conv_backend_argument_and_env(monkeypatch):
    x, w, b = torch.randn(1, 3, 8), torch.randn(3, 4), torch.randn(3)
    ref = causal_conv1d_ref(x, w, b, "silu")
    for name in ("ref", "torch", "auto"):
        assert_close_scaled(causal_conv1d(x, w, b, "silu", backend=name), ref, 1e-6, 1e-6)
    monkeypatch.setenv(backend.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="unknown scan backend"):
        causal_conv1d(x, w, b)


def test_extension_name_tracks_source_flags_and_cpu(monkeypatch):
    base = cpu_kernel.extension_name(True)
    assert base != cpu_kernel.extension_name(False)
    monkeypatch.setattr(cpu_kernel, "_cpu_fingerprint", lambda: "x86_64|avx2 fma")
    assert cpu_kernel.extension_name(True) != base  # another CPU never reuses a -march=native build
    portable = cpu_kernel.extension_name(False)
    monkeypatch.setattr(cpu_kernel, "BASE_FLAGS", cpu_kernel.BASE_FLAGS + ["-DX"])
    assert cpu_kernel.extension_name(False) != portable
    flagged = cpu_kernel.extension_name(False)
    monkeypatch.setattr(torch, "__file__", "/another/environment/site-packages/torch/__init__.py")
    assert cpu_kernel.extension_name(False) != flagged  # each environment keeps its own build


_CHILD = r"""
import os, sys, time, warnings, torch
from videomamba.ops import cpu_kernel, selective_scan
{setup}
u = torch.randn(1, 20, 33)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    out = selective_scan(u, u.sigmoid(), -torch.rand(20, 4), torch.randn(1, 4, 33),
                         torch.randn(1, 4, 33), delta_softplus=True)
    out = selective_scan(u, u.sigmoid(), -torch.rand(20, 4), torch.randn(1, 4, 33),
                         torch.randn(1, 4, 33), delta_softplus=True)
print("RESULT", cpu_kernel.load() is not None, bool(torch.isfinite(out).all()),
      sum("pure-torch" in str(x.message) for x in w), cpu_kernel.build_seconds(), flush=True)
"""


def _child(tmp_path, setup=""):
    env = {**os.environ, "VIDEOMAMBA_EXT_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop(backend.ENV_VAR, None)
    return subprocess.Popen([sys.executable, "-c", _CHILD.format(setup=setup)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(p, timeout):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT")][-1].split()
    return line[1] == "True", line[2] == "True", int(line[3]), line[4]


def test_failed_build_falls_back_and_warns_once(tmp_path):
    """A compiler that rejects the flags: load() gives None, auto uses torch and warns once."""
    p = _child(tmp_path, setup="cpu_kernel.BASE_FLAGS = ['-fno-such-flag-videomamba']")
    built, finite, warned, _ = _result(p, timeout=300)
    assert (built, finite, warned) == (False, True, 1)


def test_sources_are_staged_once_per_content(tmp_path):
    """Two checkouts of the same sources stage one set of copies, written once; other content
    is written over them."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "k.cpp").write_text("int f() { return 1; }\n")
    build = tmp_path / "build"
    first = cpu_kernel.staged_sources(str(build), [a / "k.cpp"])
    assert first == [str(build / "src" / "k.cpp")]
    stamp = os.stat(first[0]).st_mtime_ns
    time.sleep(0.02)
    assert cpu_kernel.staged_sources(str(build), [b / "k.cpp"]) == first
    assert os.stat(first[0]).st_mtime_ns == stamp          # not rewritten: ninja sees no change
    (b / "k.cpp").write_text("int f() { return 2; }\n")
    cpu_kernel.staged_sources(str(build), [b / "k.cpp"])
    assert (build / "src" / "k.cpp").read_text() == "int f() { return 2; }\n"


@pytest.mark.slow
def test_a_second_checkout_of_the_same_sources_reuses_the_build(tmp_path):
    """The build from one checkout serves another one with the same sources, without a rebuild."""
    cache = tmp_path / "cache"
    built, finite, _, secs = _result(_child(cache), timeout=900)
    assert built and finite
    lib = cache / cpu_kernel.extension_name(True) / f"{cpu_kernel.extension_name(True)}.so"
    stamp = lib.stat().st_mtime_ns
    other = tmp_path / "checkout2"
    other.mkdir()
    for src in cpu_kernel.SOURCES:
        (other / src.name).write_bytes(src.read_bytes())
    setup = f"from pathlib import Path; cpu_kernel.SOURCES = tuple(Path({str(other)!r}) / n for n in {[s.name for s in cpu_kernel.SOURCES]!r})"
    built, finite, _, secs = _result(_child(cache, setup=setup), timeout=900)
    assert built and finite and secs == "None"
    assert lib.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_concurrent_first_builds_share_one_build(tmp_path):
    """Three processes build at once into an empty cache holding a stale torch lock file (left by
    a killed build); all get the kernel, and one extension directory results."""
    name = cpu_kernel.extension_name(True)
    (tmp_path / name).mkdir()
    (tmp_path / name / "lock").write_text("")
    procs = [_child(tmp_path) for _ in range(3)]
    results = [_result(p, timeout=900) for p in procs]
    assert all(r[:3] == (True, True, 0) for r in results), results
    builds = [r[3] for r in results]
    assert sum(b != "None" for b in builds) == 1, builds  # one built; the others loaded its cache
    assert [d.name for d in tmp_path.iterdir()] == [name]
    assert not (tmp_path / name / "lock").exists()
