"""Frozen token teachers for masked pretraining: a VideoMamba checkpoint or a ``transformers``
image model (CLIP ViT-B/16 in the papers) applied per frame.

Glossary: B batch, T frames, k student tubelet, t = T/k, h x w the student's token grid,
S = h*w, C teacher feature width.

Every teacher maps a student input (B, 3, T, H, W) and the student's token grid (t, h, w) to a
:class:`TeacherOutput` on that grid, in the student's canonical frame-major order:

- Spatial grid: the teacher input is resized (bicubic, as the release resizes clips for CLIP) to
  (h * p_teacher, w * p_teacher) so that the teacher's patch grid equals the student's. Position
  tables are interpolated for the new size (``interpolate_pos_encoding`` for transformers models,
  resampling inside VideoMamba).
- Time: a per-frame teacher gives T frames of tokens; with a student tubelet k, the k frames of
  each tubelet are averaged (tokens and attention). A VideoMamba teacher whose own tubelet is
  smaller than the student's is averaged the same way.
- cls: the teacher's cls feature, averaged over frames for per-frame teachers (the release's
  ``clip_return_cls``), or None when the teacher has none.

Teachers are frozen (eval, no gradients) and hold no state that trains.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distill import freeze
from .videomamba import VideoMamba

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TeacherOutput:
    tokens: torch.Tensor                    # (B, t*S, C) patch-token features, canonical order
    cls: torch.Tensor | None = None         # (B, C)
    attention: torch.Tensor | None = None   # (B, t*S) cls-to-patch attention, when asked for


def _as_video(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        x = x.unsqueeze(2)                                                       # (B, 3, 1, H, W)
    if x.dim() != 5:
        raise ValueError(f"teacher input must be (B, 3, T, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    return x


def _resize_frames(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, *size), bicubic per frame."""
    B, C, T, H, W = x.shape
    if (H, W) == tuple(size):
        return x
    y = F.interpolate(x.transpose(1, 2).reshape(B * T, C, H, W).float(), size=size, mode="bicubic",
                      align_corners=False).to(x.dtype)
    return y.reshape(B, T, C, *size).transpose(1, 2)


def _average_time(x: torch.Tensor, t: int, what: str) -> torch.Tensor:
    """(B, T_src, ...) -> (B, t, ...), averaging groups of T_src / t consecutive frames."""
    T_src = x.shape[1]
    if T_src == t:
        return x
    if T_src % t:
        raise ValueError(f"{what} has {T_src} temporal slices, which cannot be averaged into the "
                         f"student's {t} (the student's tubelet must be a multiple of the teacher's)")
    return x.reshape(x.shape[0], t, T_src // t, *x.shape[2:]).mean(2)


def _check_grid(x: torch.Tensor, grid) -> tuple[int, int, int, int]:
    t, h, w = grid
    T = x.shape[2]
    if T % t:
        raise ValueError(f"{T} frames do not split into the student's {t} tubelets")
    return t, h, w, T // t


class VideoMambaTeacher(nn.Module):
    """A frozen VideoMamba; its final (normalised) tokens are the targets."""

    def __init__(self, model: VideoMamba):
        super().__init__()
        self.model = freeze(model)
        self.dim = model.embed_dim
        self.has_attention = False

    def train(self, mode: bool = True):           # stays in eval whatever the parent does
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], need_attention: bool = False) -> TeacherOutput:
        if need_attention:
            raise ValueError("a VideoMamba teacher has no attention for mask type 'attention'; use random, tube, "
                             "frame_row or clip_row masks, or a transformers ViT/CLIP teacher")
        x = _as_video(x)
        t, h, w, _ = _check_grid(x, grid)
        cfg, p = self.model.cfg, self.model.cfg.patch_size
        x = _resize_frames(x, (h * p, w * p))
        B, _, T = x.shape[:3]
        if cfg.image:                                     # image teacher: one pass per frame
            tok = self.model.forward_features(x.transpose(1, 2).reshape(B * T, 3, h * p, w * p))
            t_src = T
        else:
            tok = self.model.forward_features(x)          # (B, 1 + (T/k_t)*S, D)
            t_src = T // cfg.tubelet_size
        ci = self.model.cls_index(tok.shape[1] - cfg.num_cls)
        cls = None
        if ci is not None:
            cls = tok[:, ci].reshape(B, -1, tok.shape[-1]).mean(1)              # (B, D), frames averaged
            tok = torch.cat([tok[:, :ci], tok[:, ci + 1:]], dim=1)
        tok = _average_time(tok.reshape(B, t_src, h * w, -1), t, "the VideoMamba teacher's tokens")
        tok = tok.reshape(B, t * h * w, -1)
        return TeacherOutput(tokens=tok, cls=cls)


class HFImageTeacher(nn.Module):
    """A ``transformers`` image encoder (CLIP vision tower, ViT, ...) applied to every frame.

    Targets are the last layer's patch tokens: for CLIP after ``post_layernorm`` and, when the
    checkpoint has one and ``project`` is true, ``visual_projection`` (as the release projects
    CLIP tokens with ``ln_post`` and ``proj``); for ViT-style models the final layer norm output.
    Input pixels arrive normalised with ``input_mean`` / ``input_std`` (the student's, ImageNet by
    default) and are re-normalised with the teacher's own statistics (``preprocessor_config.json``
    when present, else CLIP's for CLIP models and 0.5 / 0.5 otherwise).
    """

    def __init__(self, model: nn.Module, mean=None, std=None, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD,
                 project: bool = True):
        super().__init__()
        self.model = freeze(model)
        cfg = model.config
        self.patch_size = int(cfg.patch_size)
        self.image_size = int(cfg.image_size)
        self.projection = getattr(model, "visual_projection", None) if project else None
        self.post_norm = getattr(getattr(model, "vision_model", None), "post_layernorm", None)
        self.dim = self.projection.out_features if self.projection is not None else int(cfg.hidden_size)
        is_clip = "clip" in str(getattr(cfg, "model_type", ""))
        mean = mean or (OPENAI_CLIP_MEAN if is_clip else (0.5, 0.5, 0.5))
        std = std or (OPENAI_CLIP_STD if is_clip else (0.5, 0.5, 0.5))
        # x_teacher = (x * s_in + m_in - m) / s  as one affine map per channel
        scale = torch.tensor(input_std) / torch.tensor(std)
        shift = (torch.tensor(input_mean) - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.has_attention = True

    def train(self, mode: bool = True):
        return super().train(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "HFImageTeacher":
        """Load from a LOCAL directory (``save_pretrained`` output); nothing is downloaded."""
        try:
            import transformers
        except ImportError:
            raise ImportError("an image-model teacher needs the 'transformers' package "
                              "(pip install 'videomamba[text]' or pip install transformers)") from None
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"teacher directory {path} has no config.json (expected a transformers "
                                    "save_pretrained directory)")
        meta = json.loads(cfg_file.read_text())
        mtype = meta.get("model_type", "")
        # eager attention: the SDPA kernels do not return attention weights
        load = dict(local_files_only=True, attn_implementation="eager", output_loading_info=True)
        if mtype in ("clip", "clip_vision_model"):
            model, info = transformers.CLIPVisionModelWithProjection.from_pretrained(str(path), **load)
            if any("visual_projection" in k for k in info.get("missing_keys", ())):
                model, info = transformers.CLIPVisionModel.from_pretrained(str(path), **load)
        else:
            model, info = transformers.AutoModel.from_pretrained(str(path), **load)
            if not hasattr(model.config, "patch_size"):
                raise ValueError(f"teacher {path}: model type {mtype!r} is not a patch-token image encoder "
                                 "(expected CLIP or ViT-like with config.patch_size)")
        missing = [k for k in info.get("missing_keys", ()) if "pooler" not in k]
        if missing:
            raise ValueError(f"teacher {path}: weights missing for {sorted(missing)[:5]} "
                             f"({len(missing)} keys); the checkpoint does not fit its config")
        pre = path / "preprocessor_config.json"
        if pre.is_file() and "mean" not in kwargs:
            p = json.loads(pre.read_text())
            if "image_mean" in p and "image_std" in p:
                kwargs.update(mean=tuple(p["image_mean"]), std=tuple(p["image_std"]))
        return cls(model, **kwargs)

    def _post(self, h: torch.Tensor) -> torch.Tensor:
        if self.post_norm is not None:
            h = self.post_norm(h)
        if self.projection is not None:
            h = self.projection(h)
        return h

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], need_attention: bool = False) -> TeacherOutput:
        x = _as_video(x)
        t, h, w, k = _check_grid(x, grid)
        p = self.patch_size
        size = (h * p, w * p)
        x = _resize_frames(x, size)
        B, C, T = x.shape[:3]
        frames = x.transpose(1, 2).reshape(B * T, C, *size).float() * self.scale + self.shift
        out = self.model(pixel_values=frames, output_attentions=need_attention,
                         interpolate_pos_encoding=size != (self.image_size, self.image_size))
        hid = out.last_hidden_state                                              # (B*T, 1 + S', hidden)
        if hid.shape[1] != 1 + h * w:
            raise ValueError(f"teacher returned {hid.shape[1]} tokens per frame, expected 1 cls + {h}x{w} "
                             "patches (models with register or distillation tokens are not supported)")
        feats = self._post(hid)                                                  # (B*T, 1 + S, C)
        cls = feats[:, 0].reshape(B, T, -1).mean(1)
        tok = _average_time(feats[:, 1:].reshape(B, T, h * w, -1), t, "the teacher's frames")
        attn = None
        if need_attention:
            a = out.attentions[-1][:, :, 0, 1:].float().mean(1)                 # (B*T, S): cls row, mean over heads
            attn = _average_time(a.reshape(B, T, h * w), t, "the teacher's attention").reshape(B, t * h * w)
        return TeacherOutput(tokens=tok.reshape(B, t * h * w, -1), cls=cls, attention=attn)


def load_teacher(spec: str | Path, model_name: str | None = None, allow_unsafe: bool = False,
                 model_overrides: dict | None = None, **hf_kwargs) -> nn.Module:
    """A frozen teacher from a path.

    - a directory written by ``save_pretrained`` (``config.json`` with VideoMamba fields) or any
      checkpoint file with ``model_name`` (a preset; ``model_overrides`` are config fields on
      top of it) -> :class:`VideoMambaTeacher`;
    - a ``transformers`` directory (``config.json`` with ``model_type``) -> :class:`HFImageTeacher`.
    """
    from .registry import create_model

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"teacher {path} does not exist")
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"teacher directory {path} has no config.json: expected a VideoMamba "
                                    "save_pretrained directory or a transformers model directory")
        meta = json.loads(cfg_file.read_text())
        if "model_type" in meta or "architectures" in meta:
            return HFImageTeacher.from_pretrained(path, **hf_kwargs)
        return VideoMambaTeacher(create_model(None, pretrained=path))
    if model_name is None:
        raise ValueError(f"teacher checkpoint file {path} needs a model preset to build the network "
                         "(--teacher-model NAME), or pass a directory written by save_pretrained")
    from ..checkpoint import load_checkpoint

    model = create_model(model_name, **{**(model_overrides or {}), "num_classes": 0})
    load_checkpoint(model, path, allow_unsafe=allow_unsafe)
    return VideoMambaTeacher(model)
