import pytest

pytest.importorskip("av")
pytest.importorskip("faiss")

from .helpers import MotionTextModel, tiny_classifier, write_motion_video  # noqa: E402


@pytest.fixture
def motion_dir(tmp_path):
    """Two videos: one moves left, right, up, down (4 s each); the other up, then left."""
    d = tmp_path / "videos"
    (d / "sub").mkdir(parents=True)
    write_motion_video(d / "a.mp4", ["left", "right", "up", "down"])
    write_motion_video(d / "sub" / "b.mp4", ["up", "left"])
    (d / "notes.txt").write_text("not a video")
    return d


@pytest.fixture
def text_embedder():
    from videomamba.apps.search import Embedder

    return Embedder(MotionTextModel(), "cpu", source="motion-text")


@pytest.fixture
def classifier_dir(tmp_path):
    import videomamba

    out = tmp_path / "classifier"
    videomamba.save_pretrained(tiny_classifier(), out)
    return out
