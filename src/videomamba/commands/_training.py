"""What ``train`` and ``pretrain`` share: the flags that map onto config keys, and how a run's end
maps to an exit status (0 done, 3 a non-finite loss, 130 interrupted, the run resumable)."""
from __future__ import annotations

import argparse
import sys

# flag dest -> config key, for the flags both commands have
COMMON_FLAGS = (("out", "train.out_dir"), ("pretrained", "model.pretrained"), ("epochs", "optim.epochs"),
                ("device", "train.device"))


def add_common_arguments(p: argparse.ArgumentParser, pretrained_help: str) -> None:
    p.add_argument("-o", "--out", default=None, help="output directory (train.out_dir)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="resume from a checkpoint file or run directory; alone: the newest checkpoint in the "
                        "output directory")
    p.add_argument("--pretrained", default=None, help=pretrained_help)
    p.add_argument("--epochs", type=int, default=None, help="optim.epochs")
    p.add_argument("--device", default=None, help="train.device: auto, cpu, cuda, cuda:N")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def overrides_from_flags(args: argparse.Namespace, extra: tuple = ()) -> list[str]:
    """``section.key=value`` overrides: the KEY=VALUE arguments, then every flag that was given
    (flags win over the overrides)."""
    out = list(args.overrides)
    for dest, key in (*COMMON_FLAGS, *extra):
        value = getattr(args, dest, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def run_training(cfg, resume, command: str):
    """Train; returns ``(result, 0)``, or ``(None, status)`` with the reason printed."""
    from ..engine import NonFiniteLossError, TrainingInterrupted, train

    try:
        return train(cfg, resume=resume), 0
    except NonFiniteLossError as e:
        print(f"videomamba {command}: {e}", file=sys.stderr)
        return None, 3
    except TrainingInterrupted as e:
        print(f"videomamba {command}: {e}", file=sys.stderr)
        return None, 130
