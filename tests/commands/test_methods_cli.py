"""``videomamba train --distill-teacher``, ``pretrain`` and ``analyze`` end to end, in-process, on
real (synthetic) video files."""
import json

import pytest

from videomamba.cli import main


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):      # tests/conftest.py: tiny models, a loaded machine
    yield


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["make-synthetic", str(root), "--per-class", "4", "--frames", "8", "--size", "32",
                 "--classes", "move_left", "move_right"]) == 0
    return root


def _common(synth, out):
    return [f"data.train={synth / 'train.csv'}", f"data.val={synth / 'val.csv'}", f"data.root={synth}",
            f"data.classes={synth / 'classes.txt'}", "data.img_size=32", "data.num_frames=8", "data.batch_size=2",
            "data.num_workers=0", "model.embed_dim=16", "model.depth=2", "train.progress=none", "train.plots=false",
            "train.max_steps=2", "optim.epochs=1", f"train.out_dir={out}"]


@pytest.fixture(scope="module")
def teacher(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "-c", "demo", *_common(synth, out)]) == 0
    return out / "model"


def test_train_with_distill_teacher(synth, teacher, tmp_path):
    out = tmp_path / "student"
    assert main(["train", "-c", "demo", *_common(synth, out), "model.embed_dim=24",
                 "--distill-teacher", str(teacher), "--distill-weight", "0.5"]) == 0
    cfg = (out / "config.yaml").read_text()
    assert f"teacher: {teacher}" in cfg and "weight: 0.5" in cfg
    assert json.loads((out / "model" / "config.json").read_text())["embed_dim"] == 24


def test_pretrain_then_reorder_and_delta(synth, teacher, tmp_path, capsys):
    out = tmp_path / "pt"
    assert main(["pretrain", "-c", "demo", *_common(synth, out), "--teacher", str(teacher),
                 "--mask-type", "tube", "--mask-ratio", "0.5"]) == 0
    assert f"pretrained encoder: {out / 'model'}" in capsys.readouterr().out
    assert main(["pretrain", "-c", "demo", *_common(synth, out)]) == 2          # no teacher: clear error
    assert "no teacher: give --teacher" in capsys.readouterr().err

    assert main(["analyze", "reorder", str(synth / "val.csv"), "--root", str(synth), "-k", str(teacher),
                 "--workers", "0", "-o", str(tmp_path / "reorder")]) == 0
    table = capsys.readouterr().out
    for line in ("original     1,2,3,4,5,6,7,8", "block-wise   5,6,7,8,1,2,3,4",
                 "pairwise     1,2,7,8,5,6,3,4", "interleaved  1,8,2,7,3,6,4,5"):
        assert line in table
    res = json.loads((tmp_path / "reorder" / "reorder_results.json").read_text())
    assert res["results"]["original"]["count"] == 2

    video = next((synth / "videos").rglob("*.mp4"))
    assert main(["analyze", "delta", str(video), "-k", str(teacher), "-o", str(tmp_path / "delta"),
                 "--layers", "0,1"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "delta" / f"{video.stem}_grid.png").is_file()
    assert (tmp_path / "delta" / f"{video.stem}.gif").is_file()
    assert f"png:       {tmp_path / 'delta' / (video.stem + '_grid.png')}" in printed
    assert main(["analyze", "delta", str(video), "-k", str(teacher), "--layers", "0,x"]) == 2
    assert "--layers must be comma-separated integers" in capsys.readouterr().err


def test_scan_orders(synth, tmp_path, capsys):
    out = tmp_path / "scan"
    assert main(["analyze", "scan-orders", "-c", "demo", *_common(synth, tmp_path / "ignored"), "-o", str(out),
                 "--variants", "temporal_first", "temporal_reversal"]) == 0
    printed = capsys.readouterr().out
    assert "temporal_first       temporal_first     full_flip" in printed
    assert "temporal_reversal    spatial_first      temporal_reversal" in printed
    rows = json.loads((out / "scan_orders.json").read_text())["variants"]
    assert set(rows) == {"temporal_first", "temporal_reversal"}
    assert json.loads((out / "temporal_reversal" / "model" / "config.json").read_text())["backward_order"] == \
        "temporal_reversal"
