"""Named presets and ``create_model``."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Callable

from .config import VideoMambaConfig

_PRESETS: dict[str, Callable[[], VideoMambaConfig]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(fn: Callable[[], VideoMambaConfig]) -> Callable[[], VideoMambaConfig]:
    _PRESETS[fn.__name__] = fn
    _DESCRIPTIONS[fn.__name__] = (fn.__doc__ or "").strip()
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    names = sorted(_PRESETS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_config(name: str, **overrides) -> VideoMambaConfig:
    if name not in _PRESETS:
        close = [n for n in _PRESETS if name.split("_")[-1] in n] or list_models()
        raise ValueError(f"unknown model {name!r}; available: {', '.join(close)}")
    return _PRESETS[name]().replace(**overrides) if overrides else _PRESETS[name]()


# --- OpenGVLab video models: tubelet 1, factorised positions, cls first, summed directions
@register_model
def videomamba_tiny() -> VideoMambaConfig:
    """OpenGVLab VideoMamba-Ti (D=192, 24 layers), 8 frames, 224 px."""
    return VideoMambaConfig(embed_dim=192, depth=24)


@register_model
def videomamba_small() -> VideoMambaConfig:
    """OpenGVLab VideoMamba-S (D=384, 24 layers), 8 frames, 224 px."""
    return VideoMambaConfig(embed_dim=384, depth=24)


@register_model
def videomamba_middle() -> VideoMambaConfig:
    """OpenGVLab VideoMamba-M (D=576, 32 layers), 8 frames, 224 px."""
    return VideoMambaConfig(embed_dim=576, depth=32)


# --- image (ImageNet) models: (B, 3, H, W) input, 1000 classes
@register_model
def videomamba_image_tiny() -> VideoMambaConfig:
    """Image VideoMamba-Ti (D=192, 24 layers), 224 px, 1000 classes."""
    return VideoMambaConfig(embed_dim=192, depth=24, image=True, num_classes=1000)


@register_model
def videomamba_image_small() -> VideoMambaConfig:
    """Image VideoMamba-S (D=384, 24 layers), 224 px, 1000 classes."""
    return VideoMambaConfig(embed_dim=384, depth=24, image=True, num_classes=1000)


@register_model
def videomamba_image_middle() -> VideoMambaConfig:
    """Image VideoMamba-M (D=576, 32 layers), 224 px, 1000 classes."""
    return VideoMambaConfig(embed_dim=576, depth=32, image=True, num_classes=1000)


@register_model
def videomamba_image_base() -> VideoMambaConfig:
    """Image VideoMamba-B (D=768, 24 layers), 224 px, 1000 classes."""
    return VideoMambaConfig(embed_dim=768, depth=24, image=True, num_classes=1000)


# --- KAIST VideoMamba: tubelet 2, joint learned positions over t*S, full-flip backward
@register_model
def videomamba_kaist_tiny() -> VideoMambaConfig:
    """KAIST VideoMamba, D=192 ablation size: tubelet 2x16x16, joint positions, 16 frames."""
    return VideoMambaConfig(embed_dim=192, depth=24, tubelet_size=2, num_frames=16,
                            pos_embed="joint", joint_pos_init="expand", backward_order="full_flip")


@register_model
def videomamba_kaist_small() -> VideoMambaConfig:
    """KAIST VideoMamba, D=384: tubelet 2x16x16, joint positions, 16 frames."""
    return VideoMambaConfig(embed_dim=384, depth=24, tubelet_size=2, num_frames=16,
                            pos_embed="joint", joint_pos_init="expand", backward_order="full_flip")


def create_model(name_or_path: "str | VideoMambaConfig | dict | None" = None, pretrained: str | Path | None = None,
                 strict: bool | None = None, use_ema: bool | None = None, allow_unsafe: bool = False,
                 vision_only: bool = False, **overrides):
    """The single way to a model, with or without weights.

    name_or_path: a preset name, a config (object or dict), a path to weights (same as
    ``pretrained=``), or None with ``pretrained``: the file decides the architecture.
    pretrained: a directory written by :func:`videomamba.save_pretrained`, a training checkpoint of
    this engine (EMA weights with ``use_ema``), or any original file (video, image, Vim, masked
    pretraining, video-text; wrapped or not). A preset name and ``overrides`` win over the file;
    every difference and every adapted, skipped or dropped key is in ``model.load_report``.
    vision_only: from a video-text file, build only its vision tower (a VideoMamba backbone).
    """
    from .videomamba import VideoMamba

    if pretrained is None and isinstance(name_or_path, (str, Path)) and str(name_or_path) not in _PRESETS \
            and Path(name_or_path).exists():
        name_or_path, pretrained = None, name_or_path
    if pretrained is not None:
        from ..checkpoint import model_from_checkpoint
        return model_from_checkpoint(name_or_path, pretrained, strict=strict, use_ema=use_ema,
                                     allow_unsafe=allow_unsafe, vision_only=vision_only, **overrides)
    if name_or_path is None:
        raise ValueError("create_model needs a preset name, a config or pretrained=PATH")
    if isinstance(name_or_path, VideoMambaConfig):
        cfg = name_or_path.replace(**overrides) if overrides else name_or_path
    elif isinstance(name_or_path, dict):
        cfg = VideoMambaConfig.from_dict({**name_or_path, **overrides})
    else:
        cfg = get_config(str(name_or_path), **overrides)
    return VideoMamba(cfg)
