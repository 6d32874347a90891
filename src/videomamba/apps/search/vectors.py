"""The vector side of the index: FAISS on CPU, inner product on unit vectors (= cosine similarity).

Glossary: N stored vectors, d their width, Q queries, k results per query.

Kinds (``choose_kind`` picks one from N unless one is asked for):

- ``flat``: exact search (``IndexFlatIP`` under an id map). The default below ``AUTO_THRESHOLD``.
- ``ivf``: inverted lists (``IndexIVFFlat``, nlist ~ 4 sqrt(N), trained on a sample). The default
  past the threshold: it needs no second copy of the vectors and supports removal.
- ``hnsw``: a graph (``IndexHNSWFlat``, M = 32); fast queries, no removal (rebuilt instead).
- ``ivfpq``: inverted lists over product-quantised codes (d/8 bytes per vector); for very large
  collections, where the raw vectors would not fit in memory.

Approximate kinds are calibrated when built: the search breadth (``nprobe`` / ``efSearch``) grows until
recall@10 against exact search, on queries near stored vectors, reaches ``recall_target`` + 0.02.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
AUTO_THRESHOLD = 100_000
RECALL_K = 10
# Calibration queries lie at two distances from the stored rows (near duplicates and far ones), and the
# breadth must reach the target on both, plus a margin for queries unlike either.
CALIBRATION_SCALES = (1.0, 0.1)
CALIBRATION_MARGIN = 0.02


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("video search needs FAISS: pip install 'videomamba[search]' (faiss-cpu)") from None
    return faiss


def choose_kind(n: int, requested: str = "auto") -> str:
    if requested not in KINDS:
        raise ValueError(f"index type must be one of {KINDS}, got {requested!r}")
    if requested != "auto":
        return requested
    return "flat" if n < AUTO_THRESHOLD else "ivf"


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row positions of the exact top-k by inner product, (Q, k)."""
    faiss = _faiss()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def calibration_queries(vectors: np.ndarray, count: int = 200, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Queries near stored vectors: a random row plus ``scale`` times noise of the rows' per-dimension
    spread, unit norm."""
    rng = np.random.default_rng(seed)
    rows = vectors[rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)]
    noise = rng.standard_normal(rows.shape).astype(np.float32) * vectors.std(axis=0, keepdims=True) * scale
    q = rows + noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


class VectorStore:
    """One FAISS index with int64 ids and its search parameters (saved as ``PATH`` + ``PATH.json``)."""

    def __init__(self, index, kind: str, params: dict | None = None):
        self.index, self.kind, self.params = index, kind, dict(params or {})
        self._apply_params()

    # -- building -------------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> "VectorStore":
        faiss = _faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat", {"dim": dim})

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, kind: str = "auto", recall_target: float = 0.95,
              seed: int = 0, calibrate: bool = True) -> "VectorStore":
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n, d = vectors.shape
        kind = choose_kind(n, kind)
        params = {"dim": d, "trained_on": n, "recall_target": recall_target}
        if kind == "flat" or n < 2 * RECALL_K:
            kind = "flat"
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        elif kind == "hnsw":
            index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT))
            faiss.downcast_index(index.index).hnsw.efConstruction = 80
        else:
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(d)
            if kind == "ivfpq":
                m = next(m for m in (d // 8, d // 4, d // 2, d) if m and d % m == 0)   # 8 dims per byte
                index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
                index.pq.cp.niter = 10
                index.pq.cp.max_points_per_centroid = 64     # 16k points per sub-quantiser: enough for 256
            else:
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            # k-means on 40 points per list (FAISS's advice is >= 39), 10 iterations: calibration below
            # makes up for a coarser quantiser with a wider search
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(n, size=40 * nlist, replace=False)] if n > 40 * nlist else vectors
            index.cp.niter = 10
            index.train(sample)
            params["nlist"] = nlist
        index.add_with_ids(vectors, ids)
        store = cls(index, kind, params)
        if calibrate and kind != "flat":
            store.calibrate(vectors, ids, recall_target, seed)
        return store

    def _breadths(self) -> tuple[str, list[int]]:
        if self.kind == "hnsw":
            return "efSearch", [16, 32, 64, 128, 256, 512, 1024]
        nlist = self.params["nlist"]
        grid = sorted({min(2 ** i, nlist) for i in range(0, 20)})
        return "nprobe", grid

    def calibrate(self, vectors: np.ndarray, ids: np.ndarray, recall_target: float = 0.95,
                  seed: int = 0) -> float:
        """Smallest search breadth reaching ``recall_target`` at k=10 on queries near ``vectors``
        (the stored rows, with their ``ids``)."""
        ids = np.asarray(ids, dtype=np.int64)
        sets = []
        for scale in CALIBRATION_SCALES:
            q = calibration_queries(vectors, seed=seed, scale=scale)
            sets.append((q, ids[exact_search(vectors, q, RECALL_K)]))
        name, grid = self._breadths()
        recall = 0.0
        for v in grid:
            self.params[name] = v
            self._apply_params()
            recall = min(recall_at_k(self.search(q, RECALL_K)[1], truth) for q, truth in sets)
            if recall >= recall_target + CALIBRATION_MARGIN:
                break
        self.params["calibrated_recall"] = recall
        return recall

    def _apply_params(self):
        faiss = _faiss()
        if self.kind == "hnsw" and "efSearch" in self.params:
            faiss.downcast_index(self.index.index).hnsw.efSearch = int(self.params["efSearch"])
        if self.kind in ("ivf", "ivfpq") and "nprobe" in self.params:
            self.index.nprobe = int(self.params["nprobe"])

    # -- use ------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids) -> bool:
        """Remove ``ids``; False when this kind cannot remove (the caller rebuilds)."""
        if self.kind == "hnsw":
            return False
        self.index.remove_ids(np.ascontiguousarray(list(ids), dtype=np.int64))
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, d) -> scores (Q, k) and ids (Q, k); missing results have id -1."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index.search(q, max(1, int(k)))

    def memory_bytes(self) -> int:
        """Size of the serialised index: vectors or codes, ids, lists or graph."""
        return int(_faiss().serialize_index(self.index).size)

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from ...fileio import atomic_path, atomic_write_text

        path = Path(path)
        with atomic_path(path) as tmp:
            _faiss().write_index(self.index, str(tmp))
        atomic_write_text(Path(f"{path}.json"), json.dumps({"kind": self.kind, "params": self.params}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "VectorStore":
        path = Path(path)
        meta = json.loads(Path(f"{path}.json").read_text())
        return cls(_faiss().read_index(str(path)), meta["kind"], meta["params"])
