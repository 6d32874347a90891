"""``videomamba info MODEL``: parameters, token count, GFLOPs in two conventions, scan backends."""
from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("model", nargs="?", default=None,
                   help="preset name (see --list) or a directory saved by save_pretrained/convert")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--img-size", type=int, default=None, help="frame size in pixels (default: the model's)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the head (default: the model's)")
    p.add_argument("--list", action="store_true", help="list the registered presets")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def model_info(model: str, frames: int | None = None, img_size: int | None = None,
               num_classes: int | None = None) -> dict:
    from pathlib import Path

    from ..models import get_config
    from ..models.flops import count_flops

    if Path(model).exists():
        from ..checkpoint import infer_config, read_checkpoint
        cfg = infer_config(read_checkpoint(model))
    else:
        cfg = get_config(model)
    over = {k: v for k, v in (("num_frames", frames), ("img_size", img_size), ("num_classes", num_classes))
            if v is not None}
    if over:
        cfg = cfg.replace(**over)
    c = count_flops(cfg)
    return {"model": model, "num_frames": cfg.num_frames, "img_size": cfg.img_size,
            "tubelet_size": cfg.tubelet_size, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_classes": cfg.num_classes, **c.to_dict()}


def run(args) -> int:
    from .. import list_models

    if args.list or args.model is None:
        from ..models.registry import _DESCRIPTIONS
        for n in list_models():
            print(f"{n:28s} {_DESCRIPTIONS[n]}")
        return 0
    info = model_info(args.model, args.frames, args.img_size, args.num_classes)
    try:
        from ..ops.backend import describe_backends
        info["scan_backends"] = describe_backends()
    except ImportError:
        pass
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['model']}: D={info['embed_dim']} depth={info['depth']} tubelet={info['tubelet_size']} "
          f"frames={info['num_frames']} img={info['img_size']} classes={info['num_classes']}")
    print(f"  parameters        {info['params'] / 1e6:.2f} M")
    print(f"  tokens            {info['tokens']}")
    print(f"  GFLOPs (papers)   {info['gflops_papers']:.1f}   [{info['convention']} convention: ops "
          f"outside the opaque scan kernel]")
    print(f"  GFLOPs (full)     {info['gflops_full']:.1f}   [every linear and conv + scan at 9*L*E*N per direction]")
    for k, v in info["breakdown_gflops"].items():
        print(f"    {k:14s} {v:8.3f}")
    if "scan_backends" in info:
        print(f"  scan backends     {info['scan_backends']}")
    return 0
