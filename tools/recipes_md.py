"""Write src/videomamba/configs/RECIPES.md from the packaged configs' headers (description, Source, Reported).

    python tools/recipes_md.py
"""
from __future__ import annotations

import re
from pathlib import Path

from videomamba.commands.train import config_description
from videomamba.engine.config import CONFIG_DIR, list_configs

GROUPS = [("Kinetics-400", "k400_"), ("Something-Something V2", "ssv2_"), ("Breakfast", "breakfast_"),
          ("COIN", "coin_"), ("LVU", "lvu_"), ("ImageNet-1K (image models)", "in1k_"), ("KAIST VideoMamba", "kaist_")]

INTRO = """# Recipes

The packaged configs reproduce how the released models were trained (`videomamba train --list-configs`
prints them with a one-line description). Each file's header names where its numbers come from: the
OpenGVLab release's launch script (path in OpenGVLab/VideoMamba) for the hyper-parameters, the training
script's defaults for what the launch script leaves out, and the release's MODEL_ZOO (or the KAIST paper) for
the accuracy it reported. The accuracies below are the releases' reported figures, not measurements of this
library. This page is written by `python tools/recipes_md.py`.

Conventions:

- `optim.base_lr` is the release's `--lr`; the run's lr is `base_lr x batch x processes x accum_steps x
  repeat_aug / 256`, as the release scales it. The header gives the release's process count and total batch:
  on fewer processes raise `optim.accum_steps` to keep the total. Image recipes (DeiT's rule, `/ 512`, min and
  warm-up lr unscaled) give `optim.lr` for the release's total batch instead.
- `optim.layer_decay_mode: release` reproduces the released layer-wise decay: only the patch embedding, cls
  token and spatial position table are scaled, the blocks train at full lr (`per_block` is the working decay).
- Validation each epoch uses 1 clip x 1 crop (`data.val_clips` / `val_crops`); after training the best
  checkpoint is tested on all views (`data.test_clips` x `test_crops`), written to `test_metrics.json`, and
  exported to `model/` (`train.export: best`).
- Initialisation is given with `--pretrained FILE` (the released file names are in each header); masked
  pretraining needs `pretrain.teacher=vit_b16.pth` (the release's extracted CLIP visual encoder, OpenAI layout),
  self-distilled image recipes `distill.teacher=...`.
"""


def main() -> None:
    lines = [INTRO]
    for title, prefix in GROUPS:
        lines += [f"## {title}", "", "| config | description | hyper-parameters from | reported |", "|---|---|---|---|"]
        for n in list_configs():
            if not n.startswith(prefix):
                continue
            path = CONFIG_DIR / f"{n}.yaml"
            text = path.read_text()
            src = re.search(r"^# Source: (.*)$", text, re.M).group(1).replace("OpenGVLab/VideoMamba ", "")
            rep = re.search(r"^# Reported: (.*?)\.?$", text, re.M).group(1)
            lines.append(f"| `{n}` | {config_description(path)} | {src} | {rep} |")
        lines.append("")
    (CONFIG_DIR / "RECIPES.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
