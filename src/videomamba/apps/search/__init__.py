"""Video search: index folders of video as overlapping windows, find moments by text or by example.

``Index`` (FAISS + SQLite) is the Python API: ``Index.open(path, embedder)``, ``add``, ``search``,
``remove``. ``load_embedder(model_path)`` wraps a video-text model (text and example queries) or a
classifier (example queries). The CLI is ``videomamba index | search | serve``.
"""
from .embedders import Embedder, TextQueryUnsupported, load_embedder, model_id
from .index import AddReport, Hit, Index, IndexMismatchError, merge_hits
from .windows import WindowSpec, clip_spec

__all__ = ["AddReport", "Embedder", "Hit", "Index", "IndexMismatchError", "TextQueryUnsupported",
           "WindowSpec", "clip_spec", "load_embedder", "merge_hits", "model_id"]
