"""Original checkpoint -> our directory format (``model.safetensors`` + ``config.json``).

The architecture is read off the tensors when no preset is given: width and patch from the patch
kernel, depth from the block indices, state size / expansion / dt rank from the mixer, classes
from the head, grid from the position tables. The weights then go through the checkpoint filter.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch


def infer_config(state_dict: dict, **overrides):
    """A :class:`VideoMambaConfig` that fits an (unwrapped) original state dict."""
    from ..checkpoint import CheckpointError
    from ..models import VideoMambaConfig

    sd = state_dict
    need = "patch_embed.proj.weight"
    if need not in sd:
        raise CheckpointError(f"cannot infer the architecture: no {need} in the checkpoint "
                              f"(keys start with {sorted(sd)[:5]}); pass a preset with --model")
    w = sd[need]
    D, p = w.shape[0], w.shape[-1]
    image = w.dim() == 4
    k = 1 if image else w.shape[2]
    depth = 1 + max((int(m.group(1)) for key in sd if (m := re.match(r"layers\.(\d+)\.", key))), default=-1)
    if depth < 1:
        raise CheckpointError("cannot infer the depth: no layers.{i}.* keys in the checkpoint")
    E, N = sd["layers.0.mixer.A_log"].shape
    R = sd["layers.0.mixer.dt_proj.weight"].shape[1]
    num_classes = sd["head.weight"].shape[0] if "head.weight" in sd else 0
    kw = dict(embed_dim=D, depth=depth, patch_size=p, tubelet_size=k, d_state=N, expand=E // D,
              dt_rank=None if R == math.ceil(D / 16) else R, num_classes=num_classes)
    if "layers.0.mixer.conv1d.weight" in sd:
        kw["d_conv"] = sd["layers.0.mixer.conv1d.weight"].shape[-1]
    pe = sd.get("pos_embed")
    if pe is not None:
        n = pe.shape[-2]
        for c in (1, 0):
            g = math.isqrt(n - c)
            if g * g == n - c:
                kw["img_size"] = g * p
                kw["cls_position"] = "head" if c else "none"
                break
        else:
            raise CheckpointError(f"pos_embed {tuple(pe.shape)} is not a spatial table; pass a preset with --model")
    tpe = sd.get("temporal_pos_embedding")
    if tpe is not None:
        kw["num_frames"] = tpe.shape[1] * k
    elif image:
        kw["image"] = True
    kw.update(overrides)
    return VideoMambaConfig(**kw)


def convert_checkpoint(src: str | Path, out_dir: str | Path, model_name: str | None = None, *,
                       strict: bool = False, allow_unsafe: bool = False, check: bool = True, **overrides) -> dict:
    """Convert ``src`` into ``out_dir``. Returns ``{"out_dir", "config", "report", "max_abs_diff"}``;
    ``check`` reloads the written directory and compares its logits with the converted model's."""
    from ..checkpoint import load_checkpoint, load_state_dict_file, save_pretrained, unwrap_state_dict
    from ..models import VideoMamba, create_model, get_config

    raw = load_state_dict_file(src, allow_unsafe=allow_unsafe)
    sd, fmt, _ = unwrap_state_dict(raw)
    if model_name:
        cfg = get_config(model_name, **overrides)
    else:
        cfg = infer_config(sd, **overrides)
    cfg = cfg.replace(extra={**cfg.extra, "converted_from": Path(src).name, "source_format": fmt})
    model = VideoMamba(cfg).eval()
    report = load_checkpoint(model, raw, strict=strict)
    report.source = str(src)
    out = save_pretrained(model, out_dir)
    diff = None
    if check:
        again = create_model(cfg, pretrained=out).eval()
        T = 1 if cfg.image else cfg.num_frames
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, T, cfg.img_size, cfg.img_size, generator=g)
        if cfg.image:
            x = x[:, :, 0]
        with torch.no_grad():
            diff = float((model(x) - again(x)).abs().max())
    return {"out_dir": out, "config": cfg, "report": report, "max_abs_diff": diff}
