"""Tiny in-memory video datasets for engine tests (no decoding: fast and dependency-free)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

TINY_MODEL = {"model.embed_dim": 32, "model.depth": 2, "model.patch_size": 8}


class ToyVideos(Dataset):
    """Class c: a bright square moving right (c even) or left (c odd) along row band c // 2.

    ``train=True`` adds fresh noise from the global torch RNG on every access, like a random
    augmentation would, so loaders must seed items for runs to be reproducible.
    ``views > 1`` returns (V, 3, T, H, W) clips.
    """

    def __init__(self, n: int = 16, num_classes: int = 4, frames: int = 4, size: int = 32, train: bool = True,
                 views: int = 1, seed: int = 0, regression: bool = False, nan_at: int | None = None):
        self.n, self.K, self.T, self.S, self.train, self.V = n, num_classes, frames, size, train, views
        self.regression, self.nan_at = regression, nan_at
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % num_classes
        self.base = torch.rand(n, 3, frames, size, size, generator=g) * 0.1
        self.classes = [f"class_{i}" for i in range(num_classes)]
        self.num_classes = 1 if regression else num_classes

    def __len__(self):
        return self.n

    def _clip(self, i):
        c = int(self.labels[i])
        x = self.base[i].clone()
        band = (c // 2) % 4
        for t in range(self.T):
            pos = t if c % 2 == 0 else self.T - 1 - t
            col = pos * (self.S // self.T)
            x[:, t, band * 8:band * 8 + 8, col:col + 8] += 1.0
        if self.train:
            x = x + 0.05 * torch.randn_like(x)
        if self.nan_at is not None and i == self.nan_at:
            x[:] = float("nan")
        return x

    def __getitem__(self, i):
        i = int(i)
        x = self._clip(i)
        if self.V > 1:
            x = torch.stack([x] * self.V)
        label = float(self.labels[i]) / self.K if self.regression else int(self.labels[i])
        return {"video": x, "label": label, "index": i, "path": f"toy_{i}.mp4"}
