"""``videomamba export -k MODEL``: a torch.export program (.pt2) or an ONNX file, checked against eager."""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", "--checkpoint", required=True,
                   help="saved model directory, training checkpoint (.pt), or an original checkpoint file "
                        "(the file decides the model)")
    p.add_argument("--format", choices=("pt2", "onnx"), default="pt2",
                   help="pt2: torch.export program with the compiled kernels as custom ops (load it after "
                        "`import videomamba`); onnx: ONNX file through the pure-torch scan (default pt2)")
    p.add_argument("-o", "--output", default=None,
                   help="file to write (default: model.<format> next to the checkpoint, or in the current "
                        "folder for a file)")
    p.add_argument("--frames", type=int, default=None, help="frames of the traced input (default: the model's)")
    p.add_argument("--img-size", type=int, default=None, help="frame size in pixels (default: the model's)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traced input (default 1)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="let the exported file take any batch size (checked on two sizes)")
    p.add_argument("--ema", action="store_true", help="use the file's EMA weights")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="fail (exit 1) when the exported file's logits differ from eager by more (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def default_output(checkpoint: str, fmt: str):
    from pathlib import Path

    src = Path(checkpoint)
    folder = src if src.is_dir() else Path.cwd()
    stem = "model" if src.is_dir() else src.stem
    return folder / f"{stem}.{fmt}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..cli import CLIError

    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    for name in ("frames", "img_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not Path(args.checkpoint).exists():
        raise CLIError(f"-k {args.checkpoint}: no such file or directory")

    from .. import create_model
    from ..models.export import example_input, export_model, input_shape

    model = create_model(None, pretrained=args.checkpoint, use_ema=True if args.ema else None,
                         vision_only=True)
    shape = input_shape(model, args.frames, args.img_size, args.batch)
    out = Path(args.output) if args.output else default_output(args.checkpoint, args.format)
    try:
        res = export_model(model, out, args.format, example_input(shape),
                           dynamic_batch=args.dynamic_batch)
    except RuntimeError as e:  # a missing ONNX package, or an exported file that disagrees with eager
        raise CLIError(str(e)) from e
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        batches = "any batch size (checked: " + ", ".join(map(str, res.checked_batches)) + ")" \
            if res.dynamic_batch else f"batch {shape[0]}"
        print(f"wrote {res.path} ({res.format}, input {tuple(shape)}, {batches}; "
              f"{res.seconds:.1f} s)")
        print(f"max |exported - eager| = {res.max_abs_diff:.3g}")
    if not res.max_abs_diff <= args.atol:
        print(f"videomamba export: error: the exported file differs from the eager model by "
              f"{res.max_abs_diff:.3g} > --atol {args.atol:g}", file=sys.stderr)
        return 1
    return 0
