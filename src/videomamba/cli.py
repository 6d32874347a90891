"""Command-line entry point: a thin dispatcher over typed functions.

Each sub-command lives in ``videomamba.commands.<module>`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``videomamba info`` does not pay for the video or training stack.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module under videomamba.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "parameters, tokens and GFLOPs of a model"),
    "benchmark": ("benchmark", "time and peak memory against peer models (JSON, markdown, plots)"),
    "make-synthetic": ("make_synthetic", "write the order-dependent synthetic video dataset"),
    "demo": ("demo", "synthetic data -> train -> evaluate -> predict, on a CPU in minutes"),
    "train": ("train", "train or fine-tune from a YAML config plus key=value overrides"),
    "eval": ("eval", "multi-view evaluation: top-1/top-5, per-class accuracy, confusion matrix"),
    "predict": ("predict", "top-k labels for video files of any length"),
    "convert": ("convert", "original checkpoint -> model.safetensors + config.json"),
    "pretrain": ("pretrain", "masked pretraining: align visible tokens to a frozen teacher"),
    "analyze": ("analyze", "KAIST analyses: frame reordering, Delta maps, scan-order ablation"),
}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="videomamba", description="VideoMamba: video understanding "
                                     "with bidirectional state-space models.")
    parser.add_argument("--version", action="version", version=f"videomamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(f"videomamba.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot take positionals on both sides of an option: KEY=VALUE overrides after an
    # option (``train -c demo -o out optim.lr=1e-3``) arrive here and join the others.
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(f"videomamba.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as e:
        print(f"videomamba {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
