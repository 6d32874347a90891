"""Small videos with known motion, a hand-made video-text model that reads motion, a tiny classifier."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from videomamba.data.synthetic import write_mp4

DIRECTIONS = ("left", "right", "up", "down")
_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def motion_video(moves: list[str], seconds_each: float = 4.0, fps: int = 8, size: int = 64) -> np.ndarray:
    """A white square on black that moves in each direction of ``moves`` for ``seconds_each`` seconds,
    crossing the middle third of the frame back and forth. uint8 (T, H, W, 3)."""
    frames = []
    sq = size // 8
    x, y = size / 2, size / 2
    per = int(round(seconds_each * fps))
    travel = size / 3
    for m in moves:
        dx, dy = _STEP[m]
        x0, y0 = x - dx * travel / 2, y - dy * travel / 2          # each segment restarts centred on its path
        for t in range(per):
            u = t / max(per - 1, 1)
            cx, cy = x0 + dx * travel * u, y0 + dy * travel * u
            f = np.zeros((size, size, 3), np.uint8)
            f[int(cy - sq):int(cy + sq), int(cx - sq):int(cx + sq)] = 255
            frames.append(f)
    return np.stack(frames)


def write_motion_video(path: Path, moves: list[str], seconds_each: float = 4.0, fps: int = 8,
                       size: int = 64) -> Path:
    write_mp4(path, motion_video(moves, seconds_each, fps, size), fps=fps)
    return path


@dataclass
class MotionConfig:
    num_frames: int = 8
    img_size: int = 64


class MotionTextModel(nn.Module):
    """A video-text model by hand: the video vector says which way the bright blob moved (first frame's
    centroid to last), the text vector which direction word the query holds. Same API as the library's
    video-text model: ``encode_video((B, 3, T, H, W)) -> (B, d)``, ``encode_text(list[str]) -> (B, d)``."""

    def __init__(self, cfg: MotionConfig | None = None):
        super().__init__()
        self.cfg = cfg or MotionConfig()
        self.register_buffer("scale", torch.tensor(1.0))
        self.video_calls = 0

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        self.video_calls += x.shape[0]
        w = x.mean(1)                                                   # (B, T, H, W)
        w = (w - w.amin(dim=(-2, -1), keepdim=True)).clamp_min(0)
        H, W = w.shape[-2:]
        ys = torch.arange(H, dtype=w.dtype).view(1, 1, H, 1)
        xs = torch.arange(W, dtype=w.dtype).view(1, 1, 1, W)
        mass = w.sum(dim=(-2, -1)).clamp_min(1e-6)
        cx = (w * xs).sum(dim=(-2, -1)) / mass                          # (B, T)
        cy = (w * ys).sum(dim=(-2, -1)) / mass
        dx, dy = cx[:, -1] - cx[:, 0], cy[:, -1] - cy[:, 0]
        z = torch.stack([(-dx).clamp_min(0), dx.clamp_min(0), (-dy).clamp_min(0), dy.clamp_min(0),
                         torch.full_like(dx, 0.05)], 1) * self.scale
        return nn.functional.normalize(z, dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            words = t.lower().replace("?", " ").split()
            rows.append([float(d in words) for d in DIRECTIONS] + [0.05])
        return nn.functional.normalize(torch.tensor(rows), dim=-1)


def tiny_classifier(seed: int = 0):
    import videomamba

    torch.manual_seed(seed)
    return videomamba.create_model("videomamba_tiny", embed_dim=32, depth=2, num_frames=4, img_size=32,
                                   num_classes=4, init="fan_in", pos_init_std=0.3)


def tiny_video_text(out: Path, seed: int = 0) -> Path:
    """An untrained small video-text model (the library's), saved where ``create_model(None,
    pretrained=out)`` finds it, with a WordPiece vocabulary trained on a few captions."""
    import videomamba
    from videomamba.models.text import TextTokenizer, train_wordpiece
    from videomamba.models.video_text import build_video_text_model

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    vocab = train_wordpiece(["a red square moving to the left", "a blue kite moving up", "a shape moving down",
                             "a green ellipse moving to the right"], out / "vocab.txt", vocab_size=60)
    tok = TextTokenizer(vocab, 12)
    vision = videomamba.get_config("videomamba_tiny", embed_dim=32, depth=2, num_frames=4, img_size=32,
                                   num_classes=0)
    text = {"hidden_size": 32, "num_hidden_layers": 2, "fusion_layer": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "vocab_size": tok.vocab_size}
    model = build_video_text_model(None, tok, vision=vision, text=text, embed_dim=16, max_txt_l=12)
    videomamba.save_pretrained(model, out)
    tok.save(out)
    return out
