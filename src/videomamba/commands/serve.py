"""``videomamba serve``: a search page over an index (FastAPI + uvicorn, plain HTML/JS)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="INDEX", help="index folder written by 'videomamba index'")
    p.add_argument("-k", "--checkpoint", default=None, help="model for queries (default: the index's own)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from ..apps.search import Index, load_embedder
    from ..apps.search.server import create_app
    from ..cli import CLIError

    try:
        import uvicorn
    except ImportError:
        raise CLIError("serve needs uvicorn and fastapi: pip install 'videomamba[search]'") from None
    index = Index.open(args.index)
    model = args.checkpoint or index.settings.get("model_source")
    if not model:
        raise CLIError(f"the index {args.index} does not record its model; give it with -k MODEL")
    embedder = load_embedder(model, device=args.device)
    index.check_embedder(embedder)
    app = create_app(index, embedder)
    print(f"serving {args.index} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
