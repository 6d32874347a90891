"""The KAIST analyses as runnable functions (behind ``videomamba analyze``).

- :func:`reorder_test`: accuracy of a checkpoint on the same clips under the four frame orders of
  KAIST Table 1 (:mod:`videomamba.analysis.reorder`).
- :func:`delta_pictures`: per-layer Delta maps of one video as a PNG grid and an animation
  (:mod:`videomamba.analysis.delta`).
- :func:`scan_order_ablation`: train and validate every scan-order / backward-order variant with
  one config on the same data, and tabulate (KAIST Table 2 and the OpenGVLab scan ablation).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..engine import distributed as D


def _model_data_defaults(model) -> dict:
    extra = dict(getattr(model.cfg, "extra", {}) or {})
    return dict(extra.get("data") or {}), extra.get("classes")


def reorder_test(checkpoint, annotations, *, root=None, fmt="auto", model_name=None, num_frames=None,
                 img_size=None, short_side=None, clips=None, crops=None, batch_size=8, num_workers=2,
                 device="auto", orders=None, max_batches=None, out_dir=None,
                 log: Callable[[str], None] | None = print) -> dict:
    """Evaluate ``checkpoint`` on ``annotations`` once per frame reordering -> results dict.

    Preprocessing defaults to the model's training settings (its config), as ``videomamba eval``.
    """
    from .reorder import REORDERINGS, evaluate_reorderings, format_reorder_table
    from ..data import VideoDataset
    from ..engine.data import make_loader
    from ..engine.metrics import write_json
    from ..apps.predict import load_for_inference

    dev = D.resolve_device(device)
    model = load_for_inference(checkpoint, model_name, log=log).to(dev).eval()
    trained, classes = _model_data_defaults(model)
    T = num_frames or trained.get("num_frames") or model.cfg.num_frames
    if T % model.cfg.tubelet_size:
        raise ValueError(f"num_frames={T} is not a multiple of the model's tubelet ({model.cfg.tubelet_size})")
    ds = VideoDataset(str(annotations), root=root, fmt=fmt, train=False, num_frames=T,
                      img_size=img_size or trained.get("img_size") or model.cfg.img_size,
                      short_side=short_side if short_side is not None else trained.get("short_side"),
                      sampling=trained.get("sampling", "segment"), sample_stride=trained.get("sample_stride", 4),
                      num_clips=clips or trained.get("test_clips", 1), num_crops=crops or trained.get("test_crops", 1),
                      classes=classes)
    loader, _ = make_loader(ds, batch_size, D.DistInfo(), train=False, num_workers=num_workers)
    t0 = time.time()
    res = evaluate_reorderings(model, loader, names=orders or REORDERINGS, device=dev, max_batches=max_batches)
    out = {"checkpoint": str(checkpoint), "annotations": str(annotations), "num_frames": T,
           "tubelet": model.cfg.tubelet_size, "results": res, "wall_time_s": time.time() - t0}
    if log:
        log(format_reorder_table(res))
    if out_dir is not None:
        out["files"] = {"json": str(Path(out_dir) / "reorder_results.json")}
        write_json(Path(out_dir) / "reorder_results.json", out)
        if log:
            log(f"  json: {out['files']['json']}")
    return out


def delta_pictures(video, checkpoint, out_dir="delta", *, model_name=None, layers=None, num_frames=None,
                   img_size=None, short_side=None, animation="gif", alpha=0.5, clip_quantile=0.02,
                   device="auto") -> dict:
    """Delta maps of one video file -> ``{"png", "animation", "layers", "prediction"}``."""
    from .delta import visualise_clip
    from ..data import load_video_clips
    from ..apps.predict import load_for_inference

    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    dev = D.resolve_device(device)
    model = load_for_inference(checkpoint, model_name, log=print).to(dev).eval()
    trained, classes = _model_data_defaults(model)
    T = num_frames or trained.get("num_frames") or model.cfg.num_frames
    size = img_size or trained.get("img_size") or model.cfg.img_size
    clip = load_video_clips(str(path), num_frames=T, num_clips=1, img_size=size,
                            short_side=short_side if short_side is not None else trained.get("short_side"))
    clip = torch.as_tensor(clip)[0].float().to(dev)                                 # (3, T, H, W)
    return visualise_clip(model, clip, out_dir, layers=layers, name=path.stem, alpha=alpha, animation=animation,
                          class_names=classes, clip_quantile=clip_quantile)


# (name, scan_order, backward_order): the OpenGVLab orders with the full flip, then KAIST's
# backward orders with the spatial-first forward scan.
SCAN_VARIANTS = (
    ("spatial_first", "spatial_first", "full_flip"),
    ("temporal_first", "temporal_first", "full_flip"),
    ("spatiotemporal_v1", "spatiotemporal_v1", "full_flip"),
    ("spatiotemporal_v2", "spatiotemporal_v2", "full_flip"),
    ("spatial_reversal", "spatial_first", "spatial_reversal"),
    ("temporal_reversal", "spatial_first", "temporal_reversal"),
)


def scan_order_ablation(config=None, overrides=None, *, out_dir="runs/scan_orders", variants=None,
                        log: Callable[[str], None] = print) -> dict:
    """Train every variant with the same config, data and seed; validate; tabulate.

    ``variants``: names from :data:`SCAN_VARIANTS` (default all). The config must set data.val.
    Each run goes to ``out_dir/<variant>``; the table to ``out_dir/scan_orders.json``.
    """
    from ..engine.config import ConfigError, load_config
    from ..engine.metrics import write_json
    from ..engine.trainer import train

    table = {name: (s, b) for name, s, b in SCAN_VARIANTS}
    names = list(variants or table)
    bad = [n for n in names if n not in table]
    if bad:
        raise ValueError(f"unknown scan variant(s) {bad}; expected some of {', '.join(table)}")
    base = load_config(config, overrides)
    if not base.data.val:
        raise ConfigError("scan-orders compares validation accuracy: set data.val (an annotation file)")
    rows = {}
    out = Path(out_dir)
    for n in names:
        scan, bwd = table[n]
        cfg = base.replace({"model.scan_order": scan, "model.backward_order": bwd, "train.out_dir": str(out / n)})
        log(f"== scan variant {n}: scan_order={scan} backward_order={bwd}")
        t0 = time.time()
        res = train(cfg, log=log)
        m = res.metrics
        rows[n] = {"scan_order": scan, "backward_order": bwd, "top1": m.get("top1"), "top5": m.get("top5"),
                   "best_top1": res.best.get("value"), "train_time_s": time.time() - t0,
                   "params": sum(p.numel() for p in res.model.parameters()), "model_dir": str(res.export_dir)}
    summary = {"variants": rows, "config": base.to_dict()}
    write_json(out / "scan_orders.json", summary)
    log(format_scan_table(rows))
    log(f"  json: {out / 'scan_orders.json'}")
    return summary


def format_scan_table(rows: dict) -> str:
    lines = [f"{'variant':20s} {'scan order':18s} {'backward order':18s} "
             f"{'top-1':>7s} {'best':>7s} {'top-5':>7s} {'time':>8s}"]
    for n, r in rows.items():
        def f(v):
            return f"{v:7.2f}" if isinstance(v, (int, float)) else f"{'-':>7s}"
        lines.append(f"{n:20s} {r['scan_order']:18s} {r['backward_order']:18s} {f(r['top1'])} {f(r['best_top1'])} "
                     f"{f(r['top5'])} {r['train_time_s']:7.0f}s")
    return "\n".join(lines)
