"""A searchable index of video windows: vectors in FAISS, everything else in SQLite beside it.

An index is a directory::

    INDEX/meta.sqlite       files, contents, windows (with their vectors), runs, settings
    INDEX/vectors.faiss     the FAISS index over the windows' vectors (+ vectors.faiss.json)

SQLite is the source of truth: every window's vector is committed there, in the same transaction
as its bookkeeping, so a killed run loses at most one uncommitted batch and the next run embeds only
what is missing. The FAISS file is derived: when it is behind the database it is brought up to date
(new vectors appended, or rebuilt after removals).

Tables:

- ``files``: one row per indexed path (absolute), with its size, mtime and content hash; a file
  whose size and mtime are unchanged is not read again.
- ``contents``: one row per content hash; ``complete`` once every window is embedded. Two paths with
  the same bytes share windows; a file moved or renamed is not embedded again.
- ``windows``: ``(hash, start_ms, end_ms)`` unique, with the vector (float32 bytes). Its ``id`` is the
  FAISS id.
- ``runs``: how many windows each run embedded (a check that nothing is embedded twice).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...data.video import VideoDecodeError
from .embedders import Embedder, TextQueryUnsupported
from .vectors import KINDS, VectorStore, choose_kind
from ...data.clip_config import ClipConfig
from .windows import (TIME_SCALE, WindowPlan, WindowSpec, batch_to_model_input, iter_windows, plan_span,
                      plan_windows, probe)

log = logging.getLogger(__name__)

DB_NAME = "meta.sqlite"
VECTORS_NAME = "vectors.faiss"
SCHEMA_VERSION = 1
# Folder walks pick files by extension; files named explicitly are always tried.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .m2v .ts .mts .m2ts .flv .wmv .asf .3gp .3g2 .ogv .ogg "
    ".mxf .y4m .dv .vob .nut .f4v .h264 .264 .hevc .265 .ivf .gif".split())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contents (
    hash TEXT PRIMARY KEY, complete INTEGER NOT NULL DEFAULT 0, duration REAL, num_windows INTEGER,
    width INTEGER, height INTEGER, fps REAL);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY, hash TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    vector BLOB NOT NULL, UNIQUE (hash, start_ms, end_ms));
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, root TEXT NOT NULL, hash TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS files_hash ON files (hash);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, host TEXT, pid INTEGER, embedded INTEGER NOT NULL DEFAULT 0);
"""


class IndexMismatchError(ValueError):
    """A model, window setting or index file that does not belong to this index."""


@dataclass
class Hit:
    """A moment: ``path`` from ``start`` to ``end`` seconds, ``score`` the best window's similarity;
    ``windows`` how many adjacent windows were merged into it, ``window_id`` the best one."""
    path: str
    start: float
    end: float
    score: float
    windows: int = 1
    window_id: int = -1
    file_id: int = -1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AddReport:
    """What one ``Index.add`` did. ``skipped``: (path, reason) for files that could not be read."""
    files_seen: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_reused: int = 0            # new paths whose bytes were already indexed
    files_removed: int = 0
    windows_embedded: int = 0
    windows_reused: int = 0          # windows of a resumed file that a killed run had committed
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        s = (f"{self.files_seen} files: {self.files_new} new, {self.files_changed} changed, "
             f"{self.files_unchanged} unchanged, {self.files_reused} with already indexed content, "
             f"{self.files_removed} removed; {self.windows_embedded} windows embedded"
             f"{f', {self.windows_reused} resumed' if self.windows_reused else ''} in {self.seconds:.1f} s")
        if self.skipped:
            s += f"\n{len(self.skipped)} files skipped:\n" + "\n".join(f"  {p}: {r}" for p, r in self.skipped)
        return s


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes (hex, 32 chars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()[:32]


def discover(paths: Iterable[str | Path], all_files: bool = False) -> list[tuple[Path, Path]]:
    """``(file, root)`` pairs, absolute and sorted: folders are walked (video extensions only unless
    ``all_files``), files given by name are kept whatever their extension. Missing paths raise."""
    out: dict[Path, Path] = {}
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist (expected a video file or a folder of videos)")
        p = p.resolve()
        if p.is_file():
            out.setdefault(p, p.parent)
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                f = Path(dirpath) / name
                if name.startswith(".") or not (all_files or f.suffix.lower() in VIDEO_SUFFIXES):
                    continue
                if f.is_file():
                    out.setdefault(f, p)
    return sorted(out.items())


@dataclass
class _Pending:
    hash: str
    paths: list[tuple[Path, Path, int, int]]     # (path, root, size, mtime_ns)
    plans: list[WindowPlan] = field(default_factory=list)
    info: object = None
    num_windows: int = 0


class Index:
    """Open with :meth:`open`; :meth:`add` files and folders, :meth:`search`, :meth:`remove`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, settings: dict):
        self.path = path
        self.conn = conn
        self.settings = settings
        self._store: VectorStore | None = None
        self._lock = threading.RLock()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, embedder: Embedder | None = None, *, window: WindowSpec | None = None,
             index_type: str | None = None, create: bool | None = None) -> "Index":
        """Open the index at ``path``. With ``embedder`` and no index there yet, create one (or when
        ``create=True``); an existing index refuses an embedder of another model, or another window."""
        path = Path(path)
        db = path / DB_NAME
        exists = db.exists()
        if not exists and (create is False or (create is None and embedder is None)):
            raise FileNotFoundError(f"no index at {path} (expected {db}); build one with 'videomamba index'")
        if index_type is not None and index_type not in KINDS:
            raise ValueError(f"index type must be one of {KINDS}, got {index_type!r}")
        if path.is_file():
            raise IndexMismatchError(f"{path} is a file; an index is a directory")
        if not exists and embedder is None:
            raise ValueError(f"creating an index at {path} needs a model to embed with")
        path.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(db), timeout=60, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: commits survive a killed process
        conn.executescript(_SCHEMA)
        if exists and embedder is not None and \
                conn.execute("SELECT 1 FROM settings WHERE key = 'model_id'").fetchone() is None:
            exists = False                          # a create killed before its settings were committed
        if not exists:
            window = window or WindowSpec()
            clip = embedder.clip
            settings = {
                "schema": SCHEMA_VERSION, "model_id": embedder.model_id, "model_kind": embedder.kind,
                "model_source": embedder.source or "", "dim": embedder.dim,
                "num_frames": clip.num_frames, "img_size": clip.img_size, "short_side": clip.short_side,
                "mean": list(clip.mean), "std": list(clip.std),
                "window_length": window.length, "window_stride": window.stride,
                "index_type": index_type or "auto", "generation": 0,
            }
            conn.execute("BEGIN")
            conn.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in settings.items()])
            conn.execute("COMMIT")
        settings = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM settings")}
        if "model_id" not in settings:
            raise IndexMismatchError(f"{db} holds no index settings (not a video index, or a torn create)")
        self = cls(path, conn, settings)
        if embedder is not None:
            self.check_embedder(embedder)
        if window is not None and (window.length, window.stride) != (settings["window_length"],
                                                                      settings["window_stride"]):
            raise IndexMismatchError(
                f"{path} was built with windows of {settings['window_length']} s every {settings['window_stride']} s, "
                f"not {window.length} s every {window.stride} s; use another index folder for other windows")
        if index_type is not None and index_type != settings.get("index_type"):
            self._set("index_type", index_type)
        return self

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _set(self, key: str, value) -> None:
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))
            self.settings[key] = value

    # -- identity --------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.settings["model_id"]

    @property
    def window(self) -> WindowSpec:
        return WindowSpec(self.settings["window_length"], self.settings["window_stride"])

    @property
    def clip(self) -> ClipConfig:
        s = self.settings
        return ClipConfig(num_frames=s["num_frames"], img_size=s["img_size"], short_side=s["short_side"],
                          mean=tuple(s["mean"]), std=tuple(s["std"]))

    def check_embedder(self, embedder: Embedder) -> None:
        if embedder.model_id != self.model_id:
            src = self.settings.get("model_source") or "unknown"
            raise IndexMismatchError(
                f"the index {self.path} was built with model {self.model_id} ({src}); the model given "
                f"({embedder.source or 'in memory'}) is {embedder.model_id}. Its vectors are not comparable: "
                "query with the model the index was built with, or build a new index with this one")

    # -- stats -----------------------------------------------------------------------------
    def stats(self) -> dict:
        q = self.conn.execute
        return {
            "files": q("SELECT COUNT(*) FROM files").fetchone()[0],
            "contents": q("SELECT COUNT(*) FROM contents WHERE complete = 1").fetchone()[0],
            "windows": q("SELECT COUNT(*) FROM windows").fetchone()[0],
            "embedded_total": q("SELECT COALESCE(SUM(embedded), 0) FROM runs").fetchone()[0],
            "runs": q("SELECT COUNT(*) FROM runs").fetchone()[0],
            "model_id": self.model_id, "model_kind": self.settings["model_kind"], "dim": self.settings["dim"],
            "window_length": self.settings["window_length"], "window_stride": self.settings["window_stride"],
            "index_type": self.settings.get("index_type", "auto"),
        }

    def roots(self) -> list[Path]:
        return [Path(r) for (r,) in self.conn.execute("SELECT DISTINCT root FROM files ORDER BY root")]

    def file(self, file_id: int) -> tuple[Path, Path] | None:
        row = self.conn.execute("SELECT path, root FROM files WHERE id = ?", (int(file_id),)).fetchone()
        return (Path(row[0]), Path(row[1])) if row else None

    def window_row(self, window_id: int) -> tuple[str, float, float] | None:
        row = self.conn.execute("SELECT hash, start_ms, end_ms FROM windows WHERE id = ?",
                                (int(window_id),)).fetchone()
        return (row[0], row[1] / TIME_SCALE, row[2] / TIME_SCALE) if row else None

    # -- adding ----------------------------------------------------------------------------
    def scan(self, paths: Iterable[str | Path], all_files: bool = False,
             report: AddReport | None = None) -> tuple[list[_Pending], AddReport]:
        """Sort the files under ``paths`` into unchanged, re-usable (content already indexed: the file
        row is written now) and pending (to embed); hashes files whose size or mtime changed."""
        report = report or AddReport()
        found = discover(paths, all_files)
        report.files_seen += len(found)
        pending: dict[str, _Pending] = {}
        for path, root in found:
            try:
                st = path.stat()
            except OSError as e:
                report.skipped.append((str(path), f"cannot stat ({e.strerror})"))
                continue
            row = self.conn.execute("SELECT hash, size, mtime_ns FROM files WHERE path = ?", (str(path),)).fetchone()
            if row and row[1] == st.st_size and row[2] == st.st_mtime_ns and self._complete(row[0]):
                report.files_unchanged += 1
                continue
            if st.st_size == 0:
                report.skipped.append((str(path), "empty file (0 bytes)"))
                continue
            try:
                h = content_hash(path)
            except OSError as e:
                report.skipped.append((str(path), f"cannot read ({e.strerror})"))
                continue
            if row:
                report.files_changed += 1
            else:
                report.files_new += 1
            entry = (path, root, st.st_size, st.st_mtime_ns)
            if self._complete(h):
                with self._tx():
                    self._put_file(*entry, h)
                report.files_reused += 1
                continue
            pending.setdefault(h, _Pending(h, [])).paths.append(entry)
        return list(pending.values()), report

    def add(self, paths: Iterable[str | Path], embedder: Embedder, *, prune: bool = False,
            batch_size: int = 8, progress: bool = True, all_files: bool = False) -> AddReport:
        """Embed the new and changed video files under ``paths``; ``prune`` drops indexed files that no
        longer exist. Unreadable files are skipped and listed in the report; the run goes on."""
        self.check_embedder(embedder)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        t0 = time.perf_counter()
        pending, report = self.scan(paths, all_files)
        if prune:
            report.files_removed += self.prune_missing()
        todo = self.plan(pending, report)
        self.embed(todo, embedder, batch_size, progress, report)
        self.finish()
        report.seconds = time.perf_counter() - t0
        return report

    def plan(self, pending: list[_Pending], report: AddReport) -> list[_Pending]:
        """Probe each pending content (unreadable ones go to ``report.skipped``) and list the windows it
        still needs: those a killed run committed are not embedded again."""
        todo = []
        for p in pending:
            first = p.paths[0][0]
            try:
                info, times = probe(first)
            except VideoDecodeError as e:
                report.skipped += [(str(q[0]), e.reason) for q in p.paths]
                continue
            except Exception as e:   # noqa: BLE001 - any unreadable file is skipped, never fatal
                report.skipped += [(str(q[0]), f"{type(e).__name__}: {e}") for q in p.paths]
                continue
            plans = plan_windows(info, times, self.window, self.settings["num_frames"])
            done = {(s, e) for s, e in self.conn.execute(
                "SELECT start_ms, end_ms FROM windows WHERE hash = ?", (p.hash,))}
            p.info = info
            p.num_windows = len(plans)
            p.plans = [w for w in plans if (w.start_ms, w.end_ms) not in done]
            report.windows_reused += len(plans) - len(p.plans)
            todo.append(p)
        self.register(todo)
        return todo

    def register(self, todo: list[_Pending]) -> None:
        """Record the planned contents (not complete until their last window is committed)."""
        with self._tx():
            for p in todo:
                i = p.info
                self.conn.execute(
                    "INSERT OR IGNORE INTO contents (hash, complete, duration, num_windows, width, height, fps) "
                    "VALUES (?, 0, ?, ?, ?, ?, ?)", (p.hash, i.duration, p.num_windows, i.width, i.height, i.fps))

    def finish(self) -> None:
        """Drop what no file refers to any more and bring the FAISS index up to date."""
        self._collect_garbage()
        self.sync_vectors()

    def embed(self, todo: list[_Pending], embedder: Embedder, batch_size: int, progress: bool,
               report: AddReport) -> None:
        from tqdm import tqdm

        total = sum(len(p.plans) for p in todo)
        run_id = self._start_run()
        bar = tqdm(total=total, unit="clip", desc="embedding", disable=not progress or total == 0,
                   dynamic_ncols=True, smoothing=0.1)
        batch: list[tuple[str, WindowPlan, object]] = []
        finished: list[_Pending] = []
        clip = self.clip

        def flush():
            if batch:
                inputs = batch_to_model_input([f for _, _, f in batch], clip)            # (B, 3, T, H, W)
                vecs = embedder.embed_video(inputs)                                      # (B, d)
                rows = [(h, w.start_ms, w.end_ms, v.tobytes()) for (h, w, _), v in zip(batch, vecs)]
            else:
                rows = []
            with self._tx():
                if rows:
                    self.conn.executemany("INSERT OR IGNORE INTO windows (hash, start_ms, end_ms, vector) "
                                          "VALUES (?, ?, ?, ?)", rows)
                    self.conn.execute("UPDATE runs SET embedded = embedded + ? WHERE id = ?", (len(rows), run_id))
                    self._bump()
                for p in finished:
                    self.conn.execute("UPDATE contents SET complete = 1 WHERE hash = ?", (p.hash,))
                    for entry in p.paths:
                        self._put_file(*entry, p.hash)
            report.windows_embedded += len(rows)
            bar.update(len(rows))
            batch.clear()
            finished.clear()

        try:
            for kind, p, item in _prefetch(_decode_events(todo, clip), maxsize=2 * batch_size):
                if kind == "window":
                    batch.append((p.hash, item.plan, item.frames))
                    if len(batch) >= batch_size:
                        flush()
                elif kind == "done":
                    finished.append(p)
                else:
                    report.skipped += [(str(q[0]), item) for q in p.paths]
            flush()
        finally:
            bar.close()

    # -- removing --------------------------------------------------------------------------
    def remove(self, paths: Iterable[str | Path]) -> int:
        """Forget files (or every file under a folder). Returns how many file rows went."""
        n = 0
        with self._tx():
            for p in paths:
                p = Path(p).expanduser().resolve()
                cur = self.conn.execute("DELETE FROM files WHERE path = ? OR path LIKE ? ESCAPE '\\'",
                                        (str(p), _like_prefix(p)))
                n += cur.rowcount
        self._collect_garbage()
        self.sync_vectors()
        return n

    def prune_missing(self) -> int:
        gone = [(i,) for i, p in self.conn.execute("SELECT id, path FROM files") if not Path(p).is_file()]
        with self._tx():
            self.conn.executemany("DELETE FROM files WHERE id = ?", gone)
        return len(gone)

    def _collect_garbage(self) -> None:
        """Drop contents (and their windows) that no file refers to any more."""
        with self._tx():
            cur = self.conn.execute("DELETE FROM windows WHERE hash NOT IN (SELECT hash FROM files)")
            if cur.rowcount:
                self._bump()
            self.conn.execute("DELETE FROM contents WHERE hash NOT IN (SELECT hash FROM files)")

    # -- vectors ---------------------------------------------------------------------------
    def _eligible(self) -> tuple[int, int, int]:
        """(count, id sum, id-square checksum) of windows of complete contents: what FAISS must hold."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(w.id), 0), COALESCE(SUM((w.id * w.id) % 1000000007), 0) "
            "FROM windows w JOIN contents c ON c.hash = w.hash WHERE c.complete = 1").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _vectors(self, min_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        d = int(self.settings["dim"])
        ids, blobs = [], []
        for i, v in self.conn.execute(
                "SELECT w.id, w.vector FROM windows w JOIN contents c ON c.hash = w.hash "
                "WHERE c.complete = 1 AND w.id > ? ORDER BY w.id", (min_id,)):
            ids.append(i)
            blobs.append(v)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), d) if ids else \
            np.zeros((0, d), np.float32)
        return vecs, np.asarray(ids, dtype=np.int64)

    def sync_vectors(self, save: bool = True) -> VectorStore:
        """Bring the FAISS index up to date with the database (append, or rebuild after removals or
        when the size calls for another kind), save it, and return it."""
        with self._lock:
            want = self._eligible()
            vpath = self.path / VECTORS_NAME
            store = self._store
            if store is None and vpath.exists() and Path(f"{vpath}.json").exists():
                try:
                    store = VectorStore.load(vpath)
                except Exception as e:  # noqa: BLE001 - a torn or foreign file is rebuilt
                    log.warning("%s: unreadable (%s); rebuilding it", vpath, e)
                    store = None
            requested = self.settings.get("index_type", "auto")
            if store is not None and tuple(store.params.get("holds", ())) == want and \
                    (requested == "auto" or store.kind == requested):
                self._store = store
                return store
            kind = choose_kind(want[0], requested)
            grow_ok = (store is not None and store.kind == kind and
                       (kind in ("flat", "hnsw") or want[0] <= 4 * store.params.get("trained_on", 0)))
            if grow_ok:
                max_id = int(store.params.get("max_id", 0))
                old = self.conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(w.id), 0), COALESCE(SUM((w.id * w.id) % 1000000007), 0) "
                    "FROM windows w JOIN contents c ON c.hash = w.hash WHERE c.complete = 1 AND w.id <= ?",
                    (max_id,)).fetchone()
                grow_ok = tuple(int(x) for x in old) == tuple(store.params.get("holds", ()))
            if grow_ok:
                vecs, ids = self._vectors(min_id=int(store.params.get("max_id", 0)))
                store.add(vecs, ids)
            else:
                vecs, ids = self._vectors()
                store = VectorStore.build(vecs, ids, kind) if len(ids) else VectorStore.empty(int(self.settings["dim"]))
            if len(ids):
                store.params["max_id"] = int(max(ids.max(), store.params.get("max_id", 0)))
            store.params["holds"] = list(want)
            if save:
                store.save(vpath)
            self._store = store
            return store

    # -- searching -------------------------------------------------------------------------
    def embed_query(self, query: str | np.ndarray, embedder: Embedder | None = None) -> np.ndarray:
        if isinstance(query, str):
            if self.settings["model_kind"] != "video_text":
                raise TextQueryUnsupported(
                    f"the index {self.path} was built with a classifier model, which embeds video only: "
                    "text queries need an index built with a video-text model; search by example with --like CLIP.mp4")
            if embedder is None:
                raise ValueError("a text query needs the index's model to embed it")
            self.check_embedder(embedder)
            return embedder.embed_text([query])[0]
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != int(self.settings["dim"]):
            raise IndexMismatchError(f"query vector has {q.shape[0]} dimensions; the index holds {self.settings['dim']}")
        return q

    def embed_clip(self, path: str | Path, embedder: Embedder, at: float | None = None) -> np.ndarray:
        """The vector of one window of the file ``path``: the window starting at ``at`` seconds (default:
        the first), with the index's window length."""
        self.check_embedder(embedder)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"example clip {path} does not exist")
        info, times = probe(path)
        start = 0.0 if at is None else float(at)
        if not 0 <= start < max(info.duration, 1e-9):
            raise ValueError(f"--at {start} s is outside {path} ({info.duration:.2f} s long)")
        end = min(start + self.window.length, info.duration)
        start = max(0.0, min(start, end - self.window.length))
        plan = plan_span(info, times, round(start * TIME_SCALE), round(end * TIME_SCALE),
                         self.settings["num_frames"])
        w = next(iter_windows(path, [plan], self.clip))
        return embedder.embed_video(batch_to_model_input([w.frames], self.clip))[0]

    def search(self, query: str | np.ndarray, topk: int = 10, embedder: Embedder | None = None,
               merge: bool = True, margin: float = 0.05) -> list[Hit]:
        """The ``topk`` best moments for a text (video-text indexes) or a query vector. Adjacent or
        overlapping windows of one file that score alike are merged into one moment (see
        :func:`merge_hits`); ``merge=False`` returns single windows."""
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        q = self.embed_query(query, embedder)
        store = self.sync_vectors(save=False) if self._store is None else self._store
        n = store.ntotal
        if n == 0:
            return []
        k = min(n, topk * 4 + 8)
        while True:
            with self._lock:
                scores, ids = store.search(q[None], k)
            hits = self._hits(scores[0], ids[0])
            moments = merge_hits(hits, margin, limit=topk) if merge else hits
            if len(moments) >= topk or k >= n:
                break
            k = min(n, k * 4)
        moments.sort(key=lambda h: (-h.score, h.path, h.start))
        return moments[:topk]

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        valid = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0]
        if not valid:
            return []
        marks = ",".join("?" * len(valid))
        rows = self.conn.execute(
            f"SELECT w.id, w.start_ms, w.end_ms, f.id, f.path FROM windows w JOIN files f ON f.hash = w.hash "
            f"WHERE w.id IN ({marks})", [i for _, i in valid]).fetchall()
        by_id: dict[int, list] = {}
        for wid, s, e, fid, path in rows:
            by_id.setdefault(wid, []).append((s, e, fid, path))
        out = []
        for score, wid in valid:
            for s, e, fid, path in by_id.get(wid, []):
                out.append(Hit(path, s / TIME_SCALE, e / TIME_SCALE, score, 1, wid, fid))
        return out

    # -- merging shards --------------------------------------------------------------------
    def merge_from(self, other: "Index") -> None:
        """Copy another index's contents, windows, files and run counts (same model and windows) into
        this one. Windows already here are kept (never duplicated)."""
        if other.model_id != self.model_id or other.window != self.window:
            raise IndexMismatchError(f"cannot merge {other.path} into {self.path}: other model or windows")
        with self._tx():
            for row in other.conn.execute("SELECT hash, complete, duration, num_windows, width, height, fps "
                                          "FROM contents"):
                self.conn.execute("INSERT OR IGNORE INTO contents VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                if row[1]:
                    self.conn.execute("UPDATE contents SET complete = 1 WHERE hash = ?", (row[0],))
            rows = other.conn.execute("SELECT hash, start_ms, end_ms, vector FROM windows ORDER BY hash, start_ms")
            self.conn.executemany("INSERT OR IGNORE INTO windows (hash, start_ms, end_ms, vector) VALUES (?, ?, ?, ?)",
                                  rows)
            for path, root, h, size, mtime in other.conn.execute(
                    "SELECT path, root, hash, size, mtime_ns FROM files ORDER BY path"):
                self._put_file(Path(path), Path(root), size, mtime, h)
            for started, host, pid, embedded in other.conn.execute(
                    "SELECT started, host, pid, embedded FROM runs ORDER BY id"):
                self.conn.execute("INSERT INTO runs (started, host, pid, embedded) VALUES (?, ?, ?, ?)",
                                  (started, host, pid, embedded))
            self._bump()

    # -- helpers ---------------------------------------------------------------------------
    def _complete(self, h: str) -> bool:
        row = self.conn.execute("SELECT complete FROM contents WHERE hash = ?", (h,)).fetchone()
        return bool(row and row[0])

    def _put_file(self, path: Path, root: Path, size: int, mtime_ns: int, h: str) -> None:
        self.conn.execute(
            "INSERT INTO files (path, root, hash, size, mtime_ns) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET root = excluded.root, hash = excluded.hash, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns", (str(path), str(root), h, int(size), int(mtime_ns)))

    def _bump(self) -> None:
        g = int(self.settings.get("generation", 0)) + 1
        self.conn.execute("INSERT OR REPLACE INTO settings VALUES ('generation', ?)", (json.dumps(g),))
        self.settings["generation"] = g

    def _start_run(self) -> int:
        import socket

        with self._tx():
            cur = self.conn.execute("INSERT INTO runs (started, host, pid, embedded) VALUES (?, ?, ?, 0)",
                                    (time.time(), socket.gethostname(), os.getpid()))
        return int(cur.lastrowid)

    def _tx(self):
        return _Transaction(self.conn, self._lock)

    def export_rows(self) -> list[tuple]:
        """(path, start_ms, end_ms, vector bytes) of every indexed window, sorted: two indexes holding
        the same files and windows export the same rows."""
        return sorted(self.conn.execute(
            "SELECT f.path, w.start_ms, w.end_ms, w.vector FROM windows w JOIN files f ON f.hash = w.hash"))


def _decode_events(todo: list[_Pending], clip: ClipConfig) -> Iterator[tuple[str, _Pending, object]]:
    """("window", content, Window) for every planned window, then ("done", content, None), or
    ("skip", content, reason) when the file breaks part-way: a broken file never stops the run."""
    for p in todo:
        try:
            for w in iter_windows(p.paths[0][0], p.plans, clip):
                yield "window", p, w
        except VideoDecodeError as e:
            yield "skip", p, e.reason
            continue
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001
            yield "skip", p, f"{type(e).__name__}: {e}"
            continue
        yield "done", p, None


_END = object()


def _prefetch(events: Iterator, maxsize: int) -> Iterator:
    """Run ``events`` in a thread, at most ``maxsize`` items ahead: decoding (FFmpeg, resizing; both
    release the GIL) overlaps the model's forward pass, and memory stays bounded by the queue."""
    import queue

    q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for e in events:
                if not put(("ok", e)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(("error", exc))
            return
        put(("ok", _END))

    t = threading.Thread(target=work, name="videomamba-decode", daemon=True)
    t.start()
    try:
        while True:
            status, item = q.get()
            if status == "error":
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, lock):
        self.conn, self.lock = conn, lock

    def __enter__(self):
        self.lock.acquire()
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *_):
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()


def _like_prefix(p: Path) -> str:
    s = str(p).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return s.rstrip("/") + "/%"


def merge_hits(hits: list[Hit], margin: float = 0.05, gap: float = 0.0, limit: int | None = None) -> list[Hit]:
    """Moments from window hits, best first. In score order, a window that overlaps or touches (within
    ``gap`` s) a moment of its file joins it when its score is within ``margin`` of the moment's best;
    one that overlaps a moment but scores lower is dropped (a weaker view of that moment); any other
    window starts a moment. Stops at ``limit`` moments."""
    moments: list[Hit] = []
    by_file: dict[tuple[int, str], list[Hit]] = {}
    for h in sorted(hits, key=lambda h: (-h.score, h.path, h.start)):
        group = by_file.setdefault((h.file_id, h.path), [])
        near = [m for m in group if h.start <= m.end + gap and h.end >= m.start - gap]
        if near:
            m = near[0]
            if h.score >= m.score - margin:
                m.start, m.end, m.windows = min(m.start, h.start), max(m.end, h.end), m.windows + h.windows
            continue
        if limit is not None and len(moments) >= limit:
            continue
        m = Hit(h.path, h.start, h.end, h.score, h.windows, h.window_id, h.file_id)
        moments.append(m)
        group.append(m)
    return moments
