"""``videomamba pretrain``: masked pretraining (UMT style) from a YAML config plus overrides.

The student encodes only the visible tokens and aligns the features entering its last block to a
frozen teacher's tokens. The run's ``model/`` directory holds the encoder; fine-tune it with
``videomamba train ... --pretrained RUN/model``.
"""
from __future__ import annotations

import argparse
import sys

MASK_TYPES = ("random", "tube", "frame_row", "clip_row", "random_row", "attention")


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
    p.add_argument("-o", "--out", default=None, help="output directory (train.out_dir)")
    p.add_argument("--teacher", default=None, help="frozen teacher (pretrain.teacher); see below")
    p.add_argument("--teacher-model", default=None, metavar="NAME",
                   help="preset of an original VideoMamba teacher file (pretrain.teacher_model)")
    p.add_argument("--mask-type", default=None, choices=MASK_TYPES, help="pretrain.mask_type (default tube)")
    p.add_argument("--mask-ratio", type=float, default=None, help="share of patch tokens masked (default 0.8)")
    p.add_argument("--mask-sampling", default=None, choices=("multinomial", "topk"),
                   help="attention masks: sample kept tokens by attention (default) or keep the top ones")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="resume from a checkpoint file or run directory; alone: the newest in the output directory")
    p.add_argument("--pretrained", default=None, help="initialise the student from this checkpoint (model.pretrained)")
    p.add_argument("--epochs", type=int, default=None, help="optim.epochs")
    p.add_argument("--device", default=None, help="train.device: auto, cpu, cuda, cuda:N")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..engine import NonFiniteLossError, dump_yaml, load_config, train

    overrides = list(args.overrides)
    for key, value in (("train.out_dir", args.out), ("pretrain.teacher", args.teacher),
                       ("pretrain.teacher_model", args.teacher_model), ("pretrain.mask_type", args.mask_type),
                       ("pretrain.mask_ratio", args.mask_ratio), ("pretrain.mask_sampling", args.mask_sampling),
                       ("model.pretrained", args.pretrained), ("optim.epochs", args.epochs),
                       ("train.device", args.device)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    if not cfg.pretrain.teacher:
        raise CLIError("no teacher: give --teacher PATH (or pretrain.teacher=PATH in the config)")
    if cfg.distill.teacher:
        raise CLIError("distill.teacher is set in the config: a run is either distillation or pretraining")
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    try:
        res = train(cfg, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"videomamba pretrain: {e}", file=sys.stderr)
        return 3
    print(f"pretrained encoder: {res.export_dir}  (fine-tune: videomamba train ... --pretrained {res.export_dir})")
    return 0
