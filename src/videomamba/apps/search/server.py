"""The search page: FastAPI over an open :class:`Index` (plain HTML/JS in ``static/``, no build step).

Routes: ``/`` the page; ``/api/info``; ``/api/search?q=TEXT&k=K``; ``/api/thumb/{window_id}`` a JPEG of the
window's middle frame; ``/media/{file_id}`` the video file (HTTP range requests, so the browser can seek).
Files are addressed by their row id only, never by a path from the request, and a file is served only
if it still resolves (symlinks followed) inside one of the folders the index was built from.
Requests are bounded: queries up to ``MAX_QUERY`` characters, at most ``MAX_TOPK`` results.
"""
from __future__ import annotations

import bisect
import io
import threading
from collections import OrderedDict
from pathlib import Path

from .embedders import Embedder, TextQueryUnsupported
from .index import Index

STATIC = Path(__file__).parent / "static"
MAX_QUERY = 500
MAX_TOPK = 100
THUMB_WIDTH = 160
THUMB_CACHE = 512


def allowed_path(path: Path, roots: list[Path]) -> Path | None:
    """``path`` resolved, if it is an existing file inside one of ``roots`` (resolved); else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file():
        return None
    for r in roots:
        try:
            if real.is_relative_to(r.resolve()):
                return real
        except OSError:
            continue
    return None


def thumbnail_jpeg(path: Path, t: float, width: int = THUMB_WIDTH) -> bytes:
    """JPEG of the frame shown at ``t`` seconds of ``path``, ``width`` pixels wide."""
    from PIL import Image

    from ...data.video import open_video

    with open_video(path) as reader:
        times = reader.frame_times
        n = reader.info.num_frames
        i = max(0, bisect.bisect_right(times, t) - 1) if times else min(int(t * reader.info.fps), n - 1)
        frame = reader.get_frames([min(i, n - 1)])[0].numpy()                 # (H, W, 3) uint8
    img = Image.fromarray(frame)
    h = max(1, round(img.height * width / img.width))
    buf = io.BytesIO()
    img.resize((width, h), Image.BILINEAR).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def create_app(index: Index, embedder: Embedder | None):
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="videomamba search", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()               # one query at a time: the model and the SQLite connection
    thumbs: OrderedDict[int, bytes] = OrderedDict()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def roots() -> list[Path]:
        return index.roots()

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info():
        with lock:
            s = index.stats()
        return {"files": s["files"], "windows": s["windows"], "model_kind": s["model_kind"],
                "text": s["model_kind"] == "video_text" and embedder is not None,
                "window_length": s["window_length"], "window_stride": s["window_stride"]}

    @app.get("/api/search")
    def search(q: str = Query(..., min_length=1, max_length=MAX_QUERY), k: int = Query(12, ge=1, le=MAX_TOPK)):
        try:
            with lock:
                hits = index.search(q, k, embedder)
        except TextQueryUnsupported as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        out = []
        for h in hits:
            d = h.to_dict()
            d["name"] = Path(h.path).name
            d["thumb"] = f"/api/thumb/{h.window_id}/{h.file_id}"
            d["media"] = f"/media/{h.file_id}"
            out.append(d)
        return {"query": q, "hits": out}

    def _file(file_id: int) -> Path:
        with lock:
            row = index.file(file_id)
            rs = roots()
        real = allowed_path(row[0], rs) if row else None
        if real is None:
            raise HTTPException(404, "no such file in the index")
        return real

    @app.get("/api/thumb/{window_id}/{file_id}")
    def thumb(window_id: int, file_id: int):
        key = (window_id, file_id)
        if key not in thumbs:
            with lock:
                w = index.window_row(window_id)
            path = _file(file_id)
            if w is None:
                raise HTTPException(404, "no such window")
            try:
                data = thumbnail_jpeg(path, (w[1] + w[2]) / 2)
            except Exception as e:  # noqa: BLE001 - a file changed since indexing: no thumbnail
                raise HTTPException(404, f"cannot read a frame: {e}") from None
            thumbs[key] = data
            while len(thumbs) > THUMB_CACHE:
                thumbs.popitem(last=False)
        return Response(thumbs[key], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/media/{file_id}")
    def media(file_id: int):
        path = _file(file_id)
        return FileResponse(path, filename=path.name, content_disposition_type="inline")

    return app
