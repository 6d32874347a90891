import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/_requirements.py for every test module
from _requirements import FIXTURE_HOW, fixtures_dir, in_ci, require_file  # noqa: E402

FIXTURES = fixtures_dir()
OFFICIAL = FIXTURES / "official_tiny_t1.pt"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def official():
    return torch.load(require_file(OFFICIAL, FIXTURE_HOW), weights_only=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-model training tests: as fast on an idle machine,
    several times faster on a loaded one (no OpenMP barriers waiting for a descheduled thread).
    ``train`` applies ``train.threads`` to the whole process, so the count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ skips under CI, GPU tests
def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (and mamba_ssm / causal_conv1d); "
                            "deselected unless selected with -m gpu")


def pytest_collection_modifyitems(config, items):
    """GPU tests run only when asked for (``-m gpu``): a CPU machine deselects them rather than
    skipping them, so that the default run skips nothing."""
    if "gpu" in (config.getoption("-m") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("gpu") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _skip_message(rep) -> str:
    lr = rep.longrepr
    return lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def _fail_skip_under_ci(rep, what: str) -> None:
    if rep.skipped and not hasattr(rep, "wasxfail") and in_ci():
        rep.outcome = "failed"
        rep.longrepr = (f"{what} was skipped under CI={os.environ.get('CI')}, where every test must run: "
                        f"{_skip_message(rep)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI any skip (a missing kernel, fixture or optional package) is a failure."""
    outcome = yield
    _fail_skip_under_ci(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a module or folder skipped at collection (``importorskip`` at import time)."""
    outcome = yield
    _fail_skip_under_ci(outcome.get_result(), collector.nodeid or "collection")
