"""Top-k predictions for video files of any length: clips are sampled over the whole video (or
over each window of a long one), and the softmax is averaged over clips x crops.

The model comes through the one way in (``create_model(pretrained=...)``): the file decides its
frames, size and classes; the preprocessing is the model's :class:`ClipConfig`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..engine.tasks import build_task


class PartialModelError(ValueError):
    """Trained weights of the checkpoint would be dropped at inference."""


def load_for_inference(checkpoint, model_name: str | None = None, use_ema: bool | None = None,
                       allow_partial: bool = False, log=None, **overrides):
    """A model ready for inference, its load report printed through ``log``; refuses (unless
    ``allow_partial``) when trained weights of the file would be dropped (a head of another size,
    keys the model has no place for)."""
    from ..models import create_model

    model = create_model(model_name, pretrained=checkpoint, use_ema=use_ema, **overrides).eval()
    report = getattr(model, "load_report", None)
    if report is not None:
        if log is not None:
            log(str(report))
        dropped = report.dropped_trained
        if dropped and not allow_partial:
            raise PartialModelError(
                f"{checkpoint}: trained weights would be dropped at inference ({', '.join(dropped[:6])}"
                f"{', ...' if len(dropped) > 6 else ''}); build the model the file was saved from (leave out "
                f"--model and size options) or accept it with --allow-partial")
    return model


@torch.no_grad()
def score_views(model, views: torch.Tensor, kind: str = "classification", view_batch: int | None = None,
                amp_dtype=None) -> torch.Tensor:
    """(V, 3, T, H, W) views of one video -> (K,) class probabilities averaged over views (or (1,)
    for regression)."""
    task = build_task(kind, getattr(model, "num_classes", 1))
    dev = next(model.parameters()).device
    x = views.to(dev).float().unsqueeze(0)                                         # (1, V, 3, T, H, W)
    ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    with ctx:
        return task.predict(model, x, view_batch=view_batch)[0].float().cpu()


@torch.no_grad()
def window_predictions(model: torch.nn.Module, path, window: float, stride: float | None = None, *,
                       scheme: str = "cover", clip=None, clips: int | None = None, crops: int | None = None,
                       view_batch: int | None = None, kind: str | None = None, amp_dtype=None, **clip_overrides) -> dict:
    """One prediction per ``window``-second window of a long video file (every ``stride`` seconds,
    default ``window``), and their average, as LVU is scored.

    ``clip``: the :class:`ClipConfig` (default: the model's; ``clip_overrides`` such as num_frames,
    img_size replace its fields). ``scheme``: ``"cover"`` (a last window ends at the video's end)
    or ``"release"`` (the release's rule, :func:`videomamba.data.annotations.release_window_bounds`).
    Returns ``{"windows": [{"start", "end", "views", "pred"}], "pred": pooled, "duration"}`` with
    ``pred`` the class probabilities (K,) or the regression output (1,).
    """
    from ..data.annotations import release_window_bounds
    from ..data.clip_config import ClipConfig
    from ..data.sampling import window_bounds
    from ..data.video import probe_video
    from ..data.views import read_views

    if not window or window <= 0:
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    if scheme not in ("cover", "release"):
        raise ValueError(f"scheme must be 'cover' or 'release', got {scheme!r}")
    clip = (clip or ClipConfig.for_model(model)).replace(**clip_overrides)
    kind = kind or clip.task
    info = probe_video(path)
    duration = info.duration if info.duration and info.duration > 0 else info.num_frames / (info.fps or 1.0)
    bounds = (release_window_bounds if scheme == "release" else window_bounds)(duration, window, stride or window)
    was_training = model.training
    model.eval()
    out = []
    for s, e in bounds:
        views = read_views(path, clip, clips, crops, window=(s, e))
        out.append({"start": s, "end": e, "views": int(views.shape[0]),
                    "pred": score_views(model, views, kind, view_batch, amp_dtype)})
    model.train(was_training)
    return {"windows": out, "pred": torch.stack([w["pred"] for w in out]).mean(0), "duration": duration}


def predict(videos: "str | Path | list[str | Path]", checkpoint: "str | Path | None" = None, *,
            model: torch.nn.Module | None = None, model_name: str | None = None, topk: int = 5,
            labels: "str | list[str] | None" = None, clips: int | None = None, crops: int | None = None,
            num_frames: int | None = None, img_size: int | None = None, short_side: int | None = None,
            device: str = "auto", amp: str = "auto", use_ema: bool | None = None, allow_partial: bool = False,
            windows: float | None = None, window_stride: float | None = None, window_scheme: str = "cover",
            view_batch: int | None = None, log=None) -> list[dict]:
    """Returns, per file, ``{"path", "views", "top": [{"label", "index", "score"}, ...]}``
    (classification) or ``{"path", "views", "value"}`` (regression); with ``windows`` (seconds), a
    ``"windows"`` list of such predictions, one per window (``window_stride`` apart, default the
    window length; ``window_scheme`` as in :func:`window_predictions`), and the whole file's
    prediction, their mean. Frames, size, views and class names come from the model (:class:`ClipConfig`);
    ``labels``: a class file or a shipped list name (``Kinetics400``, ...), or a list."""
    from ..data.clip_config import ClipConfig, class_names
    from ..data.views import read_views
    from ..runtime import resolve_amp, resolve_device

    if isinstance(videos, (str, Path)):
        videos = [videos]
    dev = resolve_device(device)
    if model is None:
        if checkpoint is None:
            raise ValueError("give a checkpoint to predict with")
        model = load_for_inference(checkpoint, model_name, use_ema, allow_partial, log)
    model = model.to(dev).eval()
    clip = ClipConfig.for_model(model, source=str(checkpoint) if checkpoint is not None else None)
    clip = clip.replace(num_frames=num_frames, img_size=img_size, short_side=short_side)
    kind = clip.task
    K = model.num_classes
    names = class_names(labels) if labels is not None else (list(clip.class_names) if clip.class_names else None)
    if kind != "regression" and names is not None and len(names) != K:
        raise ValueError(f"the model has {K} classes but {len(names)} labels were given")
    # a long video deserves more than one clip: default to the test views of training
    n_clips = clips or clip.test_clips
    n_crops = crops or clip.test_crops
    amp_dtype = resolve_amp(amp, dev)

    def entry(p: torch.Tensor, views: int) -> dict:
        if kind == "regression":
            return {"views": views, "value": float(p[0])}
        scores, idx = p.topk(min(topk, K))
        return {"views": views, "top": [{"label": names[i] if names else str(i), "index": int(i), "score": float(s)}
                                        for s, i in zip(scores.tolist(), idx.tolist())]}

    out = []
    for v in videos:
        path = Path(v)
        if not path.is_file():
            raise FileNotFoundError(f"video {path} does not exist")
        if windows:
            res = window_predictions(model, path, windows, window_stride, scheme=window_scheme, clip=clip,
                                     clips=n_clips, crops=n_crops, view_batch=view_batch, kind=kind,
                                     amp_dtype=amp_dtype)
            out.append({"path": str(path), **entry(res["pred"], sum(w["views"] for w in res["windows"])),
                        "windows": [{"start": w["start"], "end": w["end"], **entry(w["pred"], w["views"])}
                                    for w in res["windows"]]})
            continue
        x = read_views(path, clip, n_clips, n_crops)
        out.append({"path": str(path), **entry(score_views(model, x, kind, view_batch, amp_dtype), int(x.shape[0]))})
    return out


def _format_entry(r: dict, indent: str) -> list[str]:
    if "value" in r:
        return [f"{indent}value {r['value']:.4f}"]
    width = max(len(t["label"]) for t in r["top"])
    return [f"{indent}{rank}. {t['label']:<{width}}  {100 * t['score']:6.2f}%" for rank, t in enumerate(r["top"], 1)]


def format_predictions(preds: list[dict]) -> str:
    lines = []
    for r in preds:
        if "windows" in r:
            lines.append(f"{r['path']}  ({len(r['windows'])} windows; the whole file, their mean:)")
            lines += _format_entry(r, "  ")
            for w in r["windows"]:
                lines.append(f"  {w['start']:8.1f}s - {w['end']:8.1f}s  ({w['views']} views)")
                lines += _format_entry(w, "    ")
            continue
        lines.append(f"{r['path']}  ({r['views']} view{'s' if r['views'] != 1 else ''})")
        lines += _format_entry(r, "  ")
    return "\n".join(lines)
