"""Any checkpoint -> our directory format (``model.safetensors`` + ``config.json``).

The file decides the model (``create_model(None, pretrained=...)``) unless a preset or overrides
say otherwise. The check compares the written directory, reloaded, with the file as the filter
read it: a model of the file's own architecture loaded from the file, on the same input.
"""
from __future__ import annotations

from pathlib import Path

import torch


def _probe_input(cfg, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    T = 1 if cfg.image else cfg.num_frames
    x = torch.randn(2, 3, T, cfg.img_size, cfg.img_size, generator=g)
    return x[:, :, 0] if cfg.image else x


def convert_checkpoint(src: str | Path, out_dir: str | Path, model_name: str | None = None, *,
                       strict: bool = False, allow_unsafe: bool = False, use_ema: bool | None = None,
                       vision_only: bool = False, check: bool = True, **overrides) -> dict:
    """Convert ``src`` into ``out_dir``.

    Returns ``{"out_dir", "config", "report", "check"}``; ``check`` (when asked and comparable) is
    ``{"what", "max_abs_diff"}``: the reloaded directory against the file's own model on one input
    (logits, or features when the head was dropped or changed). Geometry changes (frames, size)
    resample tables, so the comparison is then made at the new geometry on both sides only when
    the file's model can run it; otherwise ``check["what"]`` says why nothing was compared."""
    from ..checkpoint import CheckpointError, infer_config, load_into, read_checkpoint, save_pretrained
    from ..checkpoint.load import is_video_text_model
    from ..models import VideoMamba, create_model

    ckpt = read_checkpoint(src, use_ema=use_ema, allow_unsafe=allow_unsafe)
    model = create_model(model_name, pretrained=ckpt, strict=strict, vision_only=vision_only, **overrides).eval()
    report = model.load_report
    cfg = model.cfg
    if is_video_text_model(model):
        out = save_pretrained(model, out_dir, extra={"converted_from": Path(str(src)).name,
                                                     "source_format": ckpt.format})
        return {"out_dir": out, "config": cfg, "report": report, "check": None}
    cfg.extra = {**cfg.extra, "converted_from": Path(str(src)).name, "source_format": ckpt.format}
    out = save_pretrained(model, out_dir)
    result = {"out_dir": out, "config": cfg, "report": report, "check": None}
    if not check:
        return result
    again = create_model(None, pretrained=out).eval()
    try:
        file_cfg = infer_config(ckpt)
    except (CheckpointError, ValueError):
        file_cfg = None
    if file_cfg is None:
        result["check"] = {"what": "not compared: the file's architecture could not be read from it alone",
                           "max_abs_diff": None}
        return result
    ref = VideoMamba(file_cfg).eval()
    load_into(ref, ckpt)
    same_geometry = (file_cfg.num_frames, file_cfg.img_size, file_cfg.image) == (cfg.num_frames, cfg.img_size, cfg.image)
    x = _probe_input(cfg if same_geometry or not cfg.image else file_cfg)
    same_head = file_cfg.num_classes == cfg.num_classes and not any(k.startswith("head.") for k in report.adapted)
    with torch.no_grad():
        if same_head and cfg.num_classes > 0:
            a, b, what = again(x), ref(x), "logits"
        else:
            a = again.forward_head(again.forward_features(x), pre_logits=True)
            b = ref.forward_head(ref.forward_features(x), pre_logits=True)
            what = "features (head changed)"
    if not same_geometry:
        what += f" at {tuple(x.shape)}; tables resampled from the file's {file_cfg.num_frames} frames, {file_cfg.img_size} px"
    result["check"] = {"what": what, "max_abs_diff": float((a - b).abs().max())}
    return result
