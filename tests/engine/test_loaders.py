"""Resumable sampler and seeded items: the data order and augmentation are functions of (seed, epoch, index)."""
import random

import numpy as np
import torch

from videomamba.engine.data import ResumableSampler, SeededItems, item_seed, make_loader
from videomamba.engine.distributed import DistInfo

from toy import ToyVideos


def test_sampler_resume_skips_exactly_the_seen_samples():
    s = ResumableSampler(range(20), shuffle=True, seed=3)
    s.set_epoch(2)
    full = [i for i, _ in s]
    assert sorted(full) == list(range(20)) and full != list(range(20))
    s.set_start(7)
    assert [i for i, _ in s] == full[7:] and len(s) == 13
    s.set_epoch(3)
    s.set_start(0)
    assert [i for i, _ in s] != full                                 # a new permutation each epoch


def test_sampler_shards_ranks_disjointly():
    shards = []
    for rank in range(3):
        s = ResumableSampler(range(12), num_replicas=3, rank=rank, shuffle=True, seed=0)
        s.set_epoch(1)
        shards.append([i for i, _ in s])
    assert sorted(sum(shards, [])) == list(range(12))


def test_seeded_items_are_reproducible_and_leave_global_rng_alone():
    ds = SeededItems(ToyVideos(4, train=True))
    torch.manual_seed(123)
    random.seed(1)
    np.random.seed(1)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    a = ds[(1, item_seed(0, 0, 1))]["video"]
    b = ds[(1, item_seed(0, 0, 1))]["video"]
    c = ds[(1, item_seed(0, 1, 1))]["video"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(before[0], torch.get_rng_state()) and before[1] == random.getstate()
    assert np.array_equal(before[2], np.random.get_state()[1])
    assert ds.classes == ds.dataset.classes                              # attributes pass through


def test_loader_with_workers_matches_in_process():
    ds = ToyVideos(8, train=True)
    out = []
    for workers in (0, 2):
        loader, sampler = make_loader(ds, 4, DistInfo(), train=True, seed=5, num_workers=workers)
        sampler.set_epoch(1)
        out.append(torch.cat([b["video"] for b in loader]))
    assert torch.equal(out[0], out[1])
