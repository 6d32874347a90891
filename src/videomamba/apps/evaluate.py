"""``videomamba eval``: multi-view testing of a saved model on an annotation file, with per-class
accuracy, a confusion matrix (PNG), a JSON report and, optionally, the frames of every clip shuffled.
The scoring loop is the training engine's (:func:`videomamba.engine.validation.run_eval`).
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Callable

import torch

from ..engine import distributed as D
from ..engine.metrics import plot_confusion, write_json
from ..engine.tasks import build_task
from ..engine.validation import run_eval


def evaluate(checkpoint: "str | Path | None" = None, annotations: "str | Path | None" = None, *,
             model: torch.nn.Module | None = None, dataset=None, root: str | None = None, fmt: str = "auto",
             model_name: str | None = None, classes: "str | list[str] | None" = None,
             num_frames: int | None = None, img_size: int | None = None, short_side: int | None = None,
             sampling: str | None = None, sample_stride: int | None = None, clips: int | None = None,
             crops: int | None = None, batch_size: int = 8, num_workers: int = 2, device: str = "auto",
             amp: str = "auto", shuffle_frames: bool = False, shuffle_seed: int = 0, out_dir: "str | Path | None" = None,
             use_ema: bool | None = None, skip_bad: bool = False, progress: bool = True,
             log: Callable[[str], None] | None = print, view_batch: int | None = None,
             allow_partial: bool = False) -> dict:
    """Evaluate a checkpoint (or a ``model``) on an annotation file (or a ``dataset``).

    Preprocessing (frames, size, sampling, test views) defaults to what the model was trained
    with (kept in its config); arguments override it. ``shuffle_frames`` adds a second pass with
    the frames of every clip shuffled and reports it under ``"shuffled"``. With ``out_dir``
    writes ``eval_results.json``, ``per_class.csv`` and ``confusion.png`` (and the shuffled twins).
    """
    from ..engine.data import SeededItems, make_loader, read_classes
    from ..runtime import resolve_amp
    from .predict import load_for_inference

    t0 = time.time()
    info, dev = D.init_distributed(device)
    if model is None:
        if checkpoint is None:
            raise ValueError("give a checkpoint (a saved model directory, a training checkpoint, or an "
                             "original checkpoint with a model name)")
        model = load_for_inference(checkpoint, model_name, use_ema, allow_partial, log)
    model = model.to(dev).eval()
    mcfg = getattr(model, "cfg", None)
    extra = dict(getattr(mcfg, "extra", {}) or {})
    trained = dict(extra.get("data") or {})
    kind = extra.get("task", "classification")
    class_names = read_classes(classes) if classes is not None else extra.get("classes")
    if dataset is None and getattr(mcfg, "image", False):
        if annotations is None:
            raise ValueError("give an image list or folder to evaluate on")
        from ..data.images import ImageDataset

        dataset = ImageDataset(str(annotations), root=root, fmt=fmt if fmt in ("imagenet", "imagefolder") else "auto",
                               train=False, img_size=img_size or trained.get("img_size") or getattr(mcfg, "img_size", 224),
                               classes=class_names)
    if dataset is None:
        if annotations is None:
            raise ValueError("give an annotation file to evaluate on")
        from ..data import VideoDataset

        dataset = VideoDataset(
            str(annotations), root=root, fmt=fmt, train=False,
            num_frames=num_frames or trained.get("num_frames") or getattr(mcfg, "num_frames", 8),
            img_size=img_size or trained.get("img_size") or getattr(mcfg, "img_size", 224),
            short_side=short_side if short_side is not None else trained.get("short_side"),
            sampling=sampling or trained.get("sampling", "segment"),
            sample_stride=sample_stride or trained.get("sample_stride", 4),
            num_clips=clips or trained.get("test_clips", 1), num_crops=crops or trained.get("test_crops", 1),
            skip_bad=skip_bad, classes=class_names, annotation_kwargs=_lvu_windows(annotations, fmt, trained))
    if class_names is None:
        class_names = list(getattr(dataset, "classes", None) or []) or None
    num_classes = 1 if kind == "regression" else getattr(model, "num_classes", None) or len(class_names)
    if kind != "regression" and class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"the model has {num_classes} outputs but {len(class_names)} class names were given")
    task = build_task(kind, num_classes)
    if isinstance(dataset, SeededItems):
        dataset = dataset.dataset
    loader, _ = make_loader(dataset, batch_size, info, train=False, num_workers=num_workers)
    amp_dtype = resolve_amp(amp, dev)
    say = (log if (log and info.is_main) else (lambda s: None))

    view_batch = view_batch or trained.get("view_batch")       # default: the training config's data.view_batch
    metrics, outputs = run_eval(model, loader, task, dev, amp_dtype, info, classes=class_names, progress=progress,
                                view_batch=view_batch)
    results = dict(metrics)
    results["checkpoint"] = str(checkpoint) if checkpoint is not None else None
    results["annotations"] = str(annotations) if annotations is not None else None
    results["views"] = {"clips": getattr(dataset, "num_clips", clips), "crops": getattr(dataset, "num_crops", crops)}
    if shuffle_frames:
        sm, _ = run_eval(model, loader, task, dev, amp_dtype, info, classes=class_names, shuffle_seed=shuffle_seed,
                         progress=progress, desc="eval (frames shuffled)", view_batch=view_batch)
        results["shuffled"] = sm
    results["wall_time_s"] = time.time() - t0
    if kind == "classification":
        results["predictions"] = [{"path": p, "label": int(y), "pred": int(q.argmax())}
                                  for p, y, q in zip(outputs["path"], outputs["label"], outputs["pred"])]
    if out_dir is not None and info.is_main:
        results["files"] = write_eval_outputs(results, out_dir)
    if info.is_main:
        say(format_eval(results))
    return results


def _lvu_windows(annotations, fmt: str, trained: dict) -> dict | None:
    """The LVU windows the model was trained with (its config's ``extra["data"]``) for an LVU file."""
    from pathlib import Path

    from ..data.annotations import detect_format

    if "window" not in trained:
        return None
    if fmt == "auto":
        try:
            fmt = detect_format(Path(annotations)) if Path(annotations).is_file() else fmt
        except ValueError:
            return None
    if fmt != "lvu":
        return None
    return {"window": trained["window"], "stride": trained.get("window_stride", 16.0),
            "scheme": trained.get("window_scheme", "cover")}


def write_eval_outputs(results: dict, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    files = {"json": str(out / "eval_results.json")}
    if "confusion" in results:
        for tag, r in (("", results), ("_shuffled", results.get("shuffled"))):
            if r is None:
                continue
            png = plot_confusion(r["confusion"], r["classes"], out / f"confusion{tag}.png",
                                 title="confusion matrix" + (" (frames shuffled)" if tag else ""))
            if png:
                files[f"confusion{tag}"] = str(png)
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["class", "accuracy", "support"])
            for i, (name, acc) in enumerate(r["per_class"].items()):
                w.writerow([name, "" if acc is None else f"{acc:.2f}", sum(r["confusion"][i])])
            from ..fileio import atomic_write_text
            atomic_write_text(out / f"per_class{tag}.csv", buf.getvalue())
            files[f"per_class{tag}"] = str(out / f"per_class{tag}.csv")
    write_json(out / "eval_results.json", {**results, "files": files})
    return files


def format_eval(results: dict) -> str:
    lines = []
    if "top1" in results:
        lines.append(f"top-1 {results['top1']:.2f}%  top-5 {results['top5']:.2f}%  loss {results['loss']:.4f}  "
                     f"({results['n']} videos, {results['views']['clips']} clip(s) x {results['views']['crops']} crop(s))")
        if "shuffled" in results:
            s = results["shuffled"]
            lines.append(f"frames shuffled: top-1 {s['top1']:.2f}%  top-5 {s['top5']:.2f}%")
        pc = results["per_class"]
        if len(pc) <= 30:
            width = max(len(c) for c in pc)
            sh = results.get("shuffled", {}).get("per_class", {})
            for c, a in pc.items():
                line = f"  {c:<{width}}  {'-' if a is None else f'{a:6.1f}%'}"
                if sh:
                    b = sh.get(c)
                    line += f"   shuffled {'-' if b is None else f'{b:6.1f}%'}"
                lines.append(line)
    else:
        lines.append(f"MSE {results['mse']:.4f}  MAE {results['mae']:.4f}  ({results['n']} videos)")
    for k, v in (results.get("files") or {}).items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)
