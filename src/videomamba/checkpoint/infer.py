"""The file decides the model: a :class:`VideoMambaConfig` read off a checkpoint's tensors and metadata.

Tensors tell width, depth, patch size, tubelet, state size, expansion, dt rank, conv width,
classes, the position layout and the grid. What they cannot tell comes from the metadata saved
beside them: the ``args`` Namespace of the original scripts (``model`` name, ``input_size``,
``num_frames``, ``tubelet_size``) and Vim's naming convention (``midclstok``: cls in the middle;
``div2``: mean of the two directions; ``stride8``: overlapping patches; no cls token: mean pooling).
"""
from __future__ import annotations

import math
import re

from .formats import Checkpoint
from .io import CheckpointError

# candidate frame sizes tried, in order, when nothing in the file states it (joint tables only)
_COMMON_SIZES = (224, 384, 288, 256, 192, 160, 128, 112, 96, 64, 32)


def _square(n: int) -> int | None:
    r = math.isqrt(n) if n > 0 else 0
    return r if r > 0 and r * r == n else None


def vim_switches(name: str) -> dict:
    """Vim's registered model names -> our switches (cls position, merge, patch stride)."""
    n = name.lower()
    out: dict = {}
    if "midclstok" in n or "middle_cls_token" in n:
        out["cls_position"] = "middle"
    elif "cls_token" in n or "clstok" in n:
        out["cls_position"] = "head"
    else:
        out["cls_position"] = "none"        # final_pool_type pools (mean) over the tokens
    if "div2" in n or "divide_out" in n:
        out["merge"] = "mean"
    m = re.search(r"stride(\d+)", n)
    if m:
        out["patch_stride"] = int(m.group(1))
    return out


def is_vim(ckpt: Checkpoint) -> bool:
    name = str(ckpt.args.get("model", ""))
    return name.startswith("vim_") or "bimambav2" in name


def backbone_kwargs(sd: dict, args: dict | None = None) -> dict:
    """VideoMambaConfig fields for a backbone state dict (keys as our model names them, except that
    the final norm may still be called ``norm``)."""
    args = args or {}
    need = "patch_embed.proj.weight"
    if need not in sd:
        raise CheckpointError(f"cannot read the architecture: no {need} (keys start with {sorted(sd)[:5]}); "
                              "pass a preset name")
    if any(k.startswith("patch_embed.stem.") for k in sd):
        raise CheckpointError("a conv-stem backbone: its patch size is not in the weights; load it from a file that "
                              "carries its config (as this package saves it) or pass the config")
    w = sd[need]
    D, p = int(w.shape[0]), int(w.shape[-1])
    image = w.dim() == 4
    k = 1 if image else int(w.shape[2])
    layer_ids = {int(m.group(1)) for key in sd if (m := re.match(r"layers\.(\d+)\.", key))}
    if not layer_ids:
        raise CheckpointError("cannot read the depth: no layers.{i}.* keys in the checkpoint")
    if layer_ids != set(range(max(layer_ids) + 1)):
        raise CheckpointError(f"blocks {sorted(set(range(max(layer_ids) + 1)) - layer_ids)} are missing from the checkpoint")
    try:
        E, N = (int(s) for s in sd["layers.0.mixer.A_log"].shape)
        R = int(sd["layers.0.mixer.dt_proj.weight"].shape[1])
    except KeyError as e:
        raise CheckpointError(f"cannot read the mixer: {e.args[0]} missing (is this a bidirectional Mamba "
                              "checkpoint?)") from None
    kw = dict(embed_dim=D, depth=max(layer_ids) + 1, patch_size=p, tubelet_size=k, d_state=N, expand=E // D,
              dt_rank=None if R == math.ceil(D / 16) else R, image=image,
              num_classes=int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0)
    if "layers.0.mixer.conv1d.weight" in sd:
        kw["d_conv"] = int(sd["layers.0.mixer.conv1d.weight"].shape[-1])
    name = str(args.get("model", ""))
    if name.startswith("vim_") or "bimambav2" in name:
        kw.update(vim_switches(name))
    stride = kw.get("patch_stride") or p
    has_cls = "cls_token" in sd
    if not has_cls:
        kw["cls_position"] = "none"
    c = 1 if has_cls else 0
    tpe, pe = sd.get("temporal_pos_embedding"), sd.get("pos_embed")
    size_arg = args.get("input_size") or args.get("img_size")
    frames_arg = args.get("num_frames")
    if pe is None:
        kw["pos_embed"] = "none"
        if size_arg:
            kw["img_size"] = int(size_arg)
    else:
        n = int(pe.shape[-2])
        g = _square(n - c)
        if tpe is not None or (g is not None and (image or k == 1)):
            if g is None:
                raise CheckpointError(f"pos_embed {tuple(pe.shape)} is not a spatial table of {'1 + ' if c else ''}h*w rows")
            kw["pos_embed"] = "factorised"
            kw["img_size"] = p + (g - 1) * stride
            # a spatial table alone, one-frame kernel, no frame count saved: an image model
            if tpe is None and k == 1 and not frames_arg:
                kw["image"] = image = True
        else:                                 # joint table over t*h*w (KAIST layout)
            kw["pos_embed"] = "joint"
            sizes = [int(size_arg)] if size_arg else list(_COMMON_SIZES)
            for size in sizes:
                S = ((size - p) // stride + 1) ** 2
                if size >= p and (n - c) % S == 0:
                    kw["img_size"], kw["num_frames"] = size, (n - c) // S * k
                    break
            else:
                raise CheckpointError(f"pos_embed {tuple(pe.shape)}: cannot split {n - c} rows into frames x "
                                      "patches; pass a preset name with num_frames and img_size")
    if tpe is not None:
        kw["num_frames"] = int(tpe.shape[1]) * k
    elif frames_arg and not image:
        kw["num_frames"] = int(frames_arg)
    if size_arg and int(size_arg) != kw.get("img_size", int(size_arg)):
        raise CheckpointError(f"args.input_size={size_arg} disagrees with the position table {tuple(pe.shape)}")
    if not image and kw.get("num_frames", 0) % k:
        raise CheckpointError(f"{kw['num_frames']} frames do not fit a tubelet of {k}")
    return kw


def infer_config(ckpt: Checkpoint):
    """The :class:`VideoMambaConfig` of a backbone checkpoint (classifier, Vim, masked pretraining,
    or the vision tower of a video-text file)."""
    from ..models import VideoMambaConfig

    if ckpt.config is not None and ckpt.kind == "backbone":
        cfg = {k: v for k, v in ckpt.config.items() if k != "architecture"}
        return VideoMambaConfig.from_dict(cfg)
    sd = ckpt.state_dict
    if ckpt.kind == "video_text":
        if ckpt.config is not None:
            return VideoMambaConfig.from_dict(ckpt.config["vision"])
        sd = {k[len("vision_encoder."):]: v for k, v in sd.items() if k.startswith("vision_encoder.")}
    args = dict(ckpt.args)
    if ckpt.kind == "video_text":
        rc = ckpt.release_config
        args.setdefault("num_frames", rc.get("num_frames"))
        args.setdefault("input_size", (rc.get("inputs") or {}).get("image_res"))
    return VideoMambaConfig(**backbone_kwargs(sd, args))
