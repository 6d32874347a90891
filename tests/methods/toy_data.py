"""An in-memory labelled clip dataset (no decoding) for method tests through the engine."""
import torch
from torch.utils.data import Dataset


class MovingSquares(Dataset):
    """Class c: a bright square moving right (even c) or left (odd c) in row band c // 2."""

    def __init__(self, n=16, num_classes=4, frames=4, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.K, self.T, self.S = n, num_classes, frames, size
        self.base = torch.rand(n, 3, frames, size, size, generator=g) * 0.1
        self.classes = [f"class_{i}" for i in range(num_classes)]
        self.num_classes = num_classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        i = int(i)
        c = i % self.K
        x = self.base[i].clone()
        band = (c // 2) % 4
        for t in range(self.T):
            col = (t if c % 2 == 0 else self.T - 1 - t) * (self.S // self.T)
            x[:, t, band * 8:band * 8 + 8, col:col + 8] += 1.0
        return {"video": x, "label": c, "index": i, "path": f"clip_{i}.mp4"}
