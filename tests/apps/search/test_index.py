"""Index: text and example search find the right motion; incremental adds; skipped files; refusals."""
import os
import shutil

import numpy as np
import pytest

from videomamba.apps.search import Embedder, Hit, Index, IndexMismatchError, TextQueryUnsupported, WindowSpec
from videomamba.apps.search import load_embedder, merge_hits

from .helpers import MotionConfig, MotionTextModel, write_motion_video

W = WindowSpec(2, 1)


def test_text_search_finds_the_motion(tmp_path, motion_dir, text_embedder):
    ix = Index.open(tmp_path / "ix", text_embedder, window=W)
    rep = ix.add([motion_dir], text_embedder, progress=False)
    # a.mp4 (16 s) and b.mp4 (8 s): windows of 2 s every 1 s -> 15 + 7; notes.txt is not a video
    assert rep.files_seen == 2 and rep.files_new == 2 and rep.windows_embedded == 22 and not rep.skipped
    a, b = str(motion_dir / "a.mp4"), str(motion_dir / "sub" / "b.mp4")
    left = ix.search("where does the car turn left?", 2, text_embedder)
    # a moves left during 0-4 s, b during 4-8 s
    assert {(h.path, h.start, h.end) for h in left} == {(a, 0.0, 4.0), (b, 4.0, 8.0)}
    down = ix.search("going down", 1, text_embedder)[0]
    # the window 11-13 s ends the upward move at the top and starts the downward one there: it moved down
    assert down.path == a and 11.0 <= down.start <= 12.0 and down.end == 16.0 and down.windows >= 3
    up = ix.search("up", 2, text_embedder)
    assert {(h.path, h.start, h.end) for h in up} == {(a, 8.0, 12.0), (b, 0.0, 4.0)}
    # single windows without merging all lie inside the moment
    singles = ix.search("left", 3, text_embedder, merge=False)
    assert all(h.windows == 1 and h.end - h.start == 2.0 for h in singles)
    # by example: the window of b.mp4 moving left finds the left-moving windows
    q = ix.embed_clip(motion_dir / "sub" / "b.mp4", text_embedder, at=5.0)
    assert {(h.path, h.start) for h in ix.search(q, 2)} == {(a, 0.0), (b, 4.0)}
    assert ix.sync_vectors().ntotal == 22


def test_incremental_add_change_copy_prune(tmp_path, motion_dir, text_embedder):
    model = text_embedder.model
    ix = Index.open(tmp_path / "ix", text_embedder, window=W)
    ix.add([motion_dir], text_embedder, progress=False)
    calls = model.video_calls
    rep = ix.add([motion_dir], text_embedder, progress=False)
    assert rep.files_unchanged == 2 and rep.windows_embedded == 0 and model.video_calls == calls
    # a new file: only its windows are embedded
    write_motion_video(motion_dir / "c.mp4", ["right"], seconds_each=3)
    rep = ix.add([motion_dir], text_embedder, progress=False)
    assert rep.files_new == 1 and rep.windows_embedded == 2 and model.video_calls == calls + 2
    # the same bytes under another name: nothing to embed
    shutil.copy(motion_dir / "c.mp4", motion_dir / "copy_of_c.mp4")
    rep = ix.add([motion_dir], text_embedder, progress=False)
    assert rep.files_reused == 1 and rep.windows_embedded == 0 and ix.stats()["files"] == 4
    # a changed file: its new windows replace the old
    write_motion_video(motion_dir / "c.mp4", ["down"], seconds_each=5)
    rep = ix.add([motion_dir], text_embedder, progress=False)
    assert rep.files_changed == 1 and rep.windows_embedded == 4
    c = str(motion_dir / "c.mp4")
    assert ix.search("down", 1, text_embedder)[0].path in (c, str(motion_dir / "a.mp4"))
    # deleted files leave only with --prune
    os.remove(motion_dir / "copy_of_c.mp4")
    assert ix.add([motion_dir], text_embedder, progress=False).files_removed == 0
    rep = ix.add([motion_dir], text_embedder, progress=False, prune=True)
    assert rep.files_removed == 1 and ix.stats()["files"] == 3
    # the copy's old content (c's first version) has no file left: its windows are gone
    st = ix.stats()
    assert st["windows"] == 15 + 7 + 4 == ix.sync_vectors().ntotal
    assert st["embedded_total"] == 15 + 7 + 2 + 4       # nothing embedded twice
    assert ix.remove([motion_dir / "sub"]) == 1
    assert ix.stats()["windows"] == 19 == ix.sync_vectors().ntotal
    assert all(h.path != str(motion_dir / "sub" / "b.mp4") for h in ix.search("left", 5, text_embedder))


def test_reopen_searches_from_saved_vectors(tmp_path, motion_dir, text_embedder):
    with Index.open(tmp_path / "ix", text_embedder, window=W) as ix:
        ix.add([motion_dir], text_embedder, progress=False)
        before = [h.to_dict() for h in ix.search("right", 3, text_embedder)]
    assert (tmp_path / "ix" / "vectors.faiss").exists()
    with Index.open(tmp_path / "ix") as ix:
        assert [h.to_dict() for h in ix.search("right", 3, text_embedder)] == before


def test_bad_files_are_skipped_listed_and_counted(tmp_path, motion_dir, text_embedder):
    good = (motion_dir / "a.mp4").read_bytes()
    (motion_dir / "empty.mp4").write_bytes(b"")
    (motion_dir / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (motion_dir / "garbage.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    ix = Index.open(tmp_path / "ix", text_embedder, window=W)
    rep = ix.add([motion_dir], text_embedder, progress=False)
    assert sorted(os.path.basename(p) for p, _ in rep.skipped) == ["empty.mp4", "garbage.mkv", "truncated.mp4"]
    assert rep.windows_embedded == 22 and ix.stats()["files"] == 2
    assert "3 files skipped" in rep.summary() and "empty file" in rep.summary()


def test_other_model_is_refused(tmp_path, motion_dir, text_embedder):
    ix = Index.open(tmp_path / "ix", text_embedder, window=W)
    ix.add([motion_dir], text_embedder, progress=False)
    other = Embedder(MotionTextModel(MotionConfig(num_frames=6)), "cpu", source="other")
    with pytest.raises(IndexMismatchError, match="built with model"):
        ix.search("left", 3, other)
    with pytest.raises(IndexMismatchError, match="built with model"):
        Index.open(tmp_path / "ix", other)
    with pytest.raises(IndexMismatchError, match="windows of 2"):
        Index.open(tmp_path / "ix", text_embedder, window=WindowSpec(4, 2))


def test_classifier_index_by_example_only(tmp_path, motion_dir, classifier_dir):
    emb = load_embedder(classifier_dir, device="cpu")
    assert emb.kind == "classifier" and emb.dim == 32
    ix = Index.open(tmp_path / "ix", emb, window=W)
    ix.add([motion_dir], emb, progress=False)
    with pytest.raises(TextQueryUnsupported, match="--like"):
        ix.search("left", 3, emb)
    q = ix.embed_clip(motion_dir / "a.mp4", emb, at=3.0)
    top = ix.search(q, 1, emb, merge=False)[0]
    assert (top.path, top.start) == (str(motion_dir / "a.mp4"), 3.0) and top.score == pytest.approx(1.0, abs=1e-4)


def test_merge_hits_by_hand():
    hits = [Hit("a", 0, 2, 0.90, window_id=1), Hit("a", 1, 3, 0.88, window_id=2), Hit("a", 2, 4, 0.70, window_id=3),
            Hit("a", 6, 8, 0.80, window_id=4), Hit("b", 1, 3, 0.85, window_id=5)]
    got = [(h.path, h.start, h.end, h.score, h.windows, h.window_id) for h in merge_hits(hits, margin=0.05)]
    # (2, 4) overlaps the first moment but scores 0.2 below it: dropped, not a moment of its own
    assert got == [("a", 0, 3, 0.90, 2, 1), ("b", 1, 3, 0.85, 1, 5), ("a", 6, 8, 0.80, 1, 4)]
    assert len(merge_hits(hits, limit=2)) == 2


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_index_type_override_gives_the_exact_results_here(tmp_path, motion_dir, text_embedder, kind):
    ix = Index.open(tmp_path / "ix", text_embedder, window=W)
    ix.add([motion_dir], text_embedder, progress=False)
    exact = [h.to_dict() for h in ix.search("right", 3, text_embedder, merge=False)]
    ix.close()
    ix = Index.open(tmp_path / "ix", index_type=kind)
    assert ix.sync_vectors().kind == kind
    got = [h.to_dict() for h in ix.search("right", 3, text_embedder, merge=False)]
    assert [(h["path"], h["start"]) for h in got] == [(h["path"], h["start"]) for h in exact]
