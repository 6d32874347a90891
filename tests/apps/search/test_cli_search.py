"""videomamba index / search from the command line, in-process; torchrun with 2 CPU processes."""
import json
import os

import numpy as np
import pytest

from _torchrun import run_torchrun
from videomamba.apps.search import Index
from videomamba.cli import main


def test_index_then_search_like(tmp_path, motion_dir, classifier_dir, capsys):
    ix = tmp_path / "ix"
    args = ["index", str(motion_dir), "-k", str(classifier_dir), "-o", str(ix), "--window", "2", "--stride", "1",
            "--no-progress", "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["windows_embedded"] == 22 and rep["files_new"] == 2
    # again, without -k: the index remembers its model; nothing new
    assert main(["index", str(motion_dir), "-o", str(ix), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["windows_embedded"] == 0
    a = str(motion_dir / "a.mp4")
    assert main(["search", str(ix), "--like", a, "--at", "6", "--topk", "3", "--json", "--no-merge"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["path"] == a and out["hits"][0]["start"] == 6.0 and len(out["hits"]) == 3
    assert main(["search", str(ix), "--like", a, "--topk", "2"]) == 0
    assert "a.mp4" in capsys.readouterr().out
    # text on a classifier index: a clear refusal, exit status 2
    assert main(["search", str(ix), "a car turning left"]) == 2
    assert "classifier" in capsys.readouterr().err
    # another model is refused
    other = tmp_path / "other"
    import videomamba

    from .helpers import tiny_classifier
    videomamba.save_pretrained(tiny_classifier(seed=1), other)
    assert main(["search", str(ix), "--like", a, "-k", str(other)]) == 2
    assert "built with model" in capsys.readouterr().err
    assert main(["search", str(ix)]) == 2 and "either a text query or --like" in capsys.readouterr().err


def test_torchrun_two_processes_equals_one(tmp_path, motion_dir, classifier_dir):
    from .helpers import write_motion_video

    write_motion_video(motion_dir / "c.mp4", ["right", "down"], seconds_each=2)
    (motion_dir / "broken.mp4").write_bytes(b"\x00" * 100)
    single = tmp_path / "single"
    assert main(["index", str(motion_dir), "-k", str(classifier_dir), "-o", str(single), "--window", "2",
                 "--stride", "1", "--no-progress"]) == 0
    multi = tmp_path / "multi"
    p = run_torchrun(["-m", "videomamba", "index", str(motion_dir), "-k", str(classifier_dir), "-o", str(multi),
                      "--window", "2", "--stride", "1", "--no-progress", "--json"])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rep = json.loads(p.stdout[p.stdout.index("{"):])
    assert rep["windows_embedded"] == 15 + 7 + 3 and [os.path.basename(s[0]) for s in rep["skipped"]] == ["broken.mp4"]
    assert not (multi / "shards").exists()
    with Index.open(single) as s, Index.open(multi) as m:
        a, b = s.export_rows(), m.export_rows()
        assert [r[:3] for r in a] == [r[:3] for r in b] and len(a) == 25
        for x, y in zip(a, b):
            np.testing.assert_allclose(np.frombuffer(x[3], np.float32), np.frombuffer(y[3], np.float32), atol=1e-5)
        assert m.stats()["embedded_total"] == 25 and m.sync_vectors().ntotal == 25
        q = np.frombuffer(a[3][3], np.float32)
        assert [(h.path, h.start) for h in s.search(q, 5)] == [(h.path, h.start) for h in m.search(q, 5)]


def test_text_search_with_the_libraries_video_text_model(tmp_path, motion_dir, capsys):
    """Mechanics with the real video-text class (untrained): the score of a hit is the model's own
    similarity, encode_video(window) . encode_text(query), with the window decoded independently."""
    pytest.importorskip("tokenizers")
    import torch

    import videomamba
    from videomamba.data import transforms as TF
    from videomamba.data.video import decode_video

    from .helpers import tiny_video_text

    model_dir = tiny_video_text(tmp_path / "vt")
    ix = tmp_path / "ix"
    assert main(["index", str(motion_dir), "-k", str(model_dir), "-o", str(ix), "--window", "2", "--stride", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", str(ix), "a square moving to the left", "--topk", "3", "--json", "--no-merge"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    model = videomamba.create_model(None, pretrained=str(model_dir)).eval()
    h = hits[0]
    from videomamba.apps.search.windows import plan_span, probe

    info, times = probe(h["path"])
    plan = plan_span(info, times, round(1000 * h["start"]), round(1000 * h["end"]), 4)
    frames = decode_video(h["path"], list(plan.indices), layout="TCHW").frames
    x = TF.normalize(TF.center_crop(TF.resize_short_side(frames, 32), 32)).unsqueeze(0)
    with torch.no_grad():
        expected = float(model.encode_video(x)[0] @ model.encode_text(["a square moving to the left"])[0])
    assert h["score"] == pytest.approx(expected, abs=1e-5)
