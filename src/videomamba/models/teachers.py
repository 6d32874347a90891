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

Targets as the release computes them (``video_sm/models/clip.py``), as options of the image teachers:

- ``final_norm=False``: the returned tokens skip the final layer norm (``ln_post`` /
  ``post_layernorm``); the release skips it whenever it returns the cls token (its
  ``clip_return_cls``, on in its pretraining scripts), and projects the raw last-layer tokens.
- ``input_norm="imagenet"``: the teacher gets the clip's ImageNet-normalised pixels as they are
  (the release feeds the student's input to CLIP unchanged); ``"renormalise"`` maps them to the
  teacher's own statistics first.
- ``return_layers=K``, ``interval=i``: the outputs of layers ``L-1, L-1-i, ..., L-1-(K-1)i`` (each
  projected like the last), returned in ``TeacherOutput.layers`` from shallow to deep, as the
  release stacks them.

Weights: a ``transformers`` directory (:class:`HFImageTeacher`) or the release's extracted CLIP
visual-encoder state dict in OpenAI's layout (``conv1``, ``class_embedding``,
``transformer.resblocks.*``, ``ln_post``, ``proj``; :class:`OpenAICLIPTeacher`), read with
:func:`videomamba.checkpoint.load_state_dict_file`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distill import freeze
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .videomamba import VideoMamba

OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TeacherOutput:
    tokens: torch.Tensor                    # (B, t*S, C) patch-token features, canonical order
    cls: torch.Tensor | None = None         # (B, C)
    attention: torch.Tensor | None = None   # (B, t*S) cls-to-patch attention, when asked for
    layers: list | None = None              # multi-layer targets: [(tokens, cls), ...] shallow -> deep
                                            # (the last is ``tokens`` / ``cls``); None: one layer


def return_indices(num_layers: int, k: int = 1, interval: int = 1) -> list[int]:
    """The release's aligned layers ``L-1 - i*interval`` for i < k, in increasing order."""
    idx = sorted(num_layers - 1 - i * interval for i in range(k))
    if idx[0] < 0:
        raise ValueError(f"{k} layers every {interval} do not fit a {num_layers}-layer model")
    return idx


def _input_affine(input_mean, input_std, mean, std, input_norm: str):
    """Per-channel (scale, shift) with x_teacher = x * scale + shift."""
    if input_norm not in ("renormalise", "imagenet"):
        raise ValueError(f"input_norm must be 'renormalise' or 'imagenet', got {input_norm!r}")
    if input_norm == "imagenet":
        return torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    scale = torch.tensor(input_std) / torch.tensor(std)
    shift = (torch.tensor(input_mean) - torch.tensor(mean)) / torch.tensor(std)
    return scale.view(1, 3, 1, 1), shift.view(1, 3, 1, 1)


def _frames_output(per_layer: list, B: int, T: int, t: int, h: int, w: int, attn_rows=None) -> TeacherOutput:
    """Per-frame features [(B*T, 1 + S, C) per layer, shallow -> deep] -> TeacherOutput on the grid:
    cls averaged over frames, tokens averaged over each tubelet's frames."""
    outs = []
    for feats in per_layer:
        if feats.shape[1] != 1 + h * w:
            raise ValueError(f"teacher returned {feats.shape[1]} tokens per frame, expected 1 cls + {h}x{w} "
                             "patches (models with register or distillation tokens are not supported)")
        cls = feats[:, 0].reshape(B, T, -1).mean(1)
        tok = _average_time(feats[:, 1:].reshape(B, T, h * w, -1), t, "the teacher's frames")
        outs.append((tok.reshape(B, t * h * w, -1), cls))
    attn = None
    if attn_rows is not None:                                                   # (B*T, S)
        attn = _average_time(attn_rows.float().reshape(B, T, h * w), t, "the teacher's attention").reshape(B, t * h * w)
    tok, cls = outs[-1]
    return TeacherOutput(tokens=tok, cls=cls, attention=attn, layers=outs if len(outs) > 1 else None)


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
                 project: bool = True, final_norm: bool = True, input_norm: str = "renormalise",
                 return_layers: int = 1, interval: int = 1):
        super().__init__()
        self.model = freeze(model)
        cfg = model.config
        self.final_norm = bool(final_norm)
        self.layer_ids = return_indices(int(cfg.num_hidden_layers), return_layers, interval)
        self.patch_size = int(cfg.patch_size)
        self.image_size = int(cfg.image_size)
        self.projection = getattr(model, "visual_projection", None) if project else None
        self.post_norm = getattr(getattr(model, "vision_model", None), "post_layernorm", None)
        self.dim = self.projection.out_features if self.projection is not None else int(cfg.hidden_size)
        is_clip = "clip" in str(getattr(cfg, "model_type", ""))
        mean = mean or (OPENAI_CLIP_MEAN if is_clip else (0.5, 0.5, 0.5))
        std = std or (OPENAI_CLIP_STD if is_clip else (0.5, 0.5, 0.5))
        # x_teacher = (x * s_in + m_in - m) / s  as one affine map per channel
        scale, shift = _input_affine(input_mean, input_std, mean, std, input_norm)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
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
        if self.post_norm is not None and self.final_norm:
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
        multi = len(self.layer_ids) > 1
        out = self.model(pixel_values=frames, output_attentions=need_attention, output_hidden_states=multi,
                         interpolate_pos_encoding=size != (self.image_size, self.image_size))
        hids = [out.hidden_states[i + 1] for i in self.layer_ids] if multi else [out.last_hidden_state]
        rows = out.attentions[-1][:, :, 0, 1:].float().mean(1) if need_attention else None  # cls row, head mean
        return _frames_output([self._post(hd) for hd in hids], B, T, t, h, w, rows)


class _OpenAIBlock(nn.Module):
    """OpenAI CLIP's residual attention block: x + attn(ln_1(x)); x + mlp(ln_2(x)), QuickGELU."""

    def __init__(self, width: int, heads: int, mlp: int | None = None):
        super().__init__()
        self.heads = heads
        mlp = mlp or 4 * width
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)
        self.c_fc, self.c_proj = nn.Linear(width, mlp), nn.Linear(mlp, width)

    def forward(self, x: torch.Tensor, need_attention: bool = False):
        N, L, C = x.shape
        q, k, v = self.in_proj(self.ln_1(x)).reshape(N, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q * (C // self.heads) ** -0.5) @ k.transpose(-1, -2), dim=-1)   # (N, heads, L, L)
        x = x + self.out_proj((a @ v).transpose(1, 2).reshape(N, L, C))
        hdn = self.c_fc(self.ln_2(x))
        x = x + self.c_proj(hdn * torch.sigmoid(1.702 * hdn))
        return x, (a.mean(1) if need_attention else None)


class OpenAICLIPTeacher(nn.Module):
    """The CLIP visual encoder from a state dict in OpenAI's layout (the release's extracted
    ``vit_b16.pth``: ``conv1.weight``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
    ``transformer.resblocks.{i}.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``,
    ``ln_post``, ``proj``; a ``visual.`` prefix is accepted). The architecture (width, depth, patch,
    output width) is read from the tensors; heads have 64 channels unless ``heads`` says otherwise. Applied per frame; see the module
    docstring for ``final_norm`` / ``input_norm`` / ``return_layers``. Defaults follow the release's
    pretraining: no final norm, ImageNet-normalised input, one layer."""

    def __init__(self, state_dict: dict, final_norm: bool = False, input_norm: str = "imagenet",
                 return_layers: int = 1, interval: int = 1, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD,
                 source: str = "state dict", heads: int | None = None):
        super().__init__()
        sd = {k[len("visual."):] if k.startswith("visual.") else k: v for k, v in state_dict.items()}
        need = ["conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_post.weight", "proj"]
        missing = [k for k in need if k not in sd]
        if missing:
            raise ValueError(f"{source}: not a CLIP visual encoder in OpenAI's layout (missing {missing}; expected "
                             "conv1.weight, class_embedding, positional_embedding, transformer.resblocks.*, ln_post, proj)")
        conv = sd["conv1.weight"]
        if conv.dim() == 5:                                   # the release's Conv3d with a 1-frame kernel
            if conv.shape[2] != 1:
                raise ValueError(f"{source}: conv1.weight has a {conv.shape[2]}-frame kernel; only per-frame CLIP is supported")
            conv = conv[:, :, 0]
        width, patch = conv.shape[0], conv.shape[-1]
        depth = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        if heads is None:                                     # OpenAI's CLIP: 64 channels per head
            heads = width // 64
        if depth < 1 or heads < 1 or width % heads:
            raise ValueError(f"{source}: width {width}, {depth} blocks, {heads} heads do not make a CLIP ViT "
                             "(OpenAI's have 64 channels per head; pass heads= for others)")
        self.patch_size, self.width, self.depth = int(patch), int(width), depth
        self.grid = int(round((sd["positional_embedding"].shape[0] - 1) ** 0.5))
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(self.grid ** 2 + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        fc = sd.get("transformer.resblocks.0.mlp.c_fc.weight")
        self.blocks = nn.ModuleList(_OpenAIBlock(width, heads, fc.shape[0] if fc is not None else None)
                                    for _ in range(depth))
        self.proj = nn.Parameter(torch.zeros(sd["proj"].shape))
        own = {"conv1.weight": conv, "class_embedding": sd["class_embedding"],
               "positional_embedding": sd["positional_embedding"], "proj": sd["proj"]}
        for n in ("ln_pre", "ln_post"):
            own[f"{n}.weight"], own[f"{n}.bias"] = sd[f"{n}.weight"], sd[f"{n}.bias"]
        names = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.out_proj": "out_proj", "mlp.c_fc": "c_fc", "mlp.c_proj": "c_proj"}
        try:
            for i in range(depth):
                pre = f"transformer.resblocks.{i}."
                own[f"blocks.{i}.in_proj.weight"] = sd[pre + "attn.in_proj_weight"]
                own[f"blocks.{i}.in_proj.bias"] = sd[pre + "attn.in_proj_bias"]
                for src, dst in names.items():
                    for kind in ("weight", "bias"):
                        own[f"blocks.{i}.{dst}.{kind}"] = sd[f"{pre}{src}.{kind}"]
            self.load_state_dict(own)
        except (KeyError, RuntimeError) as e:
            raise ValueError(f"{source}: CLIP weights do not fit the architecture read from them ({e})") from None
        freeze(self)
        self.dim = int(sd["proj"].shape[1])
        self.final_norm = bool(final_norm)
        self.layer_ids = return_indices(depth, return_layers, interval)
        scale, shift = _input_affine(input_mean, input_std, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, input_norm)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        self.has_attention = True

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "OpenAICLIPTeacher":
        from ..checkpoint import load_state_dict_file

        obj = load_state_dict_file(path)
        if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            obj = obj.get("model") or obj.get("state_dict") or obj
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
        return cls(obj, source=str(path), **kwargs)

    def train(self, mode: bool = True):
        return super().train(False)

    def _positions(self, h: int, w: int) -> torch.Tensor:
        pe = self.positional_embedding
        if (h, w) == (self.grid, self.grid):
            return pe
        grid = pe[1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1).to(pe.dtype)])

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], need_attention: bool = False) -> TeacherOutput:
        x = _as_video(x)
        t, h, w, _ = _check_grid(x, grid)
        p = self.patch_size
        x = _resize_frames(x, (h * p, w * p))
        B, C, T = x.shape[:3]
        frames = x.transpose(1, 2).reshape(B * T, C, h * p, w * p).float() * self.scale + self.shift
        z = self.conv1(frames).flatten(2).transpose(1, 2)                      # (B*T, S, width)
        z = torch.cat([self.class_embedding.expand(z.shape[0], 1, -1), z], 1) + self._positions(h, w)
        z = self.ln_pre(z)
        feats, attn = [], None
        for i, blk in enumerate(self.blocks):
            z, a = blk(z, need_attention and i == self.depth - 1)
            if a is not None:
                attn = a[:, 0, 1:]
            if i in self.layer_ids:
                feats.append((self.ln_post(z) if self.final_norm else z) @ self.proj)
        return _frames_output(feats, B, T, t, h, w, attn)


def _is_openai_clip(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from ..checkpoint import load_state_dict_file
        obj = load_state_dict_file(path)
    except Exception:                                       # noqa: BLE001 (not a readable state dict: not CLIP)
        return False
    keys = obj.keys() if isinstance(obj, dict) else ()
    return any(k in keys for k in ("conv1.weight", "visual.conv1.weight"))


def load_teacher(spec: str | Path, model_name: str | None = None, allow_unsafe: bool = False,
                 model_overrides: dict | None = None, **hf_kwargs) -> nn.Module:
    """A frozen teacher from a path.

    - a directory written by ``save_pretrained`` (``config.json`` with VideoMamba fields) or any
      checkpoint file with ``model_name`` (a preset; ``model_overrides`` are config fields on
      top of it) -> :class:`VideoMambaTeacher`;
    - a ``transformers`` directory (``config.json`` with ``model_type``) -> :class:`HFImageTeacher`.
    - a CLIP visual-encoder state-dict file in OpenAI's layout -> :class:`OpenAICLIPTeacher`.
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
    if _is_openai_clip(path):
        return OpenAICLIPTeacher.from_file(path, **hf_kwargs)
    if model_name is None:
        raise ValueError(f"teacher checkpoint file {path} needs a model preset to build the network "
                         "(--teacher-model NAME), or pass a directory written by save_pretrained")
    from ..checkpoint import load_checkpoint

    model = create_model(model_name, **{**(model_overrides or {}), "num_classes": 0})
    load_checkpoint(model, path, allow_unsafe=allow_unsafe)
    return VideoMambaTeacher(model)
