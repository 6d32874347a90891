import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/_requirements.py for every test module
from _requirements import FIXTURE_HOW, README_INSTALL, fixtures_dir, in_ci, require_file  # noqa: E402

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


def _apply_skip_policy(rep, what: str) -> None:
    """Under CI a skip becomes a failure; elsewhere a skip message that does not say how to
    enable the test gets the README's set-up as the way."""
    if not rep.skipped or hasattr(rep, "wasxfail"):
        return
    if in_ci():
        rep.outcome = "failed"
        rep.longrepr = (f"{what} was skipped under CI={os.environ.get('CI')}, where every test must run: "
                        f"{_skip_message(rep)}")
    elif isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3 and "to run this test" not in rep.longrepr[2]:
        path, line, msg = rep.longrepr
        rep.longrepr = (path, line, f"{msg} -- to run this test: {README_INSTALL}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI any skip (a missing kernel, fixture or optional package) is a failure."""
    outcome = yield
    _apply_skip_policy(outcome.get_result(), item.nodeid)


_ci_collection_skips: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module or folder skipped at collection (``importorskip`` at import time): the same
    message rule; under CI it is recorded and fails the test run at the end (turning the report
    itself into a failure would stop the whole run as a collection error)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci():
        _ci_collection_skips.append(f"{collector.nodeid or 'collection'}: {_skip_message(rep)}")
    elif rep.skipped:
        _apply_skip_policy(rep, collector.nodeid)


def pytest_terminal_summary(terminalreporter):
    for line in _ci_collection_skips:
        terminalreporter.write_line(f"FAILED (skipped at collection under CI) {line}", red=True)


def pytest_sessionfinish(session, exitstatus):
    if _ci_collection_skips and exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def hf_teachers(tmp_path_factory):
    """Tiny randomly initialised transformers image models saved to local directories."""
    transformers = pytest.importorskip("transformers")
    import torch

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=16)
    out = {}
    clip_cfg = transformers.CLIPVisionConfig(projection_dim=24, **common)
    transformers.CLIPVisionModelWithProjection(clip_cfg).save_pretrained(root / "clip_proj")
    out["clip_proj"] = root / "clip_proj"
    transformers.CLIPVisionModel(clip_cfg).save_pretrained(root / "clip_plain")
    out["clip_plain"] = root / "clip_plain"
    transformers.ViTModel(transformers.ViTConfig(**common), add_pooling_layer=False).save_pretrained(root / "vit")
    out["vit"] = root / "vit"
    return out
