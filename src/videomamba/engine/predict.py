"""Top-k predictions for video files of any length: clips are sampled over the whole video, and
the softmax is averaged over clips x crops."""
from __future__ import annotations

from pathlib import Path

import torch

from . import distributed as D
from .data import read_classes
from .tasks import build_task


def predict(videos: "str | Path | list[str | Path]", checkpoint: "str | Path | None" = None, *,
            model: torch.nn.Module | None = None, model_name: str | None = None, topk: int = 5,
            labels: "str | list[str] | None" = None, clips: int | None = None, crops: int | None = None,
            num_frames: int | None = None, img_size: int | None = None, short_side: int | None = None,
            device: str = "auto", amp: str = "auto", use_ema: bool | None = None) -> list[dict]:
    """Returns, per file, ``{"path", "top": [{"label", "index", "score"}, ...]}`` (classification)
    or ``{"path", "value"}`` (regression). Defaults for frames, size and views come from the model."""
    from ..data import load_video_clips
    from ..models import create_model
    from .trainer import resolve_amp

    if isinstance(videos, (str, Path)):
        videos = [videos]
    dev = D.resolve_device(device)
    if model is None:
        if checkpoint is None:
            raise ValueError("give a checkpoint to predict with")
        model = create_model(model_name, pretrained=checkpoint, use_ema=use_ema)
    model = model.to(dev).eval()
    mcfg = model.cfg
    extra = dict(mcfg.extra or {})
    trained = dict(extra.get("data") or {})
    kind = extra.get("task", "classification")
    names = read_classes(labels) if labels is not None else extra.get("classes")
    K = model.num_classes
    if kind != "regression" and names is not None and len(names) != K:
        raise ValueError(f"the model has {K} classes but {len(names)} labels were given")
    task = build_task(kind, K)
    T = num_frames or trained.get("num_frames") or mcfg.num_frames
    size = img_size or trained.get("img_size") or mcfg.img_size
    # a long video deserves more than one clip: default to at least the test views of training
    n_clips = clips or max(int(trained.get("test_clips", 1)), 1)
    n_crops = crops or int(trained.get("test_crops", 1))
    ss = short_side if short_side is not None else trained.get("short_side")
    amp_dtype = resolve_amp(amp, dev)
    out = []
    for v in videos:
        path = Path(v)
        if not path.is_file():
            raise FileNotFoundError(f"video {path} does not exist")
        x = load_video_clips(str(path), num_frames=T, num_clips=n_clips, img_size=size, short_side=ss,
                             num_crops=n_crops)                                     # (V, 3, T, H, W)
        x = torch.as_tensor(x).float().unsqueeze(0).to(dev)                         # (1, V, 3, T, H, W)
        with torch.no_grad(), (torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else _null()):
            p = task.predict(model, x)[0].float().cpu()
        if kind == "regression":
            out.append({"path": str(path), "value": float(p[0]), "views": int(x.shape[1])})
            continue
        k = min(topk, K)
        scores, idx = p.topk(k)
        out.append({"path": str(path), "views": int(x.shape[1]),
                    "top": [{"label": names[i] if names else str(i), "index": int(i), "score": float(s)}
                            for s, i in zip(scores.tolist(), idx.tolist())]})
    return out


def _null():
    import contextlib
    return contextlib.nullcontext()


def format_predictions(preds: list[dict]) -> str:
    lines = []
    for r in preds:
        lines.append(f"{r['path']}  ({r['views']} view{'s' if r['views'] != 1 else ''})")
        if "value" in r:
            lines.append(f"  value {r['value']:.4f}")
            continue
        width = max(len(t["label"]) for t in r["top"])
        for rank, t in enumerate(r["top"], 1):
            lines.append(f"  {rank}. {t['label']:<{width}}  {100 * t['score']:6.2f}%")
    return "\n".join(lines)
