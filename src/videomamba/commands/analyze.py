"""``videomamba analyze reorder|delta|scan-orders``: the KAIST paper's analyses."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    r = sub.add_parser("reorder", help="accuracy with frames in original / block-wise / pairwise / interleaved order",
                       description="Evaluate a checkpoint on the same clips with the frames reordered as in "
                                   "KAIST Table 1 (generalised to any frame count: block-wise swaps the halves, "
                                   "pairwise keeps the first pair and reverses the order of the other pairs, "
                                   "interleaved alternates first/last) and print the accuracy table.")
    r.add_argument("annotations", help="annotation file (CSV / 'path label' lines / folder-per-class directory)")
    r.add_argument("-k", "--checkpoint", required=True, help="saved model directory, training checkpoint, or "
                   "original checkpoint with --model")
    r.add_argument("--model", default=None, help="preset name, only for original checkpoints")
    r.add_argument("--root", default=None, help="prefix for relative video paths")
    r.add_argument("--format", default="auto", help="annotation format (default: auto)")
    r.add_argument("--orders", nargs="+", default=None, metavar="NAME",
                   help="subset of: original block-wise pairwise interleaved (default: all)")
    r.add_argument("--frames", type=int, default=None, help="frames per clip (default: as trained)")
    r.add_argument("--img-size", type=int, default=None, help="crop size (default: as trained)")
    r.add_argument("--clips", type=int, default=None, help="clips per video (default: as trained)")
    r.add_argument("--crops", type=int, default=None, help="crops per clip (default: as trained)")
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--device", default="auto")
    r.add_argument("-o", "--out", default=None, help="also write reorder_results.json here")
    r.add_argument("--json", action="store_true", help="print JSON instead of the table")

    d = sub.add_parser("delta", help="per-layer Delta maps of a video as PNG grids and an animation",
                       description="Delta = softplus(dt_proj(...)) per layer: mean over channels and both scan "
                                   "directions (in token order), cls dropped, a tubelet's value on each of its "
                                   "frames, upsampled to pixels and overlaid as a heat map (each layer scaled "
                                   "over the whole clip, see --clip-quantile). Writes DIR/<video>_grid.png (rows: "
                                   "frames, then layers) and DIR/<video>.gif (or .mp4).")
    d.add_argument("video", help="video file")
    d.add_argument("-k", "--checkpoint", required=True, help="saved model directory, training checkpoint, or "
                   "original checkpoint with --model")
    d.add_argument("--model", default=None, help="preset name, only for original checkpoints")
    d.add_argument("--layers", default=None, help="comma-separated layer indices (default: up to 6 evenly spaced)")
    d.add_argument("--frames", type=int, default=None, help="frames (default: as trained)")
    d.add_argument("--img-size", type=int, default=None, help="frame size (default: as trained)")
    d.add_argument("--animation", choices=("gif", "mp4"), default="gif")
    d.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity (default 0.5)")
    d.add_argument("--clip-quantile", type=float, default=0.02, metavar="Q",
                   help="each layer's colour scale runs from its Q to its 1-Q quantile token (default 0.02; "
                        "0: min..max)")
    d.add_argument("--device", default="auto")
    d.add_argument("-o", "--out", default="delta", help="output directory (default: ./delta)")

    s = sub.add_parser("scan-orders", help="train + validate every scan / backward order with one config",
                       description="Train each variant (spatial_first, temporal_first, spatiotemporal_v1/v2 "
                                   "with the full flip; spatial_reversal and temporal_reversal backward orders "
                                   "with the spatial-first scan) with the same config, data and seed, and "
                                   "tabulate validation accuracy. KAIST ran this without a cls token: add "
                                   "model.cls_position=none to match.")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (as for train)")
    s.add_argument("-c", "--config", default=None, help="YAML file or packaged config name; must set data.val")
    s.add_argument("--variants", nargs="+", default=None, metavar="NAME", help="subset of the variants")
    s.add_argument("--epochs", type=int, default=None, help="optim.epochs for every variant")
    s.add_argument("--device", default=None, help="train.device")
    s.add_argument("-o", "--out", default="runs/scan_orders", help="output directory (one run per variant)")


def run(args: argparse.Namespace) -> int:
    from ..analysis import runs as A

    if args.analysis == "reorder":
        res = A.reorder_test(args.checkpoint, args.annotations, root=args.root, fmt=args.format, model_name=args.model,
                             num_frames=args.frames, img_size=args.img_size, clips=args.clips, crops=args.crops,
                             batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                             orders=args.orders, out_dir=args.out, log=None if args.json else print)
        if args.json:
            print(json.dumps(res, indent=2))
        return 0
    if args.analysis == "delta":
        layers = None
        if args.layers:
            try:
                layers = [int(v) for v in args.layers.split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"--layers must be comma-separated integers, got {args.layers!r}") from None
        res = A.delta_pictures(args.video, args.checkpoint, args.out, model_name=args.model, layers=layers,
                               num_frames=args.frames, img_size=args.img_size, animation=args.animation,
                               alpha=args.alpha, clip_quantile=args.clip_quantile, device=args.device)
        if res["prediction"]:
            p = res["prediction"]
            print(f"prediction: {p['label']} ({100 * p['prob']:.1f}%)")
        print(f"layers: {', '.join(map(str, res['layers']))}")
        print(f"png:       {res['png']}")
        print(f"animation: {res['animation']}")
        return 0
    overrides = list(args.overrides)
    for key, value in (("optim.epochs", args.epochs), ("train.device", args.device)):
        if value is not None:
            overrides.append(f"{key}={value}")
    A.scan_order_ablation(args.config, overrides, out_dir=args.out, variants=args.variants)
    return 0
