"""``videomamba demo``: the whole pipeline on a fresh machine in minutes, CPU only.

1. write the synthetic order-dependent dataset (``videomamba.data.make_synthetic``);
2. train the small VideoMamba of ``configs/demo.yaml`` on it;
3. evaluate on the validation split, then again with the frames of every clip shuffled: the
   classes come in forward/backward pairs, so a model that uses temporal order drops to about
   50 % within each pair (while still telling the pairs apart);
4. predict on a few validation videos and print where everything went.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..engine.config import load_config
from ..engine.metrics import write_json


DEMO_PER_CLASS = 600  # synthetic videos per class: 3600 to train on, 1200 to validate


def pair_metrics(confusion, classes: list[str], pairs: list[tuple[str, str]]) -> dict:
    """From a confusion matrix: how often the prediction lands in the right pair, and how often it
    picks the right member given the right pair (chance: 50 %)."""
    idx = {c: i for i, c in enumerate(classes)}
    in_pair = right = total = 0
    per_pair = {}
    for a, b in pairs:
        i, j = idx[a], idx[b]
        rows = sum(confusion[i]) + sum(confusion[j])
        inp = confusion[i][i] + confusion[i][j] + confusion[j][i] + confusion[j][j]
        ok = confusion[i][i] + confusion[j][j]
        per_pair[f"{a}/{b}"] = 100.0 * ok / inp if inp else None
        in_pair, right, total = in_pair + inp, right + ok, total + rows
    return {"pair_accuracy": 100.0 * in_pair / total if total else None,
            "within_pair_accuracy": 100.0 * right / in_pair if in_pair else None,
            "within_pair_by_pair": per_pair}


def order_verdict(normal: dict, shuffled: dict) -> str:
    """A few words on whether the pair metrics show that the model uses temporal order."""
    a, b = normal["within_pair_accuracy"], shuffled["within_pair_accuracy"]
    if a is None or b is None:
        return ""
    if a >= 75.0 and b <= 65.0:
        return ": the model uses temporal order"
    if a < 75.0:
        return ": the model has not learned to tell the members of a pair apart (train longer?)"
    return ": the model tells the members apart even without order (unexpected: check the data)"


def run_demo(out_dir: str | Path = "videomamba-demo", *, epochs: int | None = None, per_class: int = DEMO_PER_CLASS,
             frames: int = 16, size: int = 64, seed: int = 0, device: str = "auto",
             overrides: list[str] | dict | None = None, num_predict: int = 4,
             log: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out_dir`` (data/, run/, eval/, demo_summary.json). Returns the summary."""
    from ..data import make_synthetic
    from .evaluate import EvalOptions, evaluate
    from .predict import format_predictions, predict
    from ..engine.trainer import train

    t0 = time.time()
    out = Path(out_dir)
    data_dir = out / "data"
    meta_path = data_dir / "meta.json"
    want = {"seed": seed, "per_class": per_class, "frames": frames, "size": size}
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if all(meta.get(k) == v for k, v in want.items()) and (data_dir / "val.csv").is_file():
        log(f"[1/4] synthetic dataset already in {data_dir}")
        data = {"train": data_dir / "train.csv", "val": data_dir / "val.csv", "classes": data_dir / "classes.txt",
                "root": data_dir}
    else:
        log(f"[1/4] writing the synthetic dataset to {data_dir} ...")
        data = make_synthetic(data_dir, per_class=per_class, frames=frames, size=size, seed=seed, progress=True,
                              workers=None)
        meta = json.loads(meta_path.read_text())
    t_data = time.time() - t0
    classes = meta["classes"]
    pairs = [tuple(p) for p in meta["pairs"]]
    log(f"      {len(classes)} classes in {len(pairs)} forward/backward pairs: "
        + ", ".join(f"{a}/{b}" for a, b in pairs) + f" ({t_data:.0f}s)")

    ov = {"data.train": str(data["train"]), "data.val": str(data["val"]), "data.root": str(data["root"]),
          "data.classes": str(data["classes"]), "train.out_dir": str(out / "run"), "train.seed": seed,
          "train.device": device}
    if epochs is not None:
        ov["optim.epochs"] = epochs
    cfg = load_config("demo", ov)
    if overrides:
        cfg = cfg.replace(overrides)
    log(f"[2/4] training ({cfg.optim.epochs} epochs) ...")
    result = train(cfg, log=log)
    t_train = time.time() - t0 - t_data

    log("[3/4] evaluating on the validation split, then with the frames of every clip shuffled ...")
    ev = evaluate(result.export_dir, data["val"], root=data["root"], log=None,
                  options=EvalOptions(shuffle_frames=True, out_dir=out / "eval", device=device,
                                      num_workers=cfg.data.num_workers, batch_size=cfg.data.batch_size,
                                      progress=False))
    normal = pair_metrics(ev["confusion"], ev["classes"], pairs)
    shuffled = pair_metrics(ev["shuffled"]["confusion"], ev["classes"], pairs)

    log("[4/4] predicting on a few validation videos ...")
    firsts: dict[int, str] = {}
    for line in Path(data["val"]).read_text().splitlines():
        rel, label = line.rsplit(",", 1)
        firsts.setdefault(int(label), str(Path(data["root"]) / rel))
    step = max(1, len(classes) // max(num_predict, 1))
    videos = [firsts[i] for i in sorted(firsts)[::step]][:num_predict]
    preds = predict(videos, result.export_dir, topk=3, device=device)
    log(format_predictions(preds))

    wall = time.time() - t0
    summary = {
        "wall_time_s": wall, "data_time_s": t_data, "train_time_s": t_train,
        "val_top1": ev["top1"], "val_top5": ev["top5"], "shuffled_top1": ev["shuffled"]["top1"],
        "chance_top1": 100.0 / len(classes), "pair_accuracy": normal["pair_accuracy"],
        "within_pair_accuracy": normal["within_pair_accuracy"],
        "shuffled_pair_accuracy": shuffled["pair_accuracy"],
        "shuffled_within_pair_accuracy": shuffled["within_pair_accuracy"],
        "shuffled_within_pair_by_pair": shuffled["within_pair_by_pair"],
        "n_val": ev["n"], "classes": classes, "pairs": pairs, "epochs": cfg.optim.epochs,
        "config": str(result.out_dir / "config.yaml"),
        "paths": {"data": str(data_dir), "checkpoint": str(result.checkpoint),
                  "best_checkpoint": str(result.best_checkpoint), "model": str(result.export_dir),
                  "metrics": str(result.out_dir / "metrics.jsonl"), "metrics_csv": str(result.out_dir / "metrics.csv"),
                  "plots": [str(p) for p in result.plots] + [v for k, v in ev["files"].items() if k.startswith("confusion")],
                  "eval": ev["files"]["json"]},
        "predictions": preds,
    }
    write_json(out / "demo_summary.json", summary)
    p = summary["paths"]
    log("\n".join([
        f"videomamba demo: done in {wall / 60:.1f} min (data {t_data:.0f}s, training {t_train / 60:.1f} min)",
        f"  validation top-1            {ev['top1']:5.1f} %   ({ev['n']} videos, chance {100 / len(classes):.1f} %)",
        f"  frames shuffled: top-1      {ev['shuffled']['top1']:5.1f} %",
        f"  right pair (ordered/shuffled)   {normal['pair_accuracy']:5.1f} % / {shuffled['pair_accuracy']:5.1f} %",
        f"  right member of the pair    {normal['within_pair_accuracy']:5.1f} % -> {shuffled['within_pair_accuracy']:5.1f} % "
        f"with frames shuffled (chance 50 %){order_verdict(normal, shuffled)}",
        f"  checkpoint   {p['checkpoint']}",
        f"  model        {p['model']}  (videomamba predict VIDEO --checkpoint {p['model']})",
        f"  metrics      {p['metrics']} (+ .csv)",
        *[f"  plot         {x}" for x in p["plots"]],
        f"  eval         {p['eval']}",
        f"  summary      {out / 'demo_summary.json'}"]))
    return summary
