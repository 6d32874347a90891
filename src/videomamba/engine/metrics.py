"""Metrics (top-k, confusion matrix, per-class accuracy, MSE), the JSONL/CSV/TensorBoard log and plots.

Every file is written atomically (``videomamba.fileio``): a killed run never leaves a torn log.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import torch

from ..fileio import atomic_path, atomic_write_text


# --------------------------------------------------------------------------- metrics
def topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the k highest scores, per k (k clipped to K)."""
    K = probs.shape[-1]
    top = probs.topk(min(max(ks), K), dim=-1).indices                             # (N, kmax)
    hit = top == labels[:, None]
    return {k: int(hit[:, :min(k, K)].any(-1).sum()) for k in ks}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str] | None = None) -> dict:
    """top1/top5 (percent), NLL loss of the averaged probabilities, per-class accuracy, confusion."""
    N, K = probs.shape
    classes = classes or [str(i) for i in range(K)]
    hits = topk_correct(probs, labels, (1, 5))
    cm = confusion_matrix(probs.argmax(-1), labels, K)
    support = cm.sum(1)
    per_class = {classes[i]: (100.0 * float(cm[i, i]) / float(support[i]) if support[i] else None)
                 for i in range(K)}
    nll = float(-torch.log(probs.gather(1, labels[:, None].long()).clamp_min(1e-12)).mean()) if N else math.nan
    return {"n": N, "top1": 100.0 * hits[1] / max(N, 1), "top5": 100.0 * hits[5] / max(N, 1), "loss": nll,
            "per_class": per_class, "confusion": cm.tolist(), "classes": classes}


def regression_metrics(preds: torch.Tensor, targets: torch.Tensor) -> dict:
    p, t = preds.reshape(-1).double(), targets.reshape(-1).double()
    mse = float(((p - t) ** 2).mean()) if p.numel() else math.nan
    return {"n": p.numel(), "mse": mse, "mae": float((p - t).abs().mean()) if p.numel() else math.nan,
            "loss": mse}


# --------------------------------------------------------------------------- logging
class MetricsLog:
    """Records ``{"kind": "train"|"val"|..., "step": int, ...}`` to metrics.jsonl and metrics.csv.

    The whole file is rewritten atomically at each flush (logs are small). On resume, records
    past the checkpoint's step are dropped: they belong to work that is being redone.
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = False,
                 resume_step: int | None = None):
        self.dir = Path(out_dir)
        self.enabled = enabled
        self.records: list[dict] = []
        self.jsonl, self.csv = self.dir / "metrics.jsonl", self.dir / "metrics.csv"
        if enabled and resume_step is not None and self.jsonl.exists():
            for line in self.jsonl.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("step", 0) <= resume_step:
                    self.records.append(r)
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError("train.tensorboard=true needs the tensorboard package "
                                 "(pip install tensorboard)") from e
            self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: dict, flush: bool = True) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        if self.tb is not None:
            kind, step = record.get("kind", "train"), record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)
        if flush:
            self.flush()

    def flush(self) -> None:
        if not self.enabled:
            return
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        cols: list[str] = []
        for r in self.records:
            cols += [k for k in r if k not in cols and not isinstance(r[k], (dict, list))]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.records)
        atomic_write_text(self.csv, buf.getvalue())
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------- plots
def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_curves(records: list[dict], path: str | Path, main_metric: str = "top1") -> Path | None:
    """loss (train and val), lr, and the validation metric against the optimizer step."""
    plt = _pyplot()
    if plt is None:
        return None
    tr = [r for r in records if r.get("kind") == "train"]
    va = [r for r in records if r.get("kind") == "val"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if tr:
        ax.plot([r["step"] for r in tr], [r["loss"] for r in tr], label="train")
    if va and "loss" in va[0]:
        ax.plot([r["step"] for r in va], [r["loss"] for r in va], "o-", label="val")
    ax.set(title="loss", xlabel="step")
    ax.legend()
    ax = axes[1]
    if tr:
        ax.plot([r["step"] for r in tr], [r["lr"] for r in tr])
    ax.set(title="learning rate", xlabel="step")
    ax = axes[2]
    keys = ["top1", "top5"] if main_metric == "top1" else [main_metric]
    for k in keys:
        pts = [(r["step"], r[k]) for r in va if k in r]
        if pts:
            ax.plot(*zip(*pts), "o-", label=f"val {k}")
    if main_metric == "top1":
        pts = [(r["step"], r["train_acc"]) for r in tr if "train_acc" in r]
        if pts:
            ax.plot(*zip(*pts), label="train top1")
    ax.set(title="accuracy (%)" if main_metric == "top1" else main_metric, xlabel="step")
    ax.legend()
    fig.tight_layout()
    out = _savefig(fig, path)
    plt.close(fig)
    return out


def plot_confusion(cm, classes: list[str], path: str | Path, title: str = "confusion matrix") -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    cm = np.asarray(cm, dtype=float)
    K = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(4 + 0.45 * K, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if K <= 40:
        ax.set_xticks(range(K), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(K), classes, fontsize=8)
        if K <= 20:
            for i in range(K):
                for j in range(K):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = _savefig(fig, path)
    plt.close(fig)
    return out


def _savefig(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_json(path: str | Path, obj) -> Path:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
    return Path(path)


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
