"""Multi-view evaluation: clips x crops per video, softmax averaged; top-1/top-5, per-class
accuracy, confusion matrix (PNG) and a JSON report. Optionally with the frames of every clip
shuffled, the test that a model really uses temporal order.

Memory: the views of a batch go through the model ``view_batch`` clips at a time
(:func:`~videomamba.engine.tasks.forward_views`), so a 10 x 3-view test of 64-frame clips needs the
activations of ``view_batch`` clips, not 30.

Long videos (LVU): a video cut into windows is one dataset item per window (its sample's
``extra["video"]`` numbers the source line). :func:`pool_windows` averages the windows' predictions
(each already averaged over its views) into one prediction per video, and the metrics are computed
on those, as the release scores LVU (its ``merge`` averages the softmax of every view of a video
name). One difference: the release keys views by (clip, crop) slot and keeps only the first one
it reads for each slot, so of a video's windows only the first read contributes each view; here
every window counts equally.
"""
from __future__ import annotations

import contextlib
import csv
import io
import time
from pathlib import Path
from typing import Callable

import torch

from . import distributed as D
from .metrics import classification_metrics, plot_confusion, regression_metrics, write_json
from .tasks import build_task, shuffle_frames as _shuffle_frames


@torch.no_grad()
def run_eval(model: torch.nn.Module, loader, task, device: torch.device, amp_dtype: torch.dtype | None = None,
             info: D.DistInfo | None = None, classes: list[str] | None = None, shuffle_seed: int | None = None,
             progress: bool = False, desc: str = "eval", view_batch: int | None = None,
             pool: bool = True) -> tuple[dict, dict]:
    """Predict every video of ``loader`` and score it. Returns (metrics, outputs).

    ``outputs``: ``index`` (N,), ``pred`` (N, K) averaged probabilities (or (N, 1) regression
    outputs), ``label`` (N,), ``path`` list, sorted by dataset index. In DDP every rank predicts its
    shard and the results are gathered; padded duplicates are dropped by index.
    ``shuffle_seed``: permute the frames of every clip (a fixed permutation per clip and seed).
    ``view_batch``: views per forward pass (None: a whole batch). ``pool``: windows of one video
    (LVU) are averaged into one prediction (:func:`pool_windows`); ``outputs["windows"]`` then keeps
    the per-window predictions.
    """
    info = info or D.DistInfo()
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    idx_l, pred_l, lab_l, paths = [], [], [], []
    it = loader
    if progress and info.is_main:
        from tqdm.auto import tqdm
        it = tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    for batch in it:
        video = batch["video"].to(device, non_blocking=True)
        if gen is not None:
            video = _shuffle_frames(video, gen)
        with ctx:
            pred = task.predict(model, video) if view_batch is None else task.predict(model, video, view_batch=view_batch)
        idx_l.append(torch.as_tensor(batch["index"]).cpu())
        pred_l.append(pred.float().cpu())
        lab_l.append(torch.as_tensor(batch["label"]).cpu())
        paths += list(batch.get("path", [""] * len(video)))
    model.train(was_training)
    K = task.num_classes
    local = {"index": torch.cat(idx_l) if idx_l else torch.zeros(0, dtype=torch.long),
             "pred": torch.cat(pred_l) if pred_l else torch.zeros(0, K),
             "label": torch.cat(lab_l) if lab_l else torch.zeros(0),
             "path": paths}
    parts = D.all_gather_objects(local, info)
    index = torch.cat([p["index"] for p in parts]).long()
    pred = torch.cat([p["pred"] for p in parts])
    label = torch.cat([p["label"] for p in parts])
    path = sum((p["path"] for p in parts), [])
    order = torch.argsort(index, stable=True)
    index, pred, label, path = index[order], pred[order], label[order], [path[i] for i in order.tolist()]
    if len(index):
        keep = torch.ones(len(index), dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        index, pred, label = index[keep], pred[keep], label[keep]
        path = [p for p, k in zip(path, keep.tolist()) if k]
    windows = None
    vids = _window_videos(loader, index) if pool else None
    if vids is not None:
        windows = {"index": index, "pred": pred, "label": label, "path": path, "video": vids}
        index, pred, label, path = pool_windows(index, pred, label, path, vids)
    if task.kind == "regression":
        metrics = regression_metrics(pred[:, 0], label.float())
    else:
        metrics = classification_metrics(pred, label.long(), classes)
    outputs = {"index": index, "pred": pred, "label": label, "path": path}
    if windows is not None:
        outputs["windows"] = windows
        metrics["windows"] = len(windows["index"])
    return metrics, outputs


def _window_videos(loader, index: torch.Tensor) -> torch.Tensor | None:
    """The source-video number of each evaluated item when the dataset holds windows of videos
    (samples with ``extra["video"]`` and some video cut into several windows), else None."""
    ds = getattr(loader, "dataset", None)
    ds = getattr(ds, "dataset", ds)                       # SeededItems -> the dataset
    samples = getattr(ds, "samples", None)
    if not samples or not len(index):
        return None
    try:
        vids = [samples[i].extra["video"] for i in index.tolist()]
    except (KeyError, AttributeError, IndexError, TypeError):
        return None
    vids = torch.as_tensor(vids, dtype=torch.long)
    if len(torch.unique(vids)) == len(vids):
        return None
    return vids


def pool_windows(index: torch.Tensor, pred: torch.Tensor, label: torch.Tensor, path: list, video: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Average the predictions (N, K) of the windows of each video: items with the same ``video``
    number become one row (index, label and path of the video's first window), in order of first
    appearance. Windows of one video must share its label."""
    order: list[int] = []
    rows: dict[int, list[int]] = {}
    for i, v in enumerate(video.tolist()):
        if v not in rows:
            rows[v] = []
            order.append(v)
        rows[v].append(i)
    out_pred = torch.stack([pred[rows[v]].mean(0) for v in order])
    first = [rows[v][0] for v in order]
    for v in order:
        labs = label[rows[v]]
        if not bool((labs == labs[0]).all()):
            raise ValueError(f"windows of video {path[rows[v][0]]} carry different labels {labs.tolist()}")
    return index[first], out_pred, label[first], [path[i] for i in first]


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
    from .data import SeededItems, make_loader, read_classes
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


@torch.no_grad()
def window_predictions(model: torch.nn.Module, path, window: float, stride: float | None = None, *,
                       scheme: str = "cover", num_frames: int | None = None, img_size: int | None = None,
                       short_side: int | None = None, sampling: str | None = None, sample_stride: int | None = None,
                       clips: int | None = None, crops: int | None = None, view_batch: int | None = None,
                       kind: str | None = None, device="cpu", amp_dtype: torch.dtype | None = None,
                       batch_size: int = 1) -> dict:
    """One prediction per ``window``-second window of a long video file (every ``stride`` seconds,
    default ``window``), and their average, as LVU is scored.

    Preprocessing defaults to what the model was trained with (its config's ``extra["data"]``).
    ``scheme``: ``"cover"`` (a last window ends at the video's end) or ``"release"`` (the release's
    rule, :func:`videomamba.data.annotations.release_window_bounds`). Views go through the model
    ``view_batch`` at a time (default: the training config's ``data.view_batch``). Returns ``{"windows": [{"start", "end", "pred"}], "pred": pooled,
    "duration"}`` with ``pred`` the class probabilities (K,) or the regression output (1,).
    """
    from pathlib import Path

    from ..data import VideoDataset
    from ..data.annotations import Sample, release_window_bounds
    from ..data.sampling import window_bounds
    from ..data.video import probe_video

    if not window or window <= 0:
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    stride = stride or window
    mcfg = getattr(model, "cfg", None)
    extra = dict(getattr(mcfg, "extra", {}) or {})
    trained = dict(extra.get("data") or {})
    kind = kind or extra.get("task", "classification")
    info = probe_video(path)
    duration = info.duration if info.duration and info.duration > 0 else info.num_frames / (info.fps or 1.0)
    bounds = (release_window_bounds if scheme == "release" else window_bounds)(duration, window, stride)
    samples = [Sample(Path(path), 0, {"start": s, "end": e, "duration": duration, "video": 0}) for s, e in bounds]
    ds = VideoDataset(samples, train=False, classes=["video"],
                      num_frames=num_frames or trained.get("num_frames") or getattr(mcfg, "num_frames", 8),
                      img_size=img_size or trained.get("img_size") or getattr(mcfg, "img_size", 224),
                      short_side=short_side if short_side is not None else trained.get("short_side"),
                      sampling=sampling or trained.get("sampling", "segment"),
                      sample_stride=sample_stride or trained.get("sample_stride", 4),
                      num_clips=clips or trained.get("test_clips", 1), num_crops=crops or trained.get("test_crops", 1))
    num_classes = 1 if kind == "regression" else getattr(model, "num_classes", None)
    task = build_task(kind, num_classes)
    view_batch = view_batch or trained.get("view_batch")
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    preds = []
    for i in range(0, len(ds), batch_size):
        video = torch.stack([ds[j]["video"] for j in range(i, min(i + batch_size, len(ds)))]).to(dev)
        with ctx:
            preds.append(task.predict(model, video, view_batch=view_batch).float().cpu())
    model.train(was_training)
    pred = torch.cat(preds)
    return {"windows": [{"start": s, "end": e, "pred": p} for (s, e), p in zip(bounds, pred)],
            "pred": pred.mean(0), "duration": duration}
