"""``videomamba predict``: top-k labels for video files of any length."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("-k", "--checkpoint", required=True,
                   help="saved model directory, training checkpoint (.pt), or original checkpoint with --model")
    p.add_argument("--topk", type=int, default=5, help="labels to show per video (default 5)")
    p.add_argument("--labels", default=None, help="class names, one per line (default: from the checkpoint)")
    p.add_argument("--model", default=None, help="preset name, needed only for original checkpoints")
    p.add_argument("--clips", type=int, default=None,
                   help="clips spread over the whole video (default: the test views of training)")
    p.add_argument("--crops", type=int, default=None, help="spatial crops per clip")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: as trained)")
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine import format_predictions, predict

    if args.topk < 1:
        raise CLIError(f"--topk must be >= 1, got {args.topk}")
    preds = predict(args.videos, args.checkpoint, model_name=args.model, topk=args.topk, labels=args.labels,
                    clips=args.clips, crops=args.crops, num_frames=args.frames, img_size=args.img_size,
                    device=args.device)
    print(json.dumps(preds, indent=2) if args.json else format_predictions(preds))
    return 0
