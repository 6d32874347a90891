"""``videomamba eval``: multi-view testing of a checkpoint on an annotation file."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("annotations", help="annotation file (CSV / 'path label' lines / folder-per-class directory)")
    p.add_argument("-k", "--checkpoint", required=True,
                   help="saved model directory, training checkpoint (.pt), or original checkpoint with --model")
    p.add_argument("--root", default=None, help="prefix for relative video paths")
    p.add_argument("--format", default="auto", help="annotation format (default: auto)")
    p.add_argument("--model", default=None,
                   help="preset to build instead of the file's own architecture (its differences are reported)")
    p.add_argument("--allow-partial", action="store_true",
                   help="run even when trained weights of the file would be dropped (e.g. a head of another size)")
    p.add_argument("--classes", default=None, help="class names, one per line (default: from the checkpoint)")
    p.add_argument("--clips", type=int, default=None, help="clips per video (default: as trained)")
    p.add_argument("--crops", type=int, default=None, help="spatial crops per clip (default: as trained)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: as trained)")
    p.add_argument("--img-size", type=int, default=None, help="crop size (default: as trained)")
    p.add_argument("--short-side", type=int, default=None, help="resize the short side before cropping")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--view-batch", type=int, default=None,
                   help="views per forward pass (bounds memory; default: the training config's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"])
    p.add_argument("--no-ema", action="store_true", help="use the raw weights of a training checkpoint, not its EMA")
    p.add_argument("--shuffle-frames", action="store_true",
                   help="also evaluate with the frames of every clip shuffled (does the model use temporal order?)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable videos instead of failing")
    p.add_argument("-o", "--out", default=None, help="write eval_results.json, per_class.csv and confusion.png here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    # ---- video-text retrieval (engine/retrieval.py); on by itself for a saved video-text model
    r = p.add_argument_group("video-text retrieval")
    r.add_argument("--retrieval", action="store_true",
                   help="text<->video retrieval of a video-text model on a caption annotation file "
                        "(the release's JSON layout or path,caption CSV)")
    r.add_argument("--dataset", default=None, help="msrvtt | didemo | anet | lsmdc | msvd: paragraph mode and text length")
    r.add_argument("--paragraph", action="store_true", default=None, help="join each video's captions into one")
    r.add_argument("--k-test", type=int, default=128, help="candidates re-ranked with matching scores (default 128)")
    r.add_argument("--max-txt-l", type=int, default=None, help="text length in tokens (default: dataset / model)")
    r.add_argument("--no-rerank", action="store_true", help="contrastive similarities only")
    r.add_argument("--skip-missing", action="store_true", help="skip missing video files (counted)")


def _is_video_text(path: str) -> bool:
    from pathlib import Path
    cfg = Path(path) / "config.json"
    try:
        return cfg.is_file() and json.loads(cfg.read_text()).get("architecture") == "VideoTextModel"
    except (OSError, json.JSONDecodeError):
        return False


def run(args: argparse.Namespace) -> int:
    from ..apps.evaluate import EvalOptions, evaluate

    if args.retrieval or _is_video_text(args.checkpoint):
        from ..engine.retrieval import evaluate_files

        res = evaluate_files(args.checkpoint, args.annotations, root=args.root, dataset=args.dataset,
                             paragraph=args.paragraph, k_test=args.k_test, clips=args.clips or 1,
                             num_frames=args.frames, img_size=args.img_size, max_txt_l=args.max_txt_l,
                             batch_size=args.batch_size, num_workers=args.workers, rerank_scores=not args.no_rerank,
                             skip_missing=args.skip_missing, device=args.device,
                             amp="none" if args.amp == "auto" else args.amp, shuffle_frames=args.shuffle_frames,
                             out_dir=args.out, progress=not args.json, log=(lambda s: None) if args.json else print)
        if args.json:
            import torch
            print(json.dumps({k: v for k, v in res.items() if not isinstance(v, torch.Tensor)}, indent=2, default=str))
        return 0

    clip = {k: v for k, v in (("num_frames", args.frames), ("img_size", args.img_size),
                              ("short_side", args.short_side), ("test_clips", args.clips),
                              ("test_crops", args.crops)) if v is not None}
    opts = EvalOptions(batch_size=args.batch_size, num_workers=args.workers, view_batch=args.view_batch,
                       device=args.device, amp=args.amp, shuffle_frames=args.shuffle_frames, skip_bad=args.skip_bad,
                       progress=not args.json, out_dir=args.out, model_name=args.model,
                       use_ema=False if args.no_ema else None, allow_partial=args.allow_partial)
    res = evaluate(args.checkpoint, args.annotations, clip=clip, options=opts, root=args.root, fmt=args.format,
                   classes=args.classes, log=None if args.json else print)
    if args.json:
        res = {k: v for k, v in res.items() if k != "predictions"}
        print(json.dumps(res, indent=2, default=str))
    return 0
