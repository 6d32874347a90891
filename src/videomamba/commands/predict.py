"""``videomamba predict``: top-k labels for video files of any length."""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("-k", "--checkpoint", required=True,
                   help="saved model directory, training checkpoint (.pt), or an original checkpoint file "
                        "(the file decides the model)")
    p.add_argument("--topk", type=int, default=5, help="labels to show per video (default 5)")
    p.add_argument("--classes", "--labels", dest="labels", default=None,
                   help="class names: a file with one per line, or a shipped list (Kinetics400, "
                        "SomethingSomethingV2, Breakfast, COIN, HMDB51, UCF101, LVU_*); default: the model's, or "
                        "the dataset its head matches")
    p.add_argument("--model", default=None,
                   help="preset to build instead of the file's own architecture (its differences are reported)")
    p.add_argument("--ema", action="store_true", help="use the file's EMA weights")
    p.add_argument("--allow-partial", action="store_true",
                   help="run even when trained weights of the file would be dropped (e.g. a head of another size)")
    p.add_argument("--clips", type=int, default=None,
                   help="clips spread over the whole video (default: the test views of training)")
    p.add_argument("--crops", type=int, default=None, help="spatial crops per clip")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: as trained)")
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--windows", type=float, default=None, metavar="SECONDS",
                   help="one prediction per window of this many seconds (long videos)")
    p.add_argument("--window-stride", type=float, default=None, metavar="SECONDS",
                   help="start of one window to the next (default: the window length)")
    p.add_argument("--window-scheme", default="cover", choices=("cover", "release"),
                   help="cover: a last window ends at the video's end; release: the release's LVU rule")
    p.add_argument("--view-batch", type=int, default=None, help="views per forward pass (bounds memory)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..apps.predict import format_predictions, predict

    if args.topk < 1:
        raise CLIError(f"--topk must be >= 1, got {args.topk}")
    if args.windows is not None and args.windows <= 0:
        raise CLIError(f"--windows must be > 0 seconds, got {args.windows}")
    preds = predict(args.videos, args.checkpoint, model_name=args.model, topk=args.topk, labels=args.labels,
                    clips=args.clips, crops=args.crops, num_frames=args.frames, img_size=args.img_size,
                    device=args.device, use_ema=True if args.ema else None, allow_partial=args.allow_partial,
                    windows=args.windows, window_stride=args.window_stride, window_scheme=args.window_scheme,
                    view_batch=args.view_batch,
                    log=lambda s: print(s, file=sys.stderr))
    print(json.dumps(preds, indent=2) if args.json else format_predictions(preds))
    return 0
