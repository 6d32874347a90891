import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models only: one torch thread (see tests/conftest.py)."""
    yield
