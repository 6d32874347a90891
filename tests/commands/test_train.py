"""In-process CLI tests on a tiny synthetic set: train (1 epoch), eval, predict, resume, NaN stop,
bad configs, DDP through torchrun, and the demo end to end at toy size."""
import json
from pathlib import Path

import pytest

from _torchrun import run_torchrun
from videomamba.cli import main

TINY = ["model.embed_dim=32", "model.depth=2", "model.patch_size=8", "data.img_size=32", "data.num_frames=4",
        "data.batch_size=4", "data.num_workers=0", "train.progress=log", "train.log_every=1"]
CLASSES = ["move_left", "move_right", "grow", "shrink"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):      # tests/conftest.py: tiny models, a loaded machine
    yield


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from videomamba.data import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp("synth"), classes=CLASSES, per_class=4, frames=8, size=32)


def _data_args(synth):
    return [f"data.train={synth['train']}", f"data.val={synth['val']}", f"data.root={synth['root']}",
            f"data.classes={synth['classes']}"]


@pytest.fixture(scope="module")
def run_dir(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "-c", "demo", *_data_args(synth), *TINY, "optim.epochs=1", "-o", str(out)])
    assert rc == 0
    return out


def test_train_one_epoch_writes_everything(run_dir, synth):
    ck = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert len(ck) == 1 and (run_dir / "checkpoints" / "best.pt").is_file()
    for f in ("model/model.safetensors", "model/config.json", "metrics.jsonl", "metrics.csv", "config.yaml",
              "summary.json", "curves.png", "confusion.png"):
        assert (run_dir / f).is_file(), f
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    n_train = len(Path(synth["train"]).read_text().splitlines())
    steps = n_train // 4
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, steps + 1))
    val = [r for r in recs if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["n"] == len(Path(synth["val"]).read_text().splitlines())
    cfg = json.loads((run_dir / "model" / "config.json").read_text())
    assert cfg["extra"]["classes"] == CLASSES and cfg["num_classes"] == 4 and cfg["embed_dim"] == 32


def test_eval_json_and_files(run_dir, synth, capsys, tmp_path):
    rc = main(["eval", str(synth["val"]), "--checkpoint", str(run_dir / "model"), "--root", str(synth["root"]),
               "--clips", "2", "--workers", "0", "--shuffle-frames", "--json", "-o", str(tmp_path)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    n_val = len(Path(synth["val"]).read_text().splitlines())
    assert res["n"] == n_val and res["views"] == {"clips": 2, "crops": 1}
    assert sum(map(sum, res["confusion"])) == n_val and list(res["per_class"]) == CLASSES
    assert 0 <= res["top1"] <= res["top5"] <= 100 and "shuffled" in res
    for f in ("eval_results.json", "confusion.png", "per_class.csv", "confusion_shuffled.png"):
        assert (tmp_path / f).is_file(), f
    # a training checkpoint works as well as the exported directory, with the same numbers
    ck = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    rc = main(["eval", str(synth["val"]), "-k", str(ck), "--root", str(synth["root"]), "--clips", "2",
               "--workers", "0", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["top1"] == res["top1"]


def test_predict_table_json_and_labels(run_dir, synth, capsys, tmp_path):
    videos = [str(Path(synth["root"]) / line.split(",")[0]) for line in Path(synth["val"]).read_text().splitlines()[:2]]
    assert main(["predict", *videos, "--checkpoint", str(run_dir / "model"), "--topk", "3", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in preds] == videos
    for p in preds:
        scores = [t["score"] for t in p["top"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
        assert all(t["label"] in CLASSES for t in p["top"])
    labels = tmp_path / "labels.txt"
    labels.write_text("A\nB\nC\nD\n")
    assert main(["predict", videos[0], "-k", str(run_dir / "model"), "--topk", "9", "--labels", str(labels),
                 "--clips", "3"]) == 0
    head, *table = capsys.readouterr().out.splitlines()
    # the header is the video's path, videos/<class>/<class>_NNN.mp4, so it holds a checkpoint class name:
    # look for the checkpoint's names in the ranked rows only
    assert head == f"{videos[0]}  (3 views)"
    assert [r.split()[0] for r in table] == ["1.", "2.", "3.", "4."]     # topk 9 capped at the 4 classes
    assert sorted(r.split()[1] for r in table) == list("ABCD")            # every label from --labels, once
    assert not any(c in r for r in table for c in CLASSES)                # no name from the checkpoint
    # a 40-frame video, 5x longer than the training clips, is fine: clips spread over it
    from videomamba.data.synthetic import render_class_video, write_mp4
    long = tmp_path / "long.mp4"
    write_mp4(long, render_class_video("grow", 0, frames=40, size=32))
    assert main(["predict", str(long), "-k", str(run_dir / "model"), "--clips", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["views"] == 4


def test_resume_continues_a_finished_run(run_dir, synth, tmp_path):
    import shutil
    out = tmp_path / "cont"
    shutil.copytree(run_dir, out)
    steps = json.loads((out / "summary.json").read_text())["step"]
    # a bare --resume followed by overrides: the overrides are not taken for its CKPT
    rc = main(["train", "-c", str(out / "config.yaml"), "--resume", "optim.epochs=2", f"train.out_dir={out}"])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 2 * steps
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, 2 * steps + 1))


def test_non_finite_loss_stops_with_the_step(synth, tmp_path, monkeypatch, capsys):
    from videomamba.engine import tasks
    orig = tasks.ClassificationTask.train_step
    calls = {"n": 0}

    def poisoned(self, model, batch, device):
        out = orig(self, model, batch, device)
        calls["n"] += 1
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(tasks.ClassificationTask, "train_step", poisoned)
    rc = main(["train", "-c", "demo", *_data_args(synth), *TINY, "optim.epochs=2", "train.checkpoint_every=1",
               "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 3 and "non-finite loss (nan) at step 3" in err and "step_00000002.pt" in err
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))[-1] == "step_00000002.pt"


def _printed_config(capsys, argv):
    import yaml
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("argv", [
    ["train", "optim.lr=0.5", "data.batch_size=3", "-c", "demo", "--epochs", "7", "--print-config"],
    ["train", "-c", "demo", "--epochs", "7", "--print-config", "optim.lr=0.5", "data.batch_size=3"],
    ["train", "-c", "demo", "optim.lr=0.5", "--epochs", "7", "data.batch_size=3", "--print-config"],
    ["train", "-c", "demo", "--resume", "optim.lr=0.5", "--epochs", "7", "data.batch_size=3", "--print-config"],
    ["pretrain", "-c", "demo", "--teacher", "t", "optim.lr=0.5", "--epochs", "7", "data.batch_size=3",
     "--print-config"],
])
def test_overrides_before_between_and_after_options(capsys, argv):
    cfg = _printed_config(capsys, argv)
    assert (cfg["optim"]["lr"], cfg["data"]["batch_size"], cfg["optim"]["epochs"]) == (0.5, 3, 7)


def test_overrides_anywhere_keep_their_order_and_reach_every_command(capsys):
    from videomamba.cli import build_parser
    # later overrides win, wherever the options sit between them
    cfg = _printed_config(capsys, ["train", "optim.lr=0.1", "-c", "demo", "optim.lr=0.2", "--print-config",
                                   "optim.lr=0.3"])
    assert cfg["optim"]["lr"] == 0.3
    p = build_parser()
    a = p.parse_args(["demo", "a.b=1", "-o", "x", "c.d=2", "--epochs", "1", "e.f=3"])
    assert a.overrides == ["a.b=1", "c.d=2", "e.f=3"] and (a.out, a.epochs) == ("x", 1)
    a = p.parse_args(["analyze", "scan-orders", "a.b=1", "-c", "demo", "c.d=2", "-o", "x", "e.f=3"])
    assert a.overrides == ["a.b=1", "c.d=2", "e.f=3"] and (a.config, a.out) == ("demo", "x")
    a = p.parse_args(["train", "--resume", "a.b=1"])                    # bare --resume, then an override
    assert (a.resume, a.overrides) == ("auto", ["a.b=1"])
    a = p.parse_args(["pretrain", "--res", "a.b=1", "-c", "demo"])      # an abbreviation, another command
    assert (a.resume, a.overrides, a.config) == ("auto", ["a.b=1"], "demo")
    a = p.parse_args(["train", "--resume", "runs/x/step_1.pt", "a.b=1"])
    assert (a.resume, a.overrides) == ("runs/x/step_1.pt", ["a.b=1"])
    a = p.parse_args(["predict", "a.mp4", "-k", "m", "b.mp4"])            # other positionals too
    assert a.videos == ["a.mp4", "b.mp4"]
    with pytest.raises(SystemExit):
        p.parse_args(["train", "a.b=1", "--bogus", "c.d=2"])             # unknown options still fail
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["optim.lrr=1"], "unknown key 'optim.lrr' (did you mean 'lr'?)"),
    (["data.batch_size=zero"], "data.batch_size: expected an integer, got 'zero'"),
    (["train.amp=fp16", "train.device=cpu"], "train.amp=fp16 is not supported on CPU"),
    (["data.train=null"], "data.train is not set"),
    (["-c", "nonexistent_config"], "neither a file nor a packaged config"),
    (["data.batch_size=64"], "is larger than the 12 training videos"),
])
def test_bad_config_messages(synth, tmp_path, capsys, args, needle):
    base = ["train", "-c", "demo", *_data_args(synth), *TINY, "-o", str(tmp_path)]
    if args[0] == "-c":
        base = ["train", *args, "-o", str(tmp_path)]
    else:
        base += args
    assert main(base) == 2
    assert needle in capsys.readouterr().err


def test_ddp_torchrun_module_entry(synth, tmp_path):
    p = run_torchrun(["-m", "videomamba", "train", "-c", "demo", *_data_args(synth), *TINY, "data.batch_size=2",
           "optim.epochs=1", "train.threads=1", "-o", str(tmp_path)])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["world_size"] == 2 and s["replica_max_abs_diff"] == 0.0 and s["step"] == 3   # 12 videos / (batch 2 x 2 ranks)
    assert p.stdout.count("videomamba train:") == 1                                    # rank 0 reports


def test_demo_end_to_end_at_toy_size(tmp_path, capsys):
    rc = main(["demo", "-o", str(tmp_path), "--per-class", "2", "--epochs", "1", *TINY])
    assert rc == 0
    s = json.loads((tmp_path / "demo_summary.json").read_text())
    for k in ("val_top1", "shuffled_top1", "within_pair_accuracy", "shuffled_within_pair_accuracy"):
        assert k in s
    assert Path(s["paths"]["model"], "model.safetensors").is_file() and Path(s["paths"]["eval"]).is_file()
    out = capsys.readouterr().out
    assert "validation top-1" in out and "frames shuffled" in out and "checkpoint" in out
