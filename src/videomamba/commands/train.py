"""``videomamba train``: train or fine-tune from a YAML config plus ``section.key=value`` overrides."""
from __future__ import annotations

import argparse

from ._training import add_common_arguments, overrides_from_flags, run_training

DISTILL_FLAGS = (("distill_teacher", "distill.teacher"), ("distill_teacher_model", "distill.teacher_model"),
                 ("distill_weight", "distill.weight"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("examples:\n"
                "  videomamba train -c demo data.train=train.csv data.val=val.csv data.root=videos\n"
                "  videomamba train -c k400_tiny_f8 --pretrained videomamba_t16_in1k_res224.pth data.train=...\n"
                "  videomamba train --list-configs                          # the release's recipes, one line each\n"
                "  videomamba train -c run/config.yaml --resume            # continue run/ where it stopped\n"
                "  videomamba train -c run/config.yaml --resume optim.epochs=60   # ... and train longer\n"
                "  videomamba train -c demo ... --distill-teacher runs/teacher/model --distill-weight 1.0\n"
                "  videomamba train -c demo ... --pretrained runs/pretrain/model   # fine-tune a pretrained encoder\n"
                "  torchrun --nproc_per_node 2 -m videomamba train -c my.yaml  # DDP (gloo on CPU, nccl on CUDA)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides such as optim.lr=1e-3 data.batch_size=16 (values parsed as YAML), "
                        "anywhere among the options; later ones win, and options such as --epochs win over them")
    p.add_argument("-c", "--config", default=None,
                   help="YAML file or packaged config name (see --list-configs); default: built-in defaults")
    add_common_arguments(p, "fine-tune from this checkpoint (model.pretrained)")
    p.add_argument("--distill-teacher", default=None, metavar="CKPT",
                   help="self-distillation from this frozen trained VideoMamba (saved model dir, training "
                        "checkpoint, or original file with --distill-teacher-model): distill.teacher")
    p.add_argument("--distill-teacher-model", default=None, metavar="NAME",
                   help="preset of an original teacher checkpoint file (distill.teacher_model)")
    p.add_argument("--distill-weight", type=float, default=None, metavar="W",
                   help="weight of the token distillation loss, default 1.0 (distill.weight)")
    p.add_argument("--list-configs", action="store_true",
                   help="list the packaged configs (recipes) with a one-line description each, and exit")


def config_description(path) -> str:
    """The first comment line of a config file: its one-line description ('' if it has none)."""
    from pathlib import Path

    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip()
        if s:
            break
    return ""


def format_config_list() -> str:
    """``name  description`` for every packaged config, sorted by name."""
    from ..engine.config import CONFIG_DIR, list_configs

    names = list_configs()
    width = max(len(n) for n in names)
    return "\n".join(f"{n:<{width}}  {config_description(CONFIG_DIR / f'{n}.yaml')}".rstrip() for n in names)


def run(args: argparse.Namespace) -> int:
    from ..engine import dump_yaml, load_config

    if args.list_configs:
        print(format_config_list())
        return 0
    cfg = load_config(args.config, overrides_from_flags(args, DISTILL_FLAGS))
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    return run_training(cfg, args.resume, "train")[1]
