"""The one way in for weights: file -> parsed checkpoint -> config -> model -> filtered weights.

``model_from_checkpoint`` (what ``create_model(name_or_path, pretrained=PATH)`` calls) reads the
file once, lets the file decide the architecture unless a preset name or overrides say otherwise
(every such difference is reported), builds the model and loads the weights through the filter.
``load_checkpoint`` does the last step into a model you built yourself.
"""
from __future__ import annotations

from .adapters import LoadReport, checkpoint_filter
from .formats import Checkpoint, read_checkpoint
from .infer import infer_config, is_vim
from .io import CheckpointError

# fields whose differences between the file and the built model are worth a line in the report
_REPORTED = ("embed_dim", "depth", "num_classes", "num_frames", "img_size", "patch_size", "patch_stride",
             "tubelet_size", "image", "pos_embed", "cls_position", "merge", "d_state", "expand", "dt_rank",
             "d_conv", "scan_order", "backward_order")


def is_video_text_model(model) -> bool:
    return hasattr(model, "vision_encoder") and hasattr(model, "text_encoder")


def _backbone_state_dict(ckpt: Checkpoint) -> dict:
    """The backbone part: for a video-text file its vision tower (``vision_encoder.`` removed),
    everything else kept so that the filter can report it as skipped."""
    if ckpt.kind != "video_text":
        return ckpt.state_dict
    p = "vision_encoder."
    out = {k[len(p):]: v for k, v in ckpt.state_dict.items() if k.startswith(p)}
    for k, v in ckpt.state_dict.items():
        if not k.startswith(p):
            out.setdefault(k, v)
    return out


def _source_config(ckpt: Checkpoint):
    try:
        return infer_config(ckpt)
    except (CheckpointError, ValueError, KeyError):
        return None


def load_into(model, ckpt: Checkpoint, strict: bool = False, report: LoadReport | None = None,
              **filter_kwargs) -> LoadReport:
    """Load a parsed checkpoint into ``model`` (a VideoMamba backbone/classifier or a video-text
    model) through the filter; returns the report."""
    report = report or LoadReport()
    report.source, report.format = ckpt.source, ckpt.format
    if is_video_text_model(model):
        from .video_text import video_text_state_dict
        sd = video_text_state_dict(ckpt, model, report, **filter_kwargs)
    else:
        source = filter_kwargs.pop("source", None) or _source_config(ckpt)
        cls_row = "middle" if (is_vim(ckpt) and source is not None and source.cls_position == "middle") else "head"
        sd, report = checkpoint_filter(_backbone_state_dict(ckpt), model, source=source,
                                       cls_row=filter_kwargs.pop("cls_row", cls_row), report=report, **filter_kwargs)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"strict load of {ckpt.source} failed: missing {report.missing}, "
                              f"unexpected {report.unexpected}")
    ref = model.state_dict()
    model.load_state_dict({k: v.to(dtype=ref[k].dtype) for k, v in sd.items()}, strict=False)
    return report


def load_checkpoint(model, path_or_state_dict, strict: bool = False, allow_unsafe: bool = False,
                    use_ema: bool | None = None, **filter_kwargs) -> LoadReport:
    """Load any supported checkpoint (path, directory, or in-memory dict) into ``model``.

    strict=True: every model key must come from the checkpoint and every checkpoint key must be
    used (auxiliary parts such as decoders and teachers are skipped, not counted)."""
    ckpt = read_checkpoint(path_or_state_dict, use_ema=use_ema, allow_unsafe=allow_unsafe)
    return load_into(model, ckpt, strict=strict, **filter_kwargs)


def _config_notes(file_cfg, cfg, name, overrides) -> dict[str, str]:
    notes = {}
    for f in _REPORTED:
        a, b = getattr(file_cfg, f), getattr(cfg, f)
        if a != b:
            why = "override" if f in overrides else f"preset {name}"
            notes[f] = f"{b} ({why}; the file has {a})"
    return notes


def model_from_checkpoint(name_or_config, pretrained, strict: bool | None = None, use_ema: bool | None = None,
                          allow_unsafe: bool = False, vision_only: bool = False, **overrides):
    """Build the model that ``pretrained`` was saved from and load it (see module docstring).

    name_or_config: None (the file decides), a preset name or a config (it wins; differences from
    the file are reported). A video-text file without a preset gives the video-text model; with a
    backbone preset (or ``vision_only``), its vision tower. strict: None -> strict for our own files loaded without
    changes, lenient otherwise."""
    from ..models.config import VideoMambaConfig
    from ..models.registry import get_config
    from ..models.videomamba import VideoMamba

    ckpt = read_checkpoint(pretrained, use_ema=use_ema, allow_unsafe=allow_unsafe)
    if ckpt.kind == "video_text" and name_or_config is None and not vision_only:
        from .video_text import video_text_from_checkpoint
        return video_text_from_checkpoint(ckpt, strict=strict, **overrides)
    file_cfg = _source_config(ckpt)
    if name_or_config is None:
        if file_cfg is None:
            infer_config(ckpt)               # raises the reason
        cfg, name = file_cfg, "file"
    elif isinstance(name_or_config, VideoMambaConfig):
        cfg, name = name_or_config, "config"
    elif isinstance(name_or_config, dict):
        cfg, name = VideoMambaConfig.from_dict(name_or_config), "config"
    else:
        cfg, name = get_config(name_or_config), name_or_config
    extra_override = overrides.pop("extra", None)
    cfg = cfg.replace(**overrides) if overrides else cfg
    if file_cfg is not None and (file_cfg.extra or extra_override):
        cfg = cfg.replace(extra={**file_cfg.extra, **cfg.extra, **(extra_override or {})})
    elif extra_override:
        cfg = cfg.replace(extra={**cfg.extra, **extra_override})
    report = LoadReport()
    if file_cfg is not None:
        report.config = _config_notes(file_cfg, cfg, name, overrides)
    model = VideoMamba(cfg)
    if strict is None:
        strict = ckpt.config is not None and not report.config and name_or_config is None
    load_into(model, ckpt, strict=strict, report=report, source=file_cfg)
    model.load_report = report
    return model
