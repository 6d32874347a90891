"""``videomamba embed``: video and text embeddings of a video-text model, for any files or captions.

Writes ``video_embeddings.{safetensors,npy}`` + ``videos.json`` (the index: row i is file i) and
``text_embeddings.{safetensors,npy}`` + ``texts.json``. Rows are L2-normalised texts and frame-mean
video embeddings: ``video @ text.T`` is the model's retrieval similarity.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", "--checkpoint", required=True,
                   help="video-text model: saved directory, training checkpoint or released .pth")
    p.add_argument("--videos", nargs="+", default=[], metavar="FILE", help="video (or image) files")
    p.add_argument("--videos-from", default=None, metavar="LIST",
                   help="a text file with one video path per line, or a video-text annotation (.json/.csv)")
    p.add_argument("--texts", nargs="+", default=[], metavar="CAPTION", help="captions")
    p.add_argument("--texts-from", default=None, metavar="FILE",
                   help="a text file with one caption per line, or a video-text annotation (.json/.csv)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--format", choices=["safetensors", "npy"], default="safetensors")
    p.add_argument("--clips", type=int, default=1, help="clips per video, embeddings averaged (default 1)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--img-size", type=int, default=None, help="frame size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-missing", action="store_true",
                   help="skip video files that do not exist or cannot be decoded (counted) instead of failing")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from ..apps.embed import embed_files

    res = embed_files(args.checkpoint, videos=args.videos, videos_from=args.videos_from, texts=args.texts,
                      texts_from=args.texts_from, out_dir=args.out, fmt=args.format, clips=args.clips,
                      num_frames=args.frames, img_size=args.img_size, batch_size=args.batch_size,
                      skip_missing=args.skip_missing, device=args.device, progress=True)
    for kind in ("videos", "texts"):
        if res.get(kind):
            r = res[kind]
            print(f"{kind}: {r['count']} embeddings of size {r['dim']} -> {r['embeddings']} (index {r['index']})"
                  + (f"; skipped {len(r['skipped'])}" if r.get("skipped") else "")
                  + (f"; {r['truncated']} caption(s) truncated to {r['max_length']} tokens" if r.get("truncated") else ""))
    return 0
