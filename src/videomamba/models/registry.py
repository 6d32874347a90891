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


def create_model(name_or_config: "str | VideoMambaConfig | dict", pretrained: str | Path | None = None,
                 strict: bool = False, **overrides):
    """Build a model from a preset name, a config or a saved directory.

    ``pretrained``: a directory saved by :func:`videomamba.save_pretrained` (config + weights:
    rebuilds that exact model, ``overrides`` applied on top), or a checkpoint file in any format
    the checkpoint filter understands (original ``.pth``, safetensors), adapted to the model.
    """
    from .videomamba import VideoMamba

    if pretrained is not None and Path(pretrained).is_dir():
        from ..checkpoint import load_pretrained_dir
        return load_pretrained_dir(pretrained, name_or_config, **overrides)
    if isinstance(name_or_config, VideoMambaConfig):
        cfg = name_or_config.replace(**overrides) if overrides else name_or_config
    elif isinstance(name_or_config, dict):
        cfg = VideoMambaConfig.from_dict({**name_or_config, **overrides})
    else:
        cfg = get_config(name_or_config, **overrides)
    model = VideoMamba(cfg)
    if pretrained is not None:
        from ..checkpoint import load_checkpoint
        report = load_checkpoint(model, pretrained, strict=strict)
        model.load_report = report
    return model
