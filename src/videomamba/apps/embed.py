"""Video and text embeddings of a video-text model for lists of files / captions (``videomamba embed``)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def _read_list(path: "str | Path", what: str) -> list[str]:
    """One entry per line, or (for .json/.jsonl/.csv) the videos / captions of a video-text annotation."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} list {p} does not exist")
    if p.suffix.lower() in (".json", ".jsonl", ".csv"):
        from ..data.captions import read_video_text
        vids = read_video_text(p)
        if what == "video":
            return [str(v.path) for v in vids]
        return [c for v in vids for c in v.captions]
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(emb: torch.Tensor, index: list, out_dir: Path, stem: str, fmt: str, meta: dict) -> dict:
    from ..fileio import atomic_path, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    emb = emb.float().contiguous().cpu()
    if fmt == "safetensors":
        from safetensors.torch import save_file
        path = out_dir / f"{stem}_embeddings.safetensors"
        with atomic_path(path) as tmp:
            save_file({"embeddings": emb}, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    elif fmt == "npy":
        import numpy as np
        path = out_dir / f"{stem}_embeddings.npy"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb.numpy())
    else:
        raise ValueError(f"format must be safetensors or npy, got {fmt!r}")
    idx = out_dir / f"{stem}s.json"
    atomic_write_text(idx, json.dumps({"items": index, **meta}, indent=1))
    return {"embeddings": path, "index": idx, "count": int(emb.shape[0]), "dim": int(emb.shape[1])}


@torch.no_grad()
def embed_files(checkpoint, videos=(), videos_from=None, texts=(), texts_from=None, out_dir="embeddings",
                fmt: str = "safetensors", clips: int = 1, num_frames: int | None = None, img_size: int | None = None,
                batch_size: int = 8, skip_missing: bool = False, device: str = "auto", progress: bool = False,
                model=None) -> dict:
    """Embed videos and captions; returns {"videos": {...}, "texts": {...}} with paths and counts."""
    from ..data.captions import IMAGE_EXTENSIONS, load_image_clip
    from ..data.dataset import load_video_clips
    from ..data.video import VideoDecodeError
    from ..models.video_text import load_video_text
    from ..runtime import resolve_device

    videos = list(videos) + (_read_list(videos_from, "video") if videos_from else [])
    texts = list(texts) + (_read_list(texts_from, "caption") if texts_from else [])
    if not videos and not texts:
        raise ValueError("nothing to embed: give --videos / --videos-from and/or --texts / --texts-from")
    dev = resolve_device(device)
    model = (model or load_video_text(checkpoint)).to(dev).eval()
    T = num_frames or model.num_frames
    S = img_size or model.img_size
    out_dir = Path(out_dir)
    meta = {"model": str(checkpoint), "frames": T, "img_size": S, "clips": clips}
    res: dict = {}
    if videos:
        missing = [v for v in videos if not Path(v).is_file()]
        if missing and not skip_missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise FileNotFoundError(f"{len(missing)} video file(s) do not exist: {', '.join(missing[:3])}{more} "
                                    f"(--skip-missing skips them)")
        kept, skipped, embs = [], [(m, "missing") for m in missing], []
        batch, names = [], []
        todo = [v for v in videos if v not in set(missing)]
        it = todo
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(todo, desc="videos", unit="video")

        def flush():
            if batch:
                x = torch.stack(batch).to(dev)                               # (B, V, 3, T, H, W)
                embs.append(model.encode_video(x).cpu())
                kept.extend(names)
                batch.clear()
                names.clear()

        for v in it:
            try:
                if Path(v).suffix.lower() in IMAGE_EXTENSIONS:
                    x = load_image_clip(Path(v), S, False)[None].expand(clips, -1, -1, -1, -1)
                else:
                    x = load_video_clips(v, T, clips, S)
            except (VideoDecodeError, ValueError, OSError) as e:
                if not skip_missing:
                    raise
                skipped.append((v, str(e)))
                continue
            batch.append(x)
            names.append(v)
            if len(batch) >= batch_size:
                flush()
        flush()
        if not embs:
            raise ValueError(f"no video could be embedded ({len(skipped)} skipped)")
        r = _write(torch.cat(embs), kept, out_dir, "video", fmt, meta)
        r["skipped"] = skipped
        res["videos"] = r
    if texts:
        empty = [i for i, t in enumerate(texts) if not str(t).strip()]
        if empty:
            raise ValueError(f"caption(s) number {[i + 1 for i in empty[:10]]} are empty")
        embs, truncated = [], 0
        for i in range(0, len(texts), 256):
            embs.append(model.encode_text(texts[i:i + 256]).cpu())
            truncated += model.tokenizer.last_truncated
        r = _write(torch.cat(embs), texts, out_dir, "text", fmt, {**meta, "max_length": model.max_txt_l})
        r.update(truncated=truncated, max_length=model.max_txt_l)
        res["texts"] = r
    return res
