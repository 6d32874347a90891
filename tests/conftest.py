import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
OFFICIAL = Path(os.environ.get("VIDEOMAMBA_FIXTURES", FIXTURES)) / "official_tiny_t1.pt"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def official():
    if not OFFICIAL.is_file():
        pytest.skip(f"conformance fixture not found at {OFFICIAL} (set VIDEOMAMBA_FIXTURES)")
    return torch.load(OFFICIAL, weights_only=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-model training tests: as fast on an idle machine,
    several times faster on a loaded one (no OpenMP barriers waiting for a descheduled thread).
    ``train`` applies ``train.threads`` to the whole process, so the count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
