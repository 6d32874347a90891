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
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"])
    p.add_argument("--no-ema", action="store_true", help="use the raw weights of a training checkpoint, not its EMA")
    p.add_argument("--shuffle-frames", action="store_true",
                   help="also evaluate with the frames of every clip shuffled (does the model use temporal order?)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable videos instead of failing")
    p.add_argument("-o", "--out", default=None, help="write eval_results.json, per_class.csv and confusion.png here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from ..engine import evaluate

    res = evaluate(args.checkpoint, args.annotations, root=args.root, fmt=args.format, model_name=args.model,
                   classes=args.classes, clips=args.clips, crops=args.crops, num_frames=args.frames,
                   img_size=args.img_size, short_side=args.short_side, batch_size=args.batch_size,
                   num_workers=args.workers, device=args.device, amp=args.amp, shuffle_frames=args.shuffle_frames,
                   out_dir=args.out, use_ema=False if args.no_ema else None, allow_partial=args.allow_partial, skip_bad=args.skip_bad,
                   progress=not args.json, log=None if args.json else print)
    if args.json:
        res = {k: v for k, v in res.items() if k != "predictions"}
        print(json.dumps(res, indent=2, default=str))
    return 0
