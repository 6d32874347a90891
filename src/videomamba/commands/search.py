"""``videomamba search``: find moments in an index by text or by an example clip."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="INDEX", help="index folder written by 'videomamba index'")
    p.add_argument("text", nargs="?", default=None, help="what to look for (video-text indexes)")
    p.add_argument("--like", default=None, metavar="CLIP", help="find moments like this video clip")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="with --like: the window of the clip starting here (default: its start)")
    p.add_argument("--topk", type=int, default=10, help="moments to return (default 10)")
    p.add_argument("-k", "--checkpoint", default=None,
                   help="model to embed the query (default: the one the index was built with; another is refused)")
    p.add_argument("--no-merge", action="store_true", help="list single windows, not merged moments")
    p.add_argument("--merge-margin", type=float, default=0.05,
                   help="adjacent windows within this score of a moment's best join it (default 0.05)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def format_time(t: float) -> str:
    m, s = divmod(max(t, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def run(args: argparse.Namespace) -> int:
    from ..apps.search import Index, load_embedder
    from ..cli import CLIError

    if (args.text is None) == (args.like is None):
        raise CLIError("give either a text query or --like CLIP (not both)")
    if args.at is not None and args.like is None:
        raise CLIError("--at goes with --like")
    if args.topk < 1:
        raise CLIError(f"--topk must be >= 1, got {args.topk}")
    with Index.open(args.index) as ix:
        if args.text is not None and ix.settings["model_kind"] != "video_text":
            ix.embed_query(args.text)        # raises the clear 'classifier index: no text' error
        model = args.checkpoint or ix.settings.get("model_source")
        if not model:
            raise CLIError(f"the index {args.index} does not record its model; give it with -k MODEL")
        embedder = load_embedder(model, device=args.device)
        ix.check_embedder(embedder)
        query = ix.embed_clip(args.like, embedder, args.at) if args.like else args.text
        hits = ix.search(query, args.topk, embedder, merge=not args.no_merge, margin=args.merge_margin)
    if args.json:
        print(json.dumps({"query": args.text if args.text is not None else {"like": args.like, "at": args.at},
                          "hits": [h.to_dict() for h in hits]}, indent=2))
        return 0
    if not hits:
        print("no results (is the index empty?)")
    for rank, h in enumerate(hits, 1):
        n = f"  ({h.windows} windows)" if h.windows > 1 else ""
        print(f"{rank:2d}. {h.score:6.3f}  {h.path}  {format_time(h.start)} - {format_time(h.end)}{n}")
    return 0
