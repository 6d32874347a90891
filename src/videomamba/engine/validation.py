"""Validation during training and the scoring loop shared with ``videomamba eval``: clips x crops
per video, softmax averaged; top-1/top-5, per-class accuracy, regression error. Optionally with the
frames of every clip shuffled, the test that a model really uses temporal order.

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

import torch

from . import distributed as D
from .metrics import classification_metrics, regression_metrics
from .tasks import shuffle_frames as _shuffle_frames


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
