"""``videomamba pretrain``: masked pretraining (UMT style) from a YAML config plus overrides.

The student encodes only the visible tokens and aligns the features entering its last block to a
frozen teacher's tokens. The run's ``model/`` directory holds the encoder; fine-tune it with
``videomamba train ... --pretrained RUN/model``.
"""
from __future__ import annotations

import argparse

from ._training import add_common_arguments, overrides_from_flags, run_training

MASK_TYPES = ("random", "tube", "frame_row", "clip_row", "random_row", "attention")
PRETRAIN_FLAGS = (("teacher", "pretrain.teacher"), ("teacher_model", "pretrain.teacher_model"),
                  ("mask_type", "pretrain.mask_type"), ("mask_ratio", "pretrain.mask_ratio"),
                  ("mask_sampling", "pretrain.mask_sampling"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("teachers:\n"
                "  a VideoMamba: saved model directory, training checkpoint (.pt), or an original file with\n"
                "                --teacher-model NAME; its final tokens are the targets\n"
                "  an image model from `transformers` in a LOCAL directory (save_pretrained output), applied\n"
                "                per frame: CLIP vision towers (projected tokens) or ViT-like models; the\n"
                "                frames are resized so that its patch grid equals the student's, and a\n"
                "                tubelet's frames are averaged. 'attention' masks need such a teacher.\n"
                "  a CLIP visual encoder state dict in OpenAI's layout (the release's extracted vit_b16.pth),\n"
                "                per frame as above; the release's target options are pretrain.teacher_final_norm\n"
                "                and pretrain.teacher_input (see the k400_middle_mask_pretrain recipe)\n"
                "examples:\n"
                "  videomamba pretrain -c demo data.train=train.csv data.root=videos --teacher runs/teacher/model\n"
                "  videomamba pretrain -c my.yaml --teacher /models/clip-vit-b16 --mask-type attention\n"
                "  videomamba pretrain -c k400_middle_mask_pretrain data.train=list.txt --teacher vit_b16.pth\n"
                "  videomamba train -c demo data.train=... data.val=... --pretrained runs/pretrain/model\n"
                "recipe: AdamW betas (0.9, 0.95), lr 1.5e-4 x batch / 256, weight decay 0.05,\n"
                "drop path 0.4: e.g. optim.betas=[0.9,0.95] optim.base_lr=1.5e-4 model.drop_path_rate=0.4")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides such as optim.lr=1e-3 data.batch_size=16 (values parsed as YAML)")
    p.add_argument("-c", "--config", default=None, help="YAML file or packaged config name (as for train)")
    add_common_arguments(p, "initialise the student from this checkpoint (model.pretrained)")
    p.add_argument("--teacher", default=None, help="frozen teacher (pretrain.teacher); see below")
    p.add_argument("--teacher-model", default=None, metavar="NAME",
                   help="preset of an original VideoMamba teacher file (pretrain.teacher_model)")
    p.add_argument("--mask-type", default=None, choices=MASK_TYPES, help="pretrain.mask_type (default tube)")
    p.add_argument("--mask-ratio", type=float, default=None, help="share of patch tokens masked (default 0.8)")
    p.add_argument("--mask-sampling", default=None, choices=("multinomial", "topk"),
                   help="attention masks: sample kept tokens by attention (default) or keep the top ones")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine import dump_yaml, load_config

    cfg = load_config(args.config, overrides_from_flags(args, PRETRAIN_FLAGS))
    if not cfg.pretrain.teacher:
        raise CLIError("no teacher: give --teacher PATH (or pretrain.teacher=PATH in the config)")
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    res, status = run_training(cfg, args.resume, "pretrain")
    if res is not None:
        print(f"pretrained encoder: {res.export_dir}  (fine-tune: videomamba train ... --pretrained {res.export_dir})")
    return status
