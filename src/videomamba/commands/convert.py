"""``videomamba convert``: original checkpoint -> our directory format (safetensors + config.json)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="checkpoint in any supported layout: original .pth/.pt/.bin/.safetensors, a training "
                               "checkpoint of this engine, or a saved directory")
    p.add_argument("out_dir", help="directory to write model.safetensors + config.json into")
    p.add_argument("--model", default=None,
                   help="preset to build (default: the file decides: tensors and its saved args/config)")
    p.add_argument("--num-classes", type=int, default=None, help="head size (drops or keeps the head)")
    p.add_argument("--num-frames", type=int, default=None, help="frames the position tables are sized for")
    p.add_argument("--img-size", type=int, default=None, help="resolution the position tables are sized for")
    p.add_argument("--tubelet-size", type=int, default=None, help="inflate a 2-D patch kernel to k frames")
    p.add_argument("--video", action="store_true", help="convert an image checkpoint into a video model")
    p.add_argument("--strict", action="store_true", help="fail unless every key matches after adaptation")
    p.add_argument("--allow-unsafe-pickle", action="store_true",
                   help="fully unpickle files with objects outside the allow-list (only files you trust)")
    p.add_argument("--ema", action="store_true", help="take the file's EMA weights (model_ema / ema)")
    p.add_argument("--vision-only", action="store_true", help="video-text file: convert only its vision tower")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing the written model with the file's own model on one input")


def run(args: argparse.Namespace) -> int:
    from ..apps.convert import convert_checkpoint

    overrides = {k: v for k, v in (("num_classes", args.num_classes), ("num_frames", args.num_frames),
                                   ("img_size", args.img_size), ("tubelet_size", args.tubelet_size)) if v is not None}
    if args.video:
        overrides["image"] = False
    res = convert_checkpoint(args.src, args.out_dir, args.model, strict=args.strict,
                             allow_unsafe=args.allow_unsafe_pickle, use_ema=True if args.ema else None,
                             vision_only=args.vision_only, check=not args.no_check, **overrides)
    cfg = res["config"]
    print(res["report"])
    if hasattr(cfg, "embed_dim"):
        print(f"model: embed_dim {cfg.embed_dim}, depth {cfg.depth}, {cfg.num_classes} classes, "
              f"{'image' if cfg.image else f'{cfg.num_frames} frames'}, {cfg.img_size} px, patch {cfg.patch_size}"
              f"{f' stride {cfg.patch_stride}' if cfg.patch_stride else ''}, tubelet {cfg.tubelet_size}, "
              f"cls {cfg.cls_position}, merge {cfg.merge}, positions {cfg.pos_embed}")
    chk = res["check"]
    if chk is not None:
        if chk["max_abs_diff"] is None:
            print(f"check: {chk['what']}")
        else:
            print(f"check against the file's own model: {chk['what']}, max |difference| = {chk['max_abs_diff']:.3g}")
    print(f"wrote {res['out_dir']}/model.safetensors and config.json")
    return 0
