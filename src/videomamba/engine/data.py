"""Loaders whose order and augmentation randomness are a pure function of (seed, epoch, position).

That is what makes a resumed run exact: the sampler regenerates the epoch's permutation and skips
the samples already seen, and every item re-seeds the global RNGs (torch / numpy / random) from
(seed, epoch, index) while it is being loaded, whichever worker process loads it.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .distributed import DistInfo


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed (splitmix64 of the three numbers)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


class SeededItems(Dataset):
    """Wraps a map-style dataset; ``__getitem__((index, seed))`` loads ``index`` with all global RNGs
    seeded from ``seed`` and restores them afterwards (so the caller's random streams are untouched)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # classes, num_classes, bad_files, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded per-epoch permutation, one shard per rank) that yields
    ``(index, item_seed)`` pairs and can start part-way through an epoch (``set_start``)."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's shard of the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())
        for i in indices[self.start:]:
            yield i, item_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def make_loader(dataset, batch_size: int, info: DistInfo, train: bool, seed: int = 0,
                num_workers: int = 0, pin_memory: bool = False) -> tuple[DataLoader, ResumableSampler]:
    """A loader over ``SeededItems(dataset)``; evaluation shards are padded by the sampler and the
    duplicates are dropped after gathering (by index)."""
    sampler = ResumableSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=train,
                               seed=seed, drop_last=False)
    # The loader gets its own generator: otherwise creating an iterator draws from the global RNG,
    # and a resumed run (new iterator mid-epoch) would diverge from an uninterrupted one.
    g = torch.Generator()
    g.manual_seed(seed)
    loader = DataLoader(SeededItems(dataset), batch_size=batch_size, sampler=sampler, drop_last=train,
                        num_workers=num_workers, pin_memory=pin_memory, generator=g,
                        persistent_workers=num_workers > 0 and getattr(dataset, "cache", False))
    return loader, sampler


# --------------------------------------------------------------------------- from a config
def is_image_config(cfg) -> bool:
    """True when the config trains an image model (``videomamba_image_*``: (B, 3, H, W) input)."""
    from ..models.registry import get_config

    params = getattr(cfg.model, "params", {}) or {}
    if "image" in params:
        return bool(params["image"])
    try:
        return bool(getattr(get_config(cfg.model.name), "image", False))
    except ValueError:
        return False


def _annotation_kwargs(cfg, annotations: str, train: bool = True) -> dict | None:
    """LVU window settings for an LVU annotation file; for HMDB51's split folder, the subset (train
    for training, test for evaluation); other formats take none."""
    from pathlib import Path

    from ..data.annotations import detect_format

    d = cfg.data
    fmt = d.format
    if fmt == "auto" and Path(annotations).exists():
        try:
            fmt = detect_format(Path(annotations))
        except ValueError:
            return None
    if fmt == "hmdb51":
        return {"subset": "train" if train else "test"}
    if fmt != "lvu":
        return None
    return {"window": d.window, "stride": d.window_stride, "scheme": d.window_scheme}


def build_dataset(cfg, annotations: str, train: bool, classes=None, views: tuple[int, int] | None = None):
    """The dataset of a config: images for image models (:mod:`videomamba.data.images`), else videos."""
    from ..data import VideoDataset

    if is_image_config(cfg):
        from ..data.images import ImageDataset, image_augment

        return ImageDataset(annotations, root=cfg.data.root, fmt=cfg.data.format, train=train,
                            img_size=cfg.data.img_size, classes=classes,
                            augment=image_augment(cfg) if train else None)
    return VideoDataset.from_config(cfg.data, cfg.augment, annotations, train, classes, views,
                                    _annotation_kwargs(cfg, annotations, train))


def build_mixup(cfg, num_classes: int):
    """The data pipeline's Mixup when mixup or cutmix is on, else None (plain label smoothing)."""
    a = cfg.augment
    if cfg.task.type != "classification" or a.mixup_prob <= 0 or (a.mixup <= 0 and a.cutmix <= 0):
        return None
    from ..data import Mixup

    mix = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, switch_prob=a.switch_prob, prob=a.mixup_prob,
                label_smoothing=a.label_smoothing, num_classes=num_classes)
    if is_image_config(cfg):
        return _ImageMixup(mix)
    return mix


class _ImageMixup:
    """Mixup / cutmix for image batches (B, 3, H, W): a one-frame clip for the video Mixup."""

    def __init__(self, mix):
        self.mix = mix

    def __call__(self, x, y):
        if x.dim() == 4:
            x, target = self.mix(x.unsqueeze(2), y)
            return x.squeeze(2), target
        return self.mix(x, y)
