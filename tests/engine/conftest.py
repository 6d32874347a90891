import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every engine test trains or evaluates tiny models: see ``one_torch_thread`` in tests/conftest.py."""
    yield
