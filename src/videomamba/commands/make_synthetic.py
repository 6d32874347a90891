"""``videomamba make-synthetic OUT``: write the order-dependent synthetic video dataset."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.synthetic import DEFAULT_CLASSES, SYNTHETIC_CLASSES

    parser.add_argument("out", metavar="OUT", help="output folder (videos/, train.csv, val.csv, classes.txt)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME", choices=SYNTHETIC_CLASSES,
                        help=f"classes, in label order (default: {' '.join(DEFAULT_CLASSES)}); "
                             f"choices: {' '.join(SYNTHETIC_CLASSES)}")
    parser.add_argument("--per-class", type=int, default=40, metavar="N", help="videos per class (default 40)")
    parser.add_argument("--frames", type=int, default=16, metavar="T", help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=64, metavar="S", help="frame side in pixels, even (default 64)")
    parser.add_argument("--fps", type=int, default=8, help="frame rate (default 8)")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="share of each class held out for validation (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset (default 0)")
    parser.add_argument("--captions", action="store_true",
                        help="also write a caption for every clip (colour, shape and motion: 'a red triangle "
                             "moving to the left') as captions_{train,val}.json/.csv for video-text retrieval; "
                             "backward classes then replay their forward partner's clips in reverse")


def run(args) -> int:
    from ..data.synthetic import make_synthetic

    out = make_synthetic(args.out, classes=args.classes, per_class=args.per_class, frames=args.frames,
                         size=args.size, seed=args.seed, val_fraction=args.val_fraction, fps=args.fps,
                         progress=True, captions=args.captions)
    print(f"wrote {out['train']}, {out['val']}, {out['classes']} under {out['root']}")
    if args.captions:
        print(f"captions: {out['captions_train']}, {out['captions_val']} (+ .csv)")
    return 0
