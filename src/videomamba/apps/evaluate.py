"""``videomamba eval``: multi-view testing of a saved model on an annotation file, with per-class
accuracy, a confusion matrix (PNG), a JSON report and, optionally, the frames of every clip shuffled.
The scoring loop is the training engine's (:func:`videomamba.engine.validation.run_eval`).
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..engine import distributed as D
from ..engine.metrics import plot_confusion, write_json
from ..engine.tasks import build_task
from ..engine.validation import run_eval

if TYPE_CHECKING:
    from ..data.clip_config import ClipConfig


@dataclass
class EvalOptions:
    """How an evaluation runs (not what it computes): loading, batching, device, outputs."""

    batch_size: int = 8
    num_workers: int = 2
    view_batch: int | None = None           # views per forward pass; None: the training config's
    device: str = "auto"
    amp: str = "auto"
    shuffle_frames: bool = False             # a second pass with the frames of every clip shuffled
    shuffle_seed: int = 0
    skip_bad: bool = False                   # skip unreadable videos (counted) instead of failing
    progress: bool = True
    out_dir: str | Path | None = None        # eval_results.json, per_class.csv, confusion.png
    model_name: str | None = None            # a preset instead of the file's own architecture
    use_ema: bool | None = None
    allow_partial: bool = False              # accept trained weights being dropped

    def __post_init__(self):
        for k in ("batch_size", "view_batch"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def evaluate(source: "str | Path | torch.nn.Module", annotations: "str | Path | None" = None, *,
             clip: "ClipConfig | dict | None" = None, options: EvalOptions | None = None, dataset=None,
             root: str | None = None, fmt: str = "auto", classes: "str | list[str] | None" = None,
             log: Callable[[str], None] | None = print) -> dict:
    """Evaluate ``source`` (a checkpoint in any layout create_model reads, or a model) on an
    annotation file (or a ``dataset``).

    clip: the preprocessing; default the model's :class:`ClipConfig` (what it was trained with), a
    dict overrides some of its fields (``num_frames``, ``img_size``, ``short_side``, ``sampling``,
    ``sample_stride``, ``test_clips``, ``test_crops``). options: :class:`EvalOptions`. With
    ``options.shuffle_frames`` a second pass with the frames of every clip shuffled is reported under
    ``"shuffled"``; with ``options.out_dir`` writes ``eval_results.json``, ``per_class.csv`` and
    ``confusion.png`` (and the shuffled twins).
    """
    from ..data.clip_config import ClipConfig, class_names as read_class_names
    from ..engine.data import SeededItems, make_loader
    from ..runtime import resolve_amp
    from .predict import load_for_inference

    o = options or EvalOptions()
    t0 = time.time()
    info, dev = D.init_distributed(o.device)
    checkpoint = None
    if isinstance(source, torch.nn.Module):
        model = source
    else:
        checkpoint = source
        model = load_for_inference(checkpoint, o.model_name, o.use_ema, o.allow_partial, log)
    model = model.to(dev).eval()
    base = ClipConfig.for_model(model, source=str(checkpoint) if checkpoint is not None else None)
    clip = clip if isinstance(clip, ClipConfig) else base.replace(**(clip or {}))
    trained = dict((getattr(getattr(model, "cfg", None), "extra", None) or {}).get("data") or {})
    kind = clip.task
    names = read_class_names(classes) if classes is not None else (list(clip.class_names) if clip.class_names else None)
    if dataset is None and getattr(model.cfg, "image", False):
        if annotations is None:
            raise ValueError("give an image list or folder to evaluate on")
        from ..data.images import ImageDataset

        dataset = ImageDataset(str(annotations), root=root, fmt=fmt if fmt in ("imagenet", "imagefolder") else "auto",
                               train=False, img_size=clip.img_size, classes=names)
    if dataset is None:
        if annotations is None:
            raise ValueError("give an annotation file to evaluate on")
        from ..data import VideoDataset

        dataset = VideoDataset(str(annotations), root=root, fmt=fmt, train=False, num_frames=clip.num_frames,
                               img_size=clip.img_size, short_side=clip.short_side, sampling=clip.sampling,
                               sample_stride=clip.sample_stride, num_clips=clip.test_clips,
                               num_crops=clip.test_crops, skip_bad=o.skip_bad, classes=names,
                               annotation_kwargs=_lvu_windows(annotations, fmt, trained))
    if names is None:
        names = list(getattr(dataset, "classes", None) or []) or None
    num_classes = 1 if kind == "regression" else getattr(model, "num_classes", None) or len(names)
    if kind != "regression" and names is not None and len(names) != num_classes:
        raise ValueError(f"the model has {num_classes} outputs but {len(names)} class names were given")
    task = build_task(kind, num_classes)
    if isinstance(dataset, SeededItems):
        dataset = dataset.dataset
    loader, _ = make_loader(dataset, o.batch_size, info, train=False, num_workers=o.num_workers)
    amp_dtype = resolve_amp(o.amp, dev)
    say = (log if (log and info.is_main) else (lambda s: None))

    view_batch = o.view_batch or trained.get("view_batch")       # default: the training config's data.view_batch
    metrics, outputs = run_eval(model, loader, task, dev, amp_dtype, info, classes=names, progress=o.progress,
                                view_batch=view_batch)
    results = dict(metrics)
    results["checkpoint"] = str(checkpoint) if checkpoint is not None else None
    results["annotations"] = str(annotations) if annotations is not None else None
    results["views"] = {"clips": getattr(dataset, "num_clips", clip.test_clips),
                        "crops": getattr(dataset, "num_crops", clip.test_crops)}
    if o.shuffle_frames:
        sm, _ = run_eval(model, loader, task, dev, amp_dtype, info, classes=names, shuffle_seed=o.shuffle_seed,
                         progress=o.progress, desc="eval (frames shuffled)", view_batch=view_batch)
        results["shuffled"] = sm
    results["wall_time_s"] = time.time() - t0
    if kind == "classification":
        results["predictions"] = [{"path": p, "label": int(y), "pred": int(q.argmax())}
                                  for p, y, q in zip(outputs["path"], outputs["label"], outputs["pred"])]
    if o.out_dir is not None and info.is_main:
        results["files"] = write_eval_outputs(results, o.out_dir)
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
