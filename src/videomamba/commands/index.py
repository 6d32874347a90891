"""``videomamba index``: embed folders of video as overlapping windows into a searchable index."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files and folders (walked recursively)")
    p.add_argument("-k", "--checkpoint", default=None,
                   help="model to embed with: a saved model directory or checkpoint (a video-text model allows "
                        "text queries; a classifier, example queries). Default: the model the index was built with")
    p.add_argument("-o", "--output", required=True, metavar="INDEX", help="index folder (created if missing)")
    p.add_argument("--window", type=float, default=None, help="window length in seconds (new index: default 4)")
    p.add_argument("--stride", type=float, default=None, help="seconds between window starts (new index: default 2)")
    p.add_argument("--index-type", default=None, choices=["auto", "flat", "ivf", "hnsw", "ivfpq"],
                   help="FAISS index kind (auto: exact below 100k windows, IVF past it)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per model call (default 8)")
    p.add_argument("--prune", action="store_true", help="drop indexed files that no longer exist")
    p.add_argument("--all-files", action="store_true",
                   help="try every file in the folders, not only known video extensions")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..apps.search import Index, WindowSpec, load_embedder
    from ..apps.search.index import DB_NAME
    from ..cli import CLIError

    out = Path(args.output)
    existing = None
    if (out / DB_NAME).exists():
        with Index.open(out) as ix:
            existing = ix.settings
    model = args.checkpoint or (existing or {}).get("model_source")
    if not model:
        raise CLIError("a new index needs a model: -k MODEL (saved model directory or checkpoint)")
    window = None
    if args.window is not None or args.stride is not None or existing is None:
        length = args.window if args.window is not None else (existing or {}).get("window_length", 4.0)
        stride = args.stride if args.stride is not None else (existing or {}).get("window_stride", min(2.0, length))
        window = WindowSpec(length, stride)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")

    from ..engine.distributed import launched_by_torchrun

    if launched_by_torchrun():
        from ..apps.search.distributed import index_distributed

        report = index_distributed(args.paths, out, model, window, args.index_type, args.batch_size, args.prune,
                                   args.all_files, args.device, not args.no_progress)
        if report is None:
            return 0
    else:
        embedder = load_embedder(model, device=args.device)
        with Index.open(out, embedder, window=window, index_type=args.index_type) as ix:
            report = ix.add(args.paths, embedder, prune=args.prune, batch_size=args.batch_size,
                            progress=not args.no_progress, all_files=args.all_files)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2))
    else:
        print(report.summary())
        print(f"index: {out}")
    return 0
