"""``videomamba demo``: synthetic dataset -> train -> evaluate (+ shuffled frames) -> predict."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides of the demo config (configs/demo.yaml), e.g. optim.epochs=5")
    p.add_argument("-o", "--out", default="videomamba-demo", help="output directory (default: ./videomamba-demo)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo config's)")
    p.add_argument("--per-class", type=int, default=None,
                   help="synthetic videos per class, a quarter for validation (default: the demo's, 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")


def run(args: argparse.Namespace) -> int:
    from ..apps.demo import DEMO_PER_CLASS, run_demo

    run_demo(args.out, epochs=args.epochs, per_class=args.per_class or DEMO_PER_CLASS, seed=args.seed,
             device=args.device, overrides=args.overrides)
    return 0
