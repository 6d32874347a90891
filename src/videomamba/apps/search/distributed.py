"""Indexing on several processes or machines under ``torchrun``.

Rank 0 scans the paths and plans the work against the index (what is new, what a killed run already
committed); the plan goes to every rank; each rank embeds its share of the contents into a shard
index of its own (``INDEX/shards/rank<r>``, same model and windows); rank 0 then merges the shards
into the index, drops them and rebuilds the vectors. The shards must be on storage every rank
reaches (one machine, or a shared file system).

Shares are balanced by window count (largest first, to the least loaded rank). A run killed part-way
leaves its shards behind; the next run merges them first, so their windows are not embedded again.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from .embedders import load_embedder
from .index import AddReport, Index
from .windows import WindowSpec

SHARDS = "shards"


def split_work(todo: list, world: int) -> list[list]:
    """Greedy balance of contents over ranks by window count; deterministic."""
    shares: list[list] = [[] for _ in range(world)]
    load = [0] * world
    for p in sorted(todo, key=lambda p: (-len(p.plans), p.hash)):
        r = min(range(world), key=lambda i: (load[i], i))
        shares[r].append(p)
        load[r] += len(p.plans)
    return shares


def merge_shards(index: Index) -> int:
    """Merge and delete every shard left under ``index``; returns how many there were."""
    root = index.path / SHARDS
    if not root.is_dir():
        return 0
    n = 0
    for d in sorted(root.iterdir()):
        if not (d / "meta.sqlite").exists():
            shutil.rmtree(d, ignore_errors=True)
            continue
        with Index.open(d) as shard:
            index.merge_from(shard)
        shutil.rmtree(d)
        n += 1
    if not any(root.iterdir()):
        root.rmdir()
    return n


def index_distributed(paths, index_path, model_path: str | None, window: WindowSpec | None = None,
                      index_type: str | None = None, batch_size: int = 8, prune: bool = False,
                      all_files: bool = False, device: str = "auto", progress: bool = True) -> AddReport | None:
    """One rank's part of a ``torchrun`` indexing job; returns the merged report on rank 0, None elsewhere."""
    from ...engine import distributed as D

    info, dev = D.init_distributed(device)
    try:
        t0 = time.perf_counter()
        index_path = Path(index_path)
        embedder = load_embedder(model_path, device=str(dev))
        todo, report = None, None
        if info.is_main:
            index = Index.open(index_path, embedder, window=window, index_type=index_type)
            merge_shards(index)
            pending, report = index.scan(paths, all_files)
            if prune:
                report.files_removed += index.prune_missing()
            todo = index.plan(pending, report)
            window = index.window
        todo, window = D.broadcast_object((todo, window), info)
        mine = split_work(todo, info.world_size)[info.rank]
        shard_dir = index_path / SHARDS / f"rank{info.rank}"
        shard = Index.open(shard_dir, embedder, window=window, create=True)
        part = AddReport()
        shard.register(mine)
        shard.embed(mine, embedder, batch_size, progress and info.is_main, part)
        shard.close()
        parts = D.all_gather_objects(part, info)
        D.barrier(info)
        if not info.is_main:
            return None
        merge_shards(index)
        index.finish()
        for p in parts:
            report.windows_embedded += p.windows_embedded
            report.skipped += p.skipped
        report.seconds = time.perf_counter() - t0
        index.close()
        return report
    finally:
        D.cleanup_distributed()
