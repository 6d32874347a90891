"""Video-text model (the release's ``UMT_VIDEOMAMBA``): VideoMamba vision tower + BERT with fusion
layers, contrastive / matching / masked-language-modelling heads, and the losses.

Glossary: B batch (videos or captions), T frames, t = T / tubelet, S patches per frame,
M = t*S video memory tokens, Dv video width, Dt text width, d joint embedding size, L text length.

Forward paths, as in the release:

- video: ``VideoMamba.forward_features`` -> (B, 1 + M, Dv), cls first. The memory for
  cross-attention is the M patch tokens; the pooled feature is
  ``pool_norm(cls + mean of each frame's S tokens)`` -> (B, t, Dv) (``keep_temporal``), or
  ``pool_norm(cls + mean of all visible tokens)`` -> (B, 1, Dv) for masked input;
- text: BERT layers ``[0, fusion_layer)`` -> (B, L, Dt); the unimodal feature is the [CLS] row;
- similarity: ``mean over frames of cos(vision_proj(pooled_f), text_proj(cls))``;
- matching: fusion layers over (text tokens, video memory) -> ``itm_head([CLS])``.

State-dict keys (what a converted release file holds): ``vision_encoder.*`` (a
:class:`~videomamba.models.VideoMamba` without head), ``pool_norm.*``, ``text_encoder.*`` (BERT:
``embeddings.*``, ``encoder.layer.N.*``), ``mlm_head.*`` (``transform.*``, ``decoder.*``,
``bias``; decoder tied to the word embeddings), ``vision_proj.*``, ``text_proj.*``,
``itm_head.*``, ``temp`` and, with the teacher alignment on, ``clip_decoder.*``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VideoMambaConfig
from .text import FusionBert, TextConfig, TextTokenizer, build_mlm_head
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .videomamba import VideoMamba

ARCHITECTURE = "VideoTextModel"
POOL_TYPES = ("cls+avg", "avg", "cls")

# The release's m16 vision tower (videomamba_middle, 8 frames, 224^2).
M16_VISION = dict(embed_dim=576, depth=32, num_frames=8, img_size=224, patch_size=16, tubelet_size=1,
                  num_classes=0, norm_eps=1e-5)


def _vision_default() -> VideoMambaConfig:
    return VideoMambaConfig(**M16_VISION)


@dataclass
class VideoTextConfig:
    """Everything that defines a video-text model. Defaults: the release's m16 (5M/17M/25M)."""

    vision: VideoMambaConfig = field(default_factory=_vision_default)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 512                    # joint space size (vision_proj / text_proj outputs)
    temp: float = 0.07                      # initial temperature
    max_txt_l: int = 32                     # text length (tokens, with [CLS] and [SEP])
    pool_type: str = "cls+avg"
    keep_temporal: bool = True              # one pooled vector per frame (retrieval: mean of frame sims)
    uta: bool = False                       # alignment of masked video tokens to a frozen teacher
    uta_dim: int = 512                      # teacher feature size (clip_decoder output)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = VideoMambaConfig.from_dict({**self.vision})
        if isinstance(self.text, dict):
            self.text = TextConfig.from_dict({**self.text})
        if self.vision.num_classes != 0:
            self.vision = self.vision.replace(num_classes=0)
        if self.vision.image or self.vision.cls_position != "head":
            raise ValueError("vision: the video-text model needs a video tower with its cls token first "
                             "(image=False, cls_position='head')")
        if self.text.encoder_width != self.vision.embed_dim:
            self.text = dataclasses.replace(self.text, encoder_width=self.vision.embed_dim)
        if self.pool_type not in POOL_TYPES:
            raise ValueError(f"pool_type={self.pool_type!r} is not valid; expected one of {', '.join(POOL_TYPES)}")
        for k in ("embed_dim", "max_txt_l", "uta_dim"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.max_txt_l > self.text.max_position_embeddings:
            raise ValueError(f"max_txt_l={self.max_txt_l} exceeds text.max_position_embeddings="
                             f"{self.text.max_position_embeddings}")
        if not 0 < float(self.temp) < 1:
            raise ValueError(f"temp must be in (0, 1), got {self.temp!r}")
        self.mean, self.std = tuple(float(x) for x in self.mean), tuple(float(x) for x in self.std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have 3 values (RGB)")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["vision"] = self.vision.to_dict()
        d["text"] = dataclasses.asdict(self.text)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["architecture"] = ARCHITECTURE
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> "VideoTextConfig":
        d = dict(d)
        arch = d.pop("architecture", ARCHITECTURE)
        if arch != ARCHITECTURE:
            raise ValueError(f"architecture={arch!r} is not a video-text model ({ARCHITECTURE!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown video-text config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **overrides) -> "VideoTextConfig":
        d = self.to_dict()
        for k, v in overrides.items():
            if k in ("vision", "text") and isinstance(v, dict):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return self.from_dict(d)

    def num_tokens(self, num_frames: int | None = None, img_size: int | None = None) -> int:
        return self.vision.num_tokens(num_frames, img_size)

    # the preprocessing the model expects
    @property
    def num_frames(self) -> int:
        return self.vision.num_frames

    @property
    def img_size(self) -> int:
        return self.vision.img_size


def video_text_config_from_release(config: dict, vision_shapes: dict | None = None) -> VideoTextConfig:
    """The release's config dict (``checkpoint["config"]``, the EasyDict as a plain dict) -> config.

    Reads ``model.vision_encoder`` (img_size, patch_size, depth, embed_dim, kernel_size,
    num_frames, norm_epsilon, pool_type, keep_temporal, clip_output_dim), the BERT json
    (``bert_config``, or bert-base when absent) with ``model.text_encoder.fusion_layer``,
    ``model.embed_dim``, ``model.temp`` and ``max_txt_l``. ``vision_shapes`` (tensor shapes by
    release key, e.g. from the state dict) fill in what the config lacks.
    """
    if not isinstance(config, dict):
        raise ValueError(f"release config must be a dict, got {type(config).__name__}")
    model = config.get("model") or {}
    ve = dict(model.get("vision_encoder") or {})
    te = dict(model.get("text_encoder") or {}) if isinstance(model.get("text_encoder"), dict) else {}
    shapes = vision_shapes or {}

    def shape(key):
        for k in (key, f"vision_encoder.{key}"):
            if k in shapes:
                return tuple(shapes[k])
        return None

    vis = dict(M16_VISION)
    if (s := shape("patch_embed.proj.weight")) is not None:
        vis.update(embed_dim=s[0], tubelet_size=s[2], patch_size=s[3])
    if (s := shape("pos_embed")) is not None:
        vis["img_size"] = int(round(math.sqrt(s[1] - 1))) * vis["patch_size"]
    if (s := shape("temporal_pos_embedding")) is not None:
        vis["num_frames"] = s[1] * vis["tubelet_size"]
    layer_ids = {int(k.split(".")[k.split(".").index("layers") + 1]) for k in shapes if ".layers." in f".{k}"}
    if layer_ids:
        vis["depth"] = max(layer_ids) + 1
    rename = {"img_size": "img_size", "patch_size": "patch_size", "depth": "depth", "embed_dim": "embed_dim",
              "kernel_size": "tubelet_size", "num_frames": "num_frames", "norm_epsilon": "norm_eps"}
    for src, dst in rename.items():
        if ve.get(src) is not None and not isinstance(ve[src], str):
            vis[dst] = ve[src]
    if isinstance(ve.get("ssm_cfg"), dict):
        for k in ("d_state", "d_conv", "expand", "dt_rank"):
            if k in ve["ssm_cfg"]:
                vis[k] = ve["ssm_cfg"][k]
    vision = VideoMambaConfig(**vis)

    bert = config.get("bert_config") or {}
    tfields = {f.name for f in dataclasses.fields(TextConfig)}
    text = {k: v for k, v in bert.items() if k in tfields}
    fusion = te.get("fusion_layer", bert.get("fusion_layer"))
    if fusion is not None:
        text["fusion_layer"] = int(fusion)
    if (model.get("multimodal") or {}).get("enable") is False:
        raise ValueError("release config: model.multimodal.enable is false (a text encoder without fusion "
                         "layers); the video-text model needs them")
    text["encoder_width"] = vision.embed_dim
    max_txt_l = config.get("max_txt_l", 32)
    if isinstance(max_txt_l, dict):
        max_txt_l = max(int(v) for v in max_txt_l.values())
    inputs = config.get("inputs") or {}
    norm = config.get("video_normalization") or {}
    return VideoTextConfig(
        vision=vision, text=TextConfig(**text), embed_dim=int(model.get("embed_dim", 512)),
        temp=float(model.get("temp", 0.07)), max_txt_l=int(max_txt_l),
        pool_type=ve.get("pool_type", "cls+avg"), keep_temporal=bool(ve.get("keep_temporal", True)),
        uta_dim=int(ve.get("clip_output_dim", 512)),
        mean=tuple(norm.get("mean", IMAGENET_MEAN)), std=tuple(norm.get("std", IMAGENET_STD)),
        extra={"source": "release", "image_res": inputs.get("image_res")})


# ------------------------------------------------------------------------------ losses
def get_sim(vision_proj: torch.Tensor, text_proj: torch.Tensor, temp: "float | torch.Tensor" = 1.0):
    """Video-text similarity: (Bv, t, d) or (Bv, d) projections and (Bt, d) -> (sim_v2t (Bv, Bt),
    sim_t2v (Bt, Bv)); per-frame cosines averaged over frames, divided by ``temp``."""
    v = F.normalize(vision_proj, dim=-1).float()
    t = F.normalize(text_proj, dim=-1).float()
    if v.dim() == 3:
        sim_v2t = torch.einsum("mld,nd->mln", v, t).mean(1) / temp
        sim_t2v = torch.einsum("nd,mld->nlm", t, v).mean(1) / temp
    else:
        sim_v2t = v @ t.T / temp
        sim_t2v = sim_v2t.T
    return sim_v2t, sim_t2v


def positive_mask(idx: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """(B,) pair ids -> (B, B) float, 1 where the ids match (rows summing to 1 when ``normalize``)."""
    idx = idx.view(-1, 1)
    m = torch.eq(idx, idx.T).float()
    return m / m.sum(1, keepdim=True) if normalize else m


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over DDP ranks (rank order); this rank's slice keeps its gradient."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, 0)


def vtc_loss(vision_proj: torch.Tensor, text_proj: torch.Tensor, idx: torch.Tensor, temp, gather: bool = True,
             text_negatives: torch.Tensor | None = None):
    """Video-text contrastive loss: the mean of the v2t and t2v cross-entropies against the
    row-normalised positives (equal ``idx``), over the batch gathered from every rank.
    ``text_negatives`` (M, d): projections of captions that match no video (e.g. a caption with one
    word swapped); they join every video's v2t softmax as extra negatives (this rank's only)."""
    if gather:
        vision_proj, text_proj, idx = gather_with_grad(vision_proj), gather_with_grad(text_proj), gather_with_grad(idx)
    sim_v2t, sim_t2v = get_sim(vision_proj, text_proj, temp)
    with torch.no_grad():
        target = positive_mask(idx, normalize=True)
    if text_negatives is not None and text_negatives.shape[0]:
        sim_v2t = torch.cat([sim_v2t, get_sim(vision_proj, text_negatives, temp)[0]], 1)
        target_v2t = torch.cat([target, target.new_zeros(target.shape[0], text_negatives.shape[0])], 1)
    else:
        target_v2t = target
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * target_v2t).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_t2v, dim=1) * target).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


@torch.no_grad()
def sample_hard_negatives(sim_v2t: torch.Tensor, sim_t2v: torch.Tensor, idx: torch.Tensor,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard negatives drawn from ``softmax(sim + 1e-4)`` with the positives zeroed (the release):
    -> (a negative video for each caption (Bt,), a negative caption for each video (Bv,)).
    A row without any negative (every pair in the batch positive) falls back to uniform."""
    pos = positive_mask(idx).bool()
    w_v2t = F.softmax(sim_v2t.float() + 1e-4, dim=1).masked_fill(pos, 0)
    w_t2v = F.softmax(sim_t2v.float() + 1e-4, dim=1).masked_fill(pos, 0)
    w_v2t = torch.nan_to_num(w_v2t, nan=1e-2, posinf=1e-2, neginf=1e-2)
    w_t2v = torch.nan_to_num(w_t2v, nan=1e-2, posinf=1e-2, neginf=1e-2)
    for w in (w_v2t, w_t2v):
        empty = w.sum(1) <= 0
        if bool(empty.any()):
            w[empty] = 1.0
    vision_neg = torch.multinomial(w_t2v, 1, generator=generator).squeeze(1)
    text_neg = torch.multinomial(w_v2t, 1, generator=generator).squeeze(1)
    return vision_neg, text_neg


def vtm_loss(model: "VideoTextModel", video_tokens: torch.Tensor, text_tokens: torch.Tensor,
             text_mask: torch.Tensor, vision_proj: torch.Tensor, text_proj: torch.Tensor, idx: torch.Tensor,
             temp, negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Video-text matching: [positives, (negative video, text), (video, negative text)] with labels
    [1, 0, 0], cross-entropy on ``itm_head``. ``negatives`` overrides the sampled hard negatives.
    Returns (loss, (vision_neg, text_neg))."""
    if negatives is None:
        with torch.no_grad():
            sim_v2t, sim_t2v = get_sim(vision_proj, text_proj, temp)
        negatives = sample_hard_negatives(sim_v2t, sim_t2v, idx, generator)
    vision_neg, text_neg = negatives
    video_all = torch.cat([video_tokens, video_tokens[vision_neg], video_tokens], 0)
    text_all = torch.cat([text_tokens, text_tokens, text_tokens[text_neg]], 0)
    mask_all = torch.cat([text_mask, text_mask, text_mask[text_neg]], 0)
    logits = model.itm_logits(text_all, mask_all, video_all).float()
    B = text_tokens.shape[0]
    labels = torch.zeros(3 * B, dtype=torch.long, device=logits.device)
    labels[:B] = 1
    return F.cross_entropy(logits, labels), negatives


@torch.no_grad()
def mlm_mask(input_ids: torch.Tensor, vocab_size: int, prob: float = 0.5, *, pad_id: int = 0, cls_id: int = 101,
             mask_id: int = 103, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's MLM masking (same draws, in the same order): each token is picked with
    ``prob`` (never PAD or CLS); of those 80 % become [MASK], half of the rest a random id in
    [0, vocab), the rest stay. -> (masked ids, labels with -100 where not picked)."""
    ids = input_ids.clone()
    labels = input_ids.clone()
    dev = ids.device

    def bern(p):
        return torch.bernoulli(torch.full(ids.shape, float(p)), generator=generator).bool().to(dev)

    picked = bern(prob)
    picked &= (ids != pad_id) & (ids != cls_id)
    labels[~picked] = -100
    replaced = bern(0.8) & picked
    ids[replaced] = mask_id
    rand = bern(0.5) & picked & ~replaced
    words = torch.randint(vocab_size, ids.shape, dtype=torch.long, generator=generator).to(dev)
    ids[rand] = words[rand]
    return ids, labels


def mlm_loss(model: "VideoTextModel", masked_ids: torch.Tensor, text_mask: torch.Tensor, labels: torch.Tensor,
             video_tokens: torch.Tensor) -> torch.Tensor:
    """Masked language modelling conditioned on the video: text layers on the masked ids, fusion
    layers over the video memory, MLM head; cross-entropy over the labelled positions."""
    h = model.text_encoder.forward_text(masked_ids, text_mask)
    h = model.text_encoder.forward_fusion(h, text_mask, video_tokens)
    sel = labels != -100
    if not bool(sel.any()):
        return h.sum() * 0.0
    logits = model.mlm_head(h[sel]).float()                                     # (n, V)
    return F.cross_entropy(logits, labels[sel])


def uta_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Alignment to the teacher: mean (2 - 2 cos) over tokens (the release's l2 / l2 setting)."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    return (2 - 2 * (s * t).sum(-1)).mean()


# ------------------------------------------------------------------------------ model
@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Embeddings are an inference: no dropout / drop-path even if the model is in training mode."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


class VideoTextModel(nn.Module):
    """VideoMamba + BERT video-text model. See the module docstring for the forward paths.

    Preprocessing it expects: ``num_frames`` frames of ``img_size``^2, RGB in [0, 1] normalised
    with ``mean`` / ``std``, laid out (B, 3, T, H, W).
    """

    is_video_text = True

    def __init__(self, cfg: VideoTextConfig, tokenizer: TextTokenizer | None = None):
        super().__init__()
        self.cfg = cfg
        self.vision_encoder = VideoMamba(cfg.vision)
        Dv, Dt = cfg.vision.embed_dim, cfg.text.hidden_size
        self.pool_norm = nn.LayerNorm(Dv, eps=1e-5)
        self.text_encoder = FusionBert(cfg.text)
        self.mlm_head = build_mlm_head(cfg.text, self.text_encoder.word_embeddings)
        self.vision_proj = nn.Linear(Dv, cfg.embed_dim)
        self.text_proj = nn.Linear(Dt, cfg.embed_dim)
        self.itm_head = nn.Linear(Dt, 2)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temp)))
        if cfg.uta:
            from .pretrain import AlignDecoder
            self.clip_decoder = nn.ModuleList([AlignDecoder(Dv, cfg.uta_dim)])
        self.tokenizer = tokenizer
        self.num_frames, self.img_size = cfg.vision.num_frames, cfg.vision.img_size
        self.mean, self.std = cfg.mean, cfg.std
        self.max_txt_l = cfg.max_txt_l
        self._uta_table: dict = {}
        for m in (self.vision_proj, self.text_proj, self.itm_head):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ helpers
    def set_tokenizer(self, tokenizer: TextTokenizer) -> None:
        if tokenizer.vocab_size > self.cfg.text.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the text tower's vocab_size is "
                             f"{self.cfg.text.vocab_size}")
        self.tokenizer = tokenizer

    def no_weight_decay(self) -> set[str]:
        out = {"temp"}
        for name, p in self.named_parameters():
            if p.ndim <= 1 or name.startswith("vision_encoder.") and name.split(".", 1)[1] in (
                    "pos_embed", "cls_token", "temporal_pos_embedding"):
                out.add(name)
        return out

    def layer_id(self, name: str) -> int:
        return 0

    @property
    def num_layers(self) -> int:
        return 1

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vision_encoder.set_grad_checkpointing(enable)
        self.text_encoder.grad_checkpointing = enable

    @torch.no_grad()
    def clamp_temp(self, lo: float = 0.001, hi: float = 0.5) -> None:
        self.temp.clamp_(lo, hi)

    # ------------------------------------------------------------------ towers
    def encode_vision(self, video: torch.Tensor, mask: torch.Tensor | None = None, return_hidden: bool = False):
        """(B, 3, T, H, W) -> memory (B, M, Dv) patch tokens, pooled (B, t, Dv) (or (B, 1, Dv) for
        masked input / keep_temporal off) [, residual stream entering the last block]."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got {tuple(video.shape)}")
        out = self.vision_encoder.forward_features(video, mask=mask, return_hidden=return_hidden)
        x, hidden = out if return_hidden else (out, None)
        cls, tok = x[:, :1], x[:, 1:]                                            # (B, 1, Dv), (B, M', Dv)
        B, _, D = tok.shape
        t = video.shape[2] // self.cfg.vision.tubelet_size
        pt = self.cfg.pool_type
        if pt == "cls":
            pooled = self.pool_norm(cls)
        elif self.cfg.keep_temporal and mask is None:
            frames = tok.reshape(B, t, -1, D).mean(2)                             # (B, t, Dv)
            pooled = self.pool_norm(cls + frames if pt == "cls+avg" else frames)
        else:
            avg = tok.mean(1, keepdim=True)
            pooled = self.pool_norm(cls + avg if pt == "cls+avg" else avg)
        return (tok, pooled, hidden) if return_hidden else (tok, pooled)

    def encode_text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, Dt): the unimodal text encoder (layers below ``fusion_layer``)."""
        return self.text_encoder.forward_text(input_ids, attention_mask)

    def itm_logits(self, text_tokens: torch.Tensor, text_mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """Matching logits (B, 2) for aligned rows of text tokens and video memories."""
        h = self.text_encoder.forward_fusion(text_tokens, text_mask, video_tokens)
        return self.itm_head(h[:, 0])

    def project_video(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(pooled)

    def project_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        return self.text_proj(text_tokens[:, 0])

    # ------------------------------------------------------------------ embedding API
    def video_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, t, Dv) pooled -> (B, d): mean over frames of the L2-normalised per-frame projections."""
        return F.normalize(self.vision_proj(pooled).float(), dim=-1).mean(1)

    def text_embedding(self, text_tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project_text(text_tokens).float(), dim=-1)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised clips -> (B, d); (B, V, 3, T, H, W) -> the mean over the V clips.
        ``encode_video(v) @ encode_text(t).T`` is the release's similarity (temperature 1)."""
        if video.dim() == 6:
            B, V = video.shape[:2]
            return self.encode_video(video.reshape(B * V, *video.shape[2:])).reshape(B, V, -1).mean(1)
        with _eval_mode(self):
            _, pooled = self.encode_vision(video)
            return self.video_embedding(pooled)

    def tokenize(self, texts: "list[str]") -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer: load one with set_tokenizer(TextTokenizer(vocab.txt))")
        ids, mask = self.tokenizer(list(texts), max_length=self.max_txt_l)
        dev = self.temp.device
        return ids.to(dev), mask.to(dev)

    @torch.no_grad()
    def encode_text(self, texts: "list[str]") -> torch.Tensor:
        """Captions -> (B, d) L2-normalised, tokenised with the model's own tokenizer."""
        ids, mask = self.tokenize(texts)
        with _eval_mode(self):
            return self.text_embedding(self.encode_text_tokens(ids, mask))

    # ------------------------------------------------------------------ teacher alignment
    def uta_student(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Residual stream entering the last block (B, 1 + P, Dv) at the visible positions -> the
        decoder's unit vectors (B, 1 + P, C), with the release's fixed sin-cos table added."""
        from ..layers import sincos_table
        from .masking import visible_positions

        if not self.cfg.uta:
            raise RuntimeError("teacher alignment is off (build the model with uta=True)")
        N = mask.shape[1]
        key = (N, str(hidden.device))
        if key not in self._uta_table:
            self._uta_table[key] = sincos_table(N + 1, hidden.shape[-1], device=hidden.device)[0]
        vis = visible_positions(mask) + 1                                         # (B, P), row 0 = cls
        rows = torch.cat([vis.new_zeros(vis.shape[0], 1), vis], 1)
        return self.clip_decoder[0](hidden + self._uta_table[key][rows].to(hidden.dtype))

    # ------------------------------------------------------------------ training forward
    def forward(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                idx: torch.Tensor, *, weights: dict | None = None, video_mask: torch.Tensor | None = None,
                mlm_prob: float = 0.5, uta_targets: torch.Tensor | None = None,
                negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
                mlm_inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
                negative_text: tuple[torch.Tensor, torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> dict:
        """Pre-training / fine-tuning losses for a paired batch: caption i with video i, ``idx`` the
        pair ids (equal ids are positives). ``weights``: {"vtc", "vtm", "mlm", "uta"} (0 = off).
        ``video_mask`` (B, t*S) bool drops video tokens (masked pre-training); ``uta_targets``
        (B, 1 + P, C) the frozen teacher's features at the visible positions.
        ``negatives`` / ``mlm_inputs`` replace the random draws (tests, reproductions).
        ``negative_text``: (ids, mask) of captions that match no video, extra negatives of the
        contrastive loss (:func:`vtc_loss`).
        Returns {"loss", "loss_vtc", "loss_vtm", "loss_mlm", "loss_uta"}."""
        w = {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "uta": 0.0, **(weights or {})}
        self.clamp_temp()
        need_hidden = w["uta"] > 0
        out = self.encode_vision(video, mask=video_mask, return_hidden=need_hidden)
        vtok, pooled = out[0], out[1]
        tneg = None
        if negative_text is not None and w["vtc"] > 0:
            nids, nmask = negative_text
            if nids.shape[1] != input_ids.shape[1]:
                raise ValueError(f"negative_text has {nids.shape[1]} tokens per caption, the captions "
                                 f"{input_ids.shape[1]}: tokenize both with the model's tokenize()")
            B = input_ids.shape[0]                                  # one text pass for captions and negatives
            both = self.encode_text_tokens(torch.cat([input_ids, nids]), torch.cat([attention_mask, nmask]))
            ttok, tneg = both[:B], self.project_text(both[B:])
        else:
            ttok = self.encode_text_tokens(input_ids, attention_mask)
        vproj, tproj = self.project_video(pooled), self.project_text(ttok)
        zero = vproj.sum() * 0.0
        losses = {"loss_vtc": zero, "loss_vtm": zero, "loss_mlm": zero, "loss_uta": zero}
        if w["uta"] > 0:
            if uta_targets is None or video_mask is None:
                raise ValueError("the alignment loss needs video_mask and uta_targets")
            losses["loss_uta"] = uta_loss(self.uta_student(out[2], video_mask), uta_targets)
        if w["vtc"] > 0:
            losses["loss_vtc"] = vtc_loss(vproj, tproj, idx, self.temp, text_negatives=tneg)
        if w["vtm"] > 0:
            losses["loss_vtm"], _ = vtm_loss(self, vtok, ttok, attention_mask, vproj, tproj, idx, self.temp,
                                             negatives=negatives, generator=generator)
        if w["mlm"] > 0:
            if mlm_inputs is None:
                tk = self.tokenizer
                ids_m, labels = mlm_mask(input_ids, self.cfg.text.vocab_size, mlm_prob,
                                         pad_id=tk.pad_token_id if tk else 0, cls_id=tk.cls_token_id if tk else 101,
                                         mask_id=tk.mask_token_id if tk else 103, generator=generator)
            else:
                ids_m, labels = mlm_inputs
            losses["loss_mlm"] = mlm_loss(self, ids_m, attention_mask, labels, vtok)
        losses["loss"] = sum(losses[f"loss_{k}"] * float(w[k]) for k in ("vtc", "vtm", "mlm", "uta"))
        return losses

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory: "str | Path") -> Path:
        """``model.safetensors`` + ``config.json`` (the project's own format, through
        :func:`videomamba.save_pretrained`) + the tokenizer's ``vocab.txt``; reload with
        ``create_model(None, pretrained=directory)``."""
        from ..checkpoint import save_pretrained

        directory = save_pretrained(self, directory)
        if self.tokenizer is not None:
            self.tokenizer.save(directory)
        return Path(directory)


def build_video_text_model(cfg: "VideoTextConfig | dict | None" = None, tokenizer=None, **overrides) -> VideoTextModel:
    if cfg is None:
        cfg = VideoTextConfig()
    elif isinstance(cfg, dict):
        cfg = VideoTextConfig.from_dict(cfg)
    if overrides:
        cfg = cfg.replace(**overrides)
    return VideoTextModel(cfg, tokenizer)


def load_video_text(path: "str | Path", **kwargs) -> VideoTextModel:
    """A video-text model from a saved directory, a training checkpoint or a released file
    (through ``create_model(None, pretrained=path)``, the one way in for weights)."""
    from .registry import create_model

    model = create_model(None, pretrained=path, **kwargs)
    if not isinstance(model, VideoTextModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a video-text model (its state dict has "
                         f"no text_encoder.* keys)")
    return model
