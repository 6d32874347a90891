"""Typed training configuration: YAML file + ``section.key=value`` overrides -> :class:`TrainConfig`.

Every key is checked: unknown keys are errors (with a suggestion), values are coerced to the
declared type, and ranges are validated, always naming the key and what was expected. The
``model:`` section takes ``name`` / ``pretrained`` plus any :class:`VideoMambaConfig` field.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ..data.dataset import AUGMENT_PRESETS, AugmentConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad configuration value: the message names the key and what was expected."""


# --------------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    """Which backbone to build. Any other key in ``model:`` is a VideoMambaConfig field."""

    name: str = "videomamba_tiny"
    pretrained: str | None = None          # original .pth, our .pt/.safetensors, or a saved directory
    params: dict = field(default_factory=dict)  # VideoMambaConfig overrides (filled from the YAML keys)


@dataclass
class DataSection:
    """Annotation files and clip sampling (see ``videomamba.data.VideoDataset``)."""

    train: str | None = None               # annotation file for training
    val: str | None = None                 # annotation file evaluated every ``train.eval_every`` epochs
    root: str | None = None                # prefix for relative paths in the annotations
    format: str = "auto"
    classes: str | list[str] | None = None  # classes.txt or a list of names
    num_frames: int = 8
    sampling: Literal["segment", "dense"] = "segment"
    sample_stride: int = 4
    img_size: int = 224
    short_side: int | None = None
    test_clips: int = 1                    # views at evaluation: clips x crops, softmax averaged
    test_crops: int = 1
    repeat_aug: int = 1                    # augmented clips per loaded video ("repeated sampling")
    batch_size: int = 8                    # videos per process per micro-step
    eval_batch_size: int | None = None
    num_workers: int = 2
    skip_bad: bool = False
    cache: bool = False                    # keep decoded videos in memory (small datasets; workers persist)
    # -- recipes: validation views, final test, view micro-batches, LVU windows
    test: str | None = None                # final test annotations (default: data.val), scored with test views
    val_clips: int | None = None           # views of the per-epoch validation (default: test_clips x test_crops);
    val_crops: int | None = None           # the release validates on 1 x 1 and tests the best epoch on all views
    view_batch: int | None = None          # evaluation: views through the model at once (null: a whole batch)
    window: float | None = 60.0            # LVU: seconds per window (null: whole videos)
    window_stride: float = 16.0            # LVU: seconds between window starts
    window_scheme: Literal["release", "cover"] = "cover"  # release: its last-window rule (data/annotations.py)


# The ``augment:`` section is the data package's dataclass (its range checks live there).
AugmentSection = AugmentConfig


@dataclass
class TaskSection:
    type: Literal["classification", "regression", "retrieval"] = "classification"   # retrieval: video-text


@dataclass
class OptimSection:
    """AdamW + per-step cosine schedule with linear warm-up.

    With ``lr: null`` the learning rate follows the release's scaling rule:
    ``lr = base_lr * batch_size * world_size * accum_steps * repeat_aug / 256`` (``min_lr`` and
    ``warmup_lr`` are scaled the same way when ``scale_lr`` is true, as in the release).
    """

    lr: float | None = None
    base_lr: float = 2e-4
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    layer_decay: float = 0.75              # 1.0: off
    layer_decay_mode: Literal["release", "per_block"] = "per_block"  # release: blocks at full lr (engine/optim.py)
    clip_grad: float | None = None
    accum_steps: int = 1
    epochs: int = 30
    warmup_epochs: float = 5.0
    warmup_steps: int | None = None        # overrides warmup_epochs


@dataclass
class TrainSection:
    """Run control: device, precision, checkpoints, logging."""

    out_dir: str = "runs/train"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"  # auto: bf16 where supported
    grad_checkpointing: bool = False
    ema: bool = False
    ema_decay: float = 0.9999
    ema_eval: bool = True                  # evaluate (and export) the EMA weights when ema is on
    checkpoint_every: int = 0              # optimizer steps between checkpoints (0: epochs only)
    keep_last: int = 2
    eval_every: int = 1                    # epochs (0: only at the end)
    log_every: int = 10                    # optimizer steps
    max_steps: int | None = None           # stop early after this many optimizer steps
    tensorboard: bool = False
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    plots: bool = True
    threads: int | Literal["auto"] | None = None  # torch.set_num_threads; auto: time N vs 1 thread, keep the faster
    final_test: bool = True                # after training: best checkpoint on data.test (or val), all test views
    export: Literal["best", "last"] = "best"  # which weights model/ holds (best: the best validation checkpoint)


@dataclass
class DistillSection:
    """Self-distillation: on when ``teacher`` is set (see engine/methods.py).

    loss = task loss + weight * mean over tokens of (2 - 2 cos(student, teacher)); the student
    gets a ``distill_head`` (RMSNorm -> Linear(D_student, D_teacher)), the exported model drops it.
    """

    teacher: str | None = None             # saved model dir, training checkpoint, or original file (+ teacher_model)
    teacher_model: str | None = None       # preset name for an original checkpoint file
    weight: float = 1.0


@dataclass
class PretrainSection:
    """Masked pretraining: on when ``teacher`` is set; labels are not used and there
    is no validation. ``model/`` then holds the encoder, ready for ``model.pretrained``."""

    teacher: str | None = None             # VideoMamba dir / checkpoint (+ teacher_model), a local transformers dir,
                                           # or a CLIP visual state dict in OpenAI's layout (the release's vit_b16.pth)
    teacher_model: str | None = None
    mask_type: Literal["random", "tube", "frame_row", "clip_row", "random_row", "attention"] = "tube"
    mask_ratio: float = 0.8
    mask_sampling: Literal["multinomial", "topk"] = "multinomial"   # attention masks only
    loss: Literal["cosine", "mse", "smooth_l1"] = "cosine"  # cosine: mean (2 - 2 cos), the release's 'l2'
    loss_weight: float = 1.0               # the release's clip_loss_ratio
    return_layers: int = 1                 # aligned layers (the release's clip_return_layer)
    student_interval: int = 1              # layers between aligned student layers
    teacher_interval: int = 1              # layers between aligned teacher layers
    teacher_final_norm: bool = True        # false: no final layer norm on the teacher's tokens (the release with cls)
    teacher_input: Literal["renormalise", "imagenet"] = "renormalise"  # imagenet: feed the clip's ImageNet-
                                           # normalised pixels as they are (the release), else the teacher's stats


# ---- video-text (task.type: retrieval; engine/video_text.py) ----
@dataclass
class VideoTextSection:
    """Video-text pre-training / fine-tuning: ``model:`` is the vision tower, this the rest.

    Loss weights (0: off) as the release's ``criterion.loss_weight``; ``uta`` needs ``teacher`` and
    ``video_mask_type``. ``tokenizer``: a local ``bert-base-uncased`` folder (or vocab.txt), else a
    WordPiece vocabulary of ``vocab_size`` tokens is trained on the training captions.
    """

    text: dict = field(default_factory=dict)   # TextConfig fields (hidden_size, num_hidden_layers, fusion_layer, ...)
    embed_dim: int = 512
    temp: float = 0.07
    learn_temp: bool = True                # false: the temperature stays at ``temp``
    pool_type: Literal["cls+avg", "avg", "cls"] = "cls+avg"   # the video feature (the release: cls + frame mean)
    keep_temporal: bool = True             # one feature per frame, similarity = mean over frames (the release)
    max_txt_l: int | None = None           # null: the dataset preset's, else 32
    tokenizer: str | None = None
    vocab_size: int = 1000
    text_pretrained: str | None = None     # local BERT folder for the text tower (the release: bert-base-uncased)
    vision_pretrained: str | None = None   # vision tower weights (the release: the masked-pretrained m16)
    dataset: str | None = None             # msrvtt | didemo | anet | lsmdc | msvd (paragraph mode, text length)
    paragraph: bool | None = None          # join each entry's caption list into one caption
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    uta: float = 0.0
    uta_dim: int = 512
    mlm_prob: float = 0.5
    video_mask_type: Literal["random", "tube", "frame_row", "clip_row", "attention"] | None = None
    video_mask_ratio: float = 0.8
    teacher: str | None = None
    teacher_model: str | None = None
    reverse_pairs: bool = False            # add each clip played backwards with its caption mapped (meta.json)
    positives: Literal["video", "caption"] = "video"   # caption: clips with the same caption are positives too
    negative_captions: int = 0             # per clip, captions with one phrase swapped (swap_groups): extra negatives
    swap_groups: list[list[str]] | None = None        # lists of interchangeable phrases; null: meta.json caption_groups
    k_test: int = 128                      # candidates re-ranked with matching scores per query
    rerank_micro_batch: int = 32
    val_rerank: bool = True
    main_metric: str = "r_mean"
    skip_missing: bool = False


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    task: TaskSection = field(default_factory=TaskSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    distill: DistillSection = field(default_factory=DistillSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    video_text: VideoTextSection = field(default_factory=VideoTextSection)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        params = d["model"].pop("params")
        d["model"].update(params)
        return _plain(d)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        return _build(d, source)

    def replace(self, overrides: dict | list[str] | None = None) -> "TrainConfig":
        d = self.to_dict()
        apply_overrides(d, overrides or {})
        return _build(d, "overrides")


SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
_SECTION_CLASSES = {"model": ModelSection, "data": DataSection, "augment": AugmentSection,
                    "task": TaskSection, "optim": OptimSection, "train": TrainSection,
                    "distill": DistillSection, "pretrain": PretrainSection, "video_text": VideoTextSection}


# --------------------------------------------------------------------------- loading
def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a packaged config (``demo`` -> configs/demo.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    packaged = CONFIG_DIR / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    if packaged.is_file() and len(p.parts) == 1:
        return packaged
    names = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"config {str(name_or_path)!r} is neither a file nor a packaged config ({names})")


def list_configs() -> list[str]:
    return sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))


def load_config(config: "str | Path | dict | TrainConfig | None" = None,
                overrides: "dict | list[str] | None" = None) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a YAML file / packaged name / dict, plus overrides.

    ``overrides``: ``{"optim.lr": 1e-3}`` or ``["optim.lr=1e-3", ...]`` (values parsed as YAML).
    """
    import yaml

    source = "config"
    if config is None:
        d: dict = {}
    elif isinstance(config, TrainConfig):
        d = config.to_dict()
    elif isinstance(config, dict):
        d = _deepcopy(config)
    else:
        path = resolve_config_path(config)
        source = str(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(d).__name__}")
    apply_overrides(d, overrides or {})
    return _build(d, source)


def apply_overrides(d: dict, overrides: "dict | list[str]") -> None:
    """Apply dotted overrides in place. ``"a.b=VALUE"`` strings are parsed with YAML."""
    import yaml

    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"override {o!r} must look like section.key=value (e.g. optim.lr=1e-3)")
            k, v = o.split("=", 1)
            try:
                items.append((k.strip(), yaml.safe_load(v) if v.strip() else None))
            except yaml.YAMLError:
                items.append((k.strip(), v))
    for key, value in items:
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override key {key!r} must be section.key with section one of {', '.join(SECTIONS)}")
        sec, k = parts
        if sec not in SECTIONS:
            raise ConfigError(f"unknown config section {sec!r} in override {key!r}{_suggest(sec, SECTIONS)}; "
                              f"valid sections: {', '.join(SECTIONS)}")
        if d.get(sec) is None:
            d[sec] = {}
        d[sec][k] = value


def _build(d: dict, source: str) -> TrainConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(d).__name__}")
    unknown = [k for k in d if k not in SECTIONS]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{source}: unknown section {k!r}{_suggest(k, SECTIONS)}; valid sections: {', '.join(SECTIONS)}")
    kwargs = {}
    for sec, cls in _SECTION_CLASSES.items():
        raw = d.get(sec) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: section {sec!r} must be a mapping, got {raw!r}")
        if sec == "augment" and raw.get("preset") is not None:
            if raw["preset"] not in AUGMENT_PRESETS:
                raise ConfigError(f"{source}: augment.preset must be one of {', '.join(AUGMENT_PRESETS)} or null, "
                                  f"got {raw['preset']!r}")
            raw = {**AUGMENT_PRESETS[raw["preset"]], **raw}       # the config's own values win
        kwargs[sec] = _build_model(raw, source) if sec == "model" else _build_section(sec, cls, raw, source)
    cfg = TrainConfig(**kwargs)
    validate(cfg, source)
    return cfg


def _build_section(sec: str, cls, raw: dict, source: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for k, v in raw.items():
        if k not in names:
            raise ConfigError(f"{source}: unknown key '{sec}.{k}'{_suggest(k, names)}; valid keys in {sec}: {', '.join(names)}")
        out[k] = _coerce(f"{sec}.{k}", v, hints[k])
    try:
        return cls(**out)
    except ValueError as e:                 # a dataclass's own range check
        raise ConfigError(f"{source}: {e}") from None


def _build_model(raw: dict, source: str) -> ModelSection:
    from ..models.config import VideoMambaConfig

    own = {"name", "pretrained"}
    mc_fields = {f.name: f for f in dataclasses.fields(VideoMambaConfig)}
    mc_hints = typing.get_type_hints(VideoMambaConfig)
    sec = ModelSection()
    for k, v in raw.items():
        if k == "params":
            raise ConfigError(f"{source}: put model fields directly under 'model:', not under 'model.params'")
        if k in own:
            setattr(sec, k, _coerce(f"model.{k}", v, str if k == "name" else str | None))
        elif k in mc_fields:
            sec.params[k] = _coerce(f"model.{k}", v, mc_hints[k])
        else:
            valid = sorted(own | set(mc_fields))
            raise ConfigError(f"{source}: unknown key 'model.{k}'{_suggest(k, valid)}; valid keys in model: {', '.join(valid)}")
    return sec


def validate(cfg: TrainConfig, source: str = "config") -> None:
    """Range checks; the message names the key and what was expected."""

    def need(ok: bool, key: str, expected: str, value):
        if not ok:
            raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")

    d, a, o, t = cfg.data, cfg.augment, cfg.optim, cfg.train
    for k in ("num_frames", "sample_stride", "img_size", "test_clips", "test_crops", "repeat_aug", "batch_size"):
        need(getattr(d, k) >= 1, f"data.{k}", "a positive integer", getattr(d, k))
    need(d.short_side is None or d.short_side >= 1, "data.short_side", "a positive integer or null", d.short_side)
    need(d.eval_batch_size is None or d.eval_batch_size >= 1, "data.eval_batch_size", "a positive integer or null", d.eval_batch_size)
    need(d.num_workers >= 0, "data.num_workers", "an integer >= 0", d.num_workers)
    need(not (a.symmetries and cfg.task.type == "regression"), "augment.symmetries",
         "empty for a regression task (they relabel classes)", list(a.symmetries))
    need(o.lr is None or o.lr > 0, "optim.lr", "a positive number or null (null: base_lr scaled by the batch)", o.lr)
    need(o.base_lr > 0, "optim.base_lr", "a positive number", o.base_lr)
    need(o.min_lr >= 0, "optim.min_lr", "a number >= 0", o.min_lr)
    need(o.warmup_lr >= 0, "optim.warmup_lr", "a number >= 0", o.warmup_lr)
    need(all(0 <= b < 1 for b in o.betas), "optim.betas", "two numbers in [0, 1)", list(o.betas))
    need(o.eps > 0, "optim.eps", "a positive number", o.eps)
    need(o.weight_decay >= 0, "optim.weight_decay", "a number >= 0", o.weight_decay)
    need(0 < o.layer_decay <= 1, "optim.layer_decay", "in (0, 1] (1: off)", o.layer_decay)
    need(o.clip_grad is None or o.clip_grad > 0, "optim.clip_grad", "a positive max norm or null", o.clip_grad)
    need(o.accum_steps >= 1, "optim.accum_steps", "a positive integer", o.accum_steps)
    need(o.epochs >= 1, "optim.epochs", "a positive integer", o.epochs)
    need(o.warmup_epochs >= 0, "optim.warmup_epochs", "a number >= 0", o.warmup_epochs)
    need(o.warmup_steps is None or o.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0 or null", o.warmup_steps)
    need(0 < t.ema_decay < 1, "train.ema_decay", "in (0, 1)", t.ema_decay)
    need(t.checkpoint_every >= 0, "train.checkpoint_every", "an integer >= 0 (0: each epoch only)", t.checkpoint_every)
    need(t.keep_last >= 1, "train.keep_last", "a positive integer", t.keep_last)
    need(t.eval_every >= 0, "train.eval_every", "an integer >= 0", t.eval_every)
    need(t.log_every >= 1, "train.log_every", "a positive integer", t.log_every)
    need(t.max_steps is None or t.max_steps >= 1, "train.max_steps", "a positive integer or null", t.max_steps)
    need(t.threads is None or t.threads == "auto" or t.threads >= 1, "train.threads",
         "a positive integer, auto or null", t.threads)
    dev = t.device
    need(dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()), "train.device",
         "auto, cpu, cuda or cuda:N", dev)
    need(cfg.distill.weight >= 0, "distill.weight", "a number >= 0", cfg.distill.weight)
    need(0 <= cfg.pretrain.mask_ratio < 1, "pretrain.mask_ratio", "in [0, 1) (the share of patch tokens dropped)",
         cfg.pretrain.mask_ratio)
    need(not (cfg.distill.teacher and cfg.pretrain.teacher), "distill.teacher / pretrain.teacher",
         "set for one of the two methods only", (cfg.distill.teacher, cfg.pretrain.teacher))
    for k in ("val_clips", "val_crops", "view_batch"):
        need(getattr(d, k) is None or getattr(d, k) >= 1, f"data.{k}", "a positive integer or null", getattr(d, k))
    need(d.window is None or d.window > 0, "data.window", "a positive number of seconds or null", d.window)
    need(d.window_stride > 0, "data.window_stride", "a positive number of seconds", d.window_stride)
    p = cfg.pretrain
    for k in ("return_layers", "student_interval", "teacher_interval"):
        need(getattr(p, k) >= 1, f"pretrain.{k}", "a positive integer", getattr(p, k))
    need(p.loss_weight > 0, "pretrain.loss_weight", "a positive number", p.loss_weight)
    vt = cfg.video_text
    for k in ("vtc", "vtm", "mlm", "uta"):
        need(getattr(vt, k) >= 0, f"video_text.{k}", "a loss weight >= 0 (0: off)", getattr(vt, k))
    need(0 < vt.mlm_prob < 1, "video_text.mlm_prob", "in (0, 1)", vt.mlm_prob)
    need(0 <= vt.video_mask_ratio < 1, "video_text.video_mask_ratio", "in [0, 1)", vt.video_mask_ratio)
    need(vt.k_test >= 1 and vt.rerank_micro_batch >= 1, "video_text.k_test / rerank_micro_batch", "positive integers",
         (vt.k_test, vt.rerank_micro_batch))
    need(vt.max_txt_l is None or vt.max_txt_l >= 3, "video_text.max_txt_l", "an integer >= 3 or null", vt.max_txt_l)
    need(0 < vt.temp < 1, "video_text.temp", "in (0, 1)", vt.temp)
    need(vt.negative_captions >= 0, "video_text.negative_captions", "an integer >= 0", vt.negative_captions)
    need(vt.swap_groups is None or all(len(g) >= 2 and all(p.strip() for p in g) for g in vt.swap_groups),
         "video_text.swap_groups", "lists of at least two non-empty phrases, or null", vt.swap_groups)
    if cfg.task.type == "regression":
        need(a.mixup == 0 and a.cutmix == 0, "augment.mixup/cutmix", "0 for a regression task", (a.mixup, a.cutmix))
    # the model overrides are checked by building the VideoMambaConfig (its errors name the field)
    from ..models.config import VideoMambaConfig
    from ..models.registry import get_config
    try:
        get_config(cfg.model.name)
    except ValueError as e:
        raise ConfigError(f"{source}: model.name: {e}") from None
    try:
        VideoMambaConfig.from_dict({**get_config(cfg.model.name).to_dict(), **cfg.model.params})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: model: {e}") from None


# --------------------------------------------------------------------------- coercion
def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} " + _describe(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ") + "s"
    if origin is list:
        return "a list of " + _describe(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ") + "s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(key: str, value: Any, tp) -> Any:
    def fail():
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            fail()
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except ConfigError:
                pass
        fail()
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        fail()
    if tp is dict:
        if isinstance(value, dict):
            return value
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        args = typing.get_args(tp)
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                fail()
            return tuple(_coerce(key, v, a) for v, a in zip(value, args))
        if origin is tuple:
            return tuple(_coerce(key, v, args[0]) for v in value)
        return [_coerce(key, v, args[0]) for v in value]
    return value


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _deepcopy(d):
    import copy
    return copy.deepcopy(d)


def dump_yaml(cfg: TrainConfig) -> str:
    import yaml
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
