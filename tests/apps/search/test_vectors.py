"""The FAISS side: exact search against numpy, approximate kinds calibrated to recall@10 >= 0.95."""
import numpy as np
import pytest

from videomamba.apps.search.vectors import RECALL_K, VectorStore, choose_kind, exact_search, recall_at_k


def clustered(n, d, clusters=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_choose_kind():
    assert choose_kind(10) == "flat" and choose_kind(10**6) == "ivf" and choose_kind(10, "hnsw") == "hnsw"
    with pytest.raises(ValueError, match="index type"):
        choose_kind(10, "annoy")


def test_flat_is_exact_and_removes(tmp_path):
    x = clustered(500, 16)
    ids = np.arange(1000, 1500)
    store = VectorStore.build(x, ids, "flat")
    q = x[:7]
    scores, got = store.search(q, 5)
    order = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(got, ids[order])
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, order, 1), rtol=1e-5, atol=1e-6)
    assert store.remove([1000]) and store.ntotal == 499
    assert store.search(q[:1], 1)[1][0, 0] != 1000
    store.save(tmp_path / "v.faiss")
    again = VectorStore.load(tmp_path / "v.faiss")
    assert again.kind == "flat" and np.array_equal(again.search(q, 5)[1], store.search(q, 5)[1])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_reach_recall(kind):
    x = clustered(6000, 32, seed=1)
    ids = np.arange(len(x)) * 3
    store = VectorStore.build(x, ids, kind)
    assert store.params["calibrated_recall"] >= 0.95
    # fresh queries (another seed), recall against exact search
    rng = np.random.default_rng(7)
    q = x[rng.choice(len(x), 100, replace=False)] + 0.2 * rng.standard_normal((100, 32)).astype(np.float32)
    truth = ids[exact_search(x, q, RECALL_K)]
    assert recall_at_k(store.search(q, RECALL_K)[1], truth) >= 0.9
