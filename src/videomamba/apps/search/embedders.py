"""Turn models into window and text embedders for the index.

Glossary: B windows in a batch, T frames, H = W input size, d the embedding width.

Two kinds of model are understood:

- a **video-text** model (``encode_video(x: (B, 3, T, H, W)) -> (B, d)``, the mean of unit per-frame
  vectors, and ``encode_text(list[str]) -> (B, d)``, unit vectors; their dot product is the model's
  similarity, so neither is renormalised here): text and example queries;
- a **classifier** (``videomamba.VideoMamba``): a window is the L2-normalised pre-logits feature
  ``forward_head(forward_features(x), pre_logits=True)``; example (``--like``) queries only.

The model id is a hash of the model's config and state dict: an index records it and refuses
queries embedded by any other model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data.clip_config import ClipConfig
from .windows import clip_spec

KINDS = ("video_text", "classifier")


class TextQueryUnsupported(ValueError):
    """A text query for an index (or model) that embeds video only."""


def _config_dict(cfg) -> dict:
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    return dict(vars(cfg)) if hasattr(cfg, "__dict__") else {"repr": repr(cfg)}


def model_id(model: torch.nn.Module) -> str:
    """sha256 (hex, 16 chars) over the model's config (JSON, sorted keys) and every state-dict tensor
    (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    h.update(json.dumps(_config_dict(getattr(model, "cfg", None)), sort_keys=True, default=str).encode())
    sd = model.state_dict()
    for name in sorted(sd):
        t = sd[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def model_kind(model) -> str:
    if callable(getattr(model, "encode_video", None)) and callable(getattr(model, "encode_text", None)):
        return "video_text"
    if callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None)):
        return "classifier"
    raise ValueError(f"{type(model).__name__} is neither a video-text model (encode_video / encode_text) "
                     "nor a classifier backbone (forward_features / forward_head)")


class Embedder:
    """Embeds batches of windows (and text, for video-text models) as float32 numpy rows."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu",
                 clip: ClipConfig | None = None, source: str | None = None):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.kind = model_kind(model)
        self.clip = clip or clip_spec(model)
        self.model_id = model_id(model)
        self.source = source
        self.calls = 0                     # windows embedded by this object (for bookkeeping checks)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            c = self.clip
            x = torch.zeros(1, 3, c.num_frames, c.img_size, c.img_size)
            self._dim = int(self._video(x).shape[1])
        return self._dim

    @torch.inference_mode()
    def _video(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.kind == "video_text":
            # kept as the model gives it (the mean of unit per-frame vectors, norm <= 1): its dot product
            # with a text vector is the model's own similarity
            return self.model.encode_video(x).float()
        z = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return F.normalize(z.float(), dim=-1)

    def embed_video(self, x: torch.Tensor) -> np.ndarray:
        """(B, 3, T, H, W) normalised input -> (B, d) float32."""
        z = self._video(x)
        self.calls += x.shape[0]
        return z.cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        if self.kind != "video_text":
            raise TextQueryUnsupported(
                "text queries need a video-text model; this one is a classifier, which embeds video only: "
                "search by example with --like CLIP.mp4")
        z = self.model.encode_text(list(texts))
        return z.float().cpu().numpy().astype(np.float32, copy=False)


def load_embedder(path: str | Path, device: str = "auto") -> Embedder:
    """Load a model through the library's single way in (``create_model(None, pretrained=path)``)."""
    from ...engine.distributed import resolve_device
    from ...models import create_model

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist (expected a saved model directory or checkpoint)")
    model = create_model(None, pretrained=str(path))
    return Embedder(model, resolve_device(device), source=str(path.resolve()))
