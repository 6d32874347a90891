"""kill -9 while indexing, then again: the index equals an uninterrupted run, nothing embedded twice."""
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from videomamba.apps.search import Embedder, Index, WindowSpec

from .helpers import MotionTextModel

CHILD = Path(__file__).with_name("slow_index_child.py")


def _windows(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_equals_uninterrupted(tmp_path, motion_dir):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(motion_dir), str(killed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _windows(killed / "meta.sqlite") < 5:     # a.mp4 has 15 windows: killed inside the first file
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "child made no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    committed = _windows(killed / "meta.sqlite")
    assert 5 <= committed < 22

    emb = Embedder(MotionTextModel(), "cpu", source="motion-text")
    with Index.open(killed, emb) as ix:
        rep = ix.add([motion_dir], emb, progress=False)
        assert rep.windows_embedded == 22 - committed and rep.windows_reused == committed
        assert emb.model.video_calls == 22 - committed
        st = ix.stats()
        assert st["windows"] == 22 and st["embedded_total"] == 22 and st["files"] == 2
        resumed = ix.export_rows()
        hits = [h.to_dict() for h in ix.search("left", 3, emb)]
    with Index.open(tmp_path / "clean", emb, window=WindowSpec(2, 1)) as ref:
        ref.add([motion_dir], emb, progress=False)
        clean = ref.export_rows()
        assert [h.to_dict() for h in ref.search("left", 3, emb)] == hits
    assert [r[:3] for r in resumed] == [r[:3] for r in clean]
    for a, b in zip(resumed, clean):
        np.testing.assert_allclose(np.frombuffer(a[3], np.float32), np.frombuffer(b[3], np.float32), atol=1e-6)
