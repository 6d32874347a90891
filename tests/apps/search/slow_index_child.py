"""Child process for the kill -9 test: indexes a folder with the motion model, slowly (one window per
commit, a pause per window), so that the parent can kill it part-way."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.apps.search.helpers import MotionTextModel  # noqa: E402
from videomamba.apps.search import Embedder, Index, WindowSpec  # noqa: E402


_encode = MotionTextModel.encode_video


def _slow_encode(self, x):
    time.sleep(0.05)
    return _encode(self, x)


MotionTextModel.encode_video = _slow_encode     # same class, same model id: only slower


if __name__ == "__main__":
    videos, index = sys.argv[1], sys.argv[2]
    emb = Embedder(MotionTextModel(), "cpu", source="motion-text")
    with Index.open(index, emb, window=WindowSpec(2, 1)) as ix:
        print(ix.add([videos], emb, batch_size=1, progress=False).windows_embedded)
