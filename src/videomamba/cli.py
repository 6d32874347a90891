"""Command-line entry point: a thin dispatcher over typed functions.

Each sub-command lives in ``videomamba.commands.<module>`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``videomamba info`` does not pay for the video or training stack.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

# name -> (module under videomamba.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "parameters, tokens and GFLOPs of a model"),
    "make-synthetic": ("make_synthetic", "write the order-dependent synthetic video dataset"),
    "demo": ("demo", "synthetic data -> train -> evaluate -> predict, on a CPU in minutes"),
    "train": ("train", "train or fine-tune from a YAML config plus key=value overrides"),
    "eval": ("eval", "multi-view evaluation: top-1/top-5, per-class accuracy, confusion matrix"),
    "predict": ("predict", "top-k labels for video files of any length"),
    "convert": ("convert", "original checkpoint -> model.safetensors + config.json"),
    "pretrain": ("pretrain", "masked pretraining: align visible tokens to a frozen teacher"),
    "analyze": ("analyze", "KAIST analyses: frame reordering, Delta maps, scan-order ablation"),
    "index": ("index", "embed folders of video as overlapping windows into a search index"),
    "search": ("search", "find moments in a video index by text or by an example clip"),
    "serve": ("serve", "a search page over a video index (127.0.0.1 by default)"),
    "embed": ("embed", "video and text embeddings of a video-text model (safetensors / .npy + index)"),
    "export": ("export", "torch.export program (.pt2) or ONNX file of a model, checked against eager"),
}


# Commands that run models for long: they fix glibc's malloc mmap threshold first (runtime.py).
LONG_JOBS = {"train", "pretrain", "eval", "predict", "demo", "analyze", "index", "embed"}
# Opt-in: the fixed mmap threshold lowers a training step's peak RSS but costs time (page faults on
# every large tensor); python benchmarks/bench_malloc.py measures both. See videomamba.runtime.
MALLOC_TUNE_ENV = "VIDEOMAMBA_MALLOC_TUNE"


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


_OVERRIDE = re.compile(r"^\s*[A-Za-z_]\w*\.[A-Za-z_]\w*\s*=")     # section.key=value


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose positionals may come on both sides of options.

    A plain parser stops filling ``nargs="*"`` positionals at the first option, so
    ``train -c demo --epochs 2 optim.lr=1e-3`` would leave ``optim.lr=1e-3`` unrecognised. Every
    parser that can (no sub-commands among its positionals) parses with
    ``parse_known_intermixed_args``: the sub-command parsers are of this class too (argparse
    builds them with ``type(parent)``), so KEY=VALUE overrides may come anywhere after the
    command. An optional-value option such as ``--resume [CKPT]`` followed by ``section.key=value``
    (that is not an existing path) takes its ``const`` and leaves the override to the overrides.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            args = sys.argv[1:]
        args = self._split_optional_values(list(args))
        positionals = self._get_positional_actions()
        unsupported = (any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in positionals) or
                       any(a in positionals for g in self._mutually_exclusive_groups for a in g._group_actions))
        if self._intermixing or unsupported:
            return super().parse_known_args(args, namespace)
        # Python < 3.13 implements parse_known_intermixed_args with two calls of parse_known_args
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _split_optional_values(self, args: list[str]) -> list[str]:
        if self._intermixing or not any(a.dest == "overrides" for a in self._get_positional_actions()):
            return args
        out: list[str] = []
        for i, a in enumerate(args):
            if a == "--":
                return out + args[i:]
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and _OVERRIDE.match(nxt) and not os.path.exists(nxt):
                action = self._long_option(a)
                if action is not None and action.nargs == argparse.OPTIONAL and isinstance(action.const, str):
                    a = f"{a}={action.const}"
            out.append(a)
        return out

    def _long_option(self, arg: str) -> argparse.Action | None:
        """The action of ``--name`` (or of a unique abbreviation, as argparse allows)."""
        if not arg.startswith("--") or "=" in arg:
            return None
        if arg in self._option_string_actions:
            return self._option_string_actions[arg]
        hits = {a for s, a in self._option_string_actions.items() if s.startswith(arg)} if self.allow_abbrev else set()
        return hits.pop() if len(hits) == 1 else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that sub-command's module is imported (the others get an
    empty parser that still lists them in ``--help``)."""
    from . import __version__

    parser = Parser(prog="videomamba", description="VideoMamba: video understanding "
                                     "with bidirectional state-space models.")
    parser.add_argument("--version", action="version", version=f"videomamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if command is None or name == command:
            importlib.import_module(f"videomamba.commands.{module}").add_arguments(p)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is one), or None."""
    for a in argv:
        if a in COMMANDS:
            return a
        if not a.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)       # KEY=VALUE overrides may come before, between or after options
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.command in LONG_JOBS and os.environ.get(MALLOC_TUNE_ENV, "").strip() not in ("", "0"):
        from .runtime import tune_malloc
        tune_malloc()
    module = importlib.import_module(f"videomamba.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as e:
        print(f"videomamba {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
