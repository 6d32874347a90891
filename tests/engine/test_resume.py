"""Interrupted runs resume to the same weights as an uninterrupted run (deterministic mode).

A real subprocess SIGKILLs itself mid-epoch (no cleanup, no flush); SIGTERM is delivered in-process
to the trainer's handler (a clean stop with a checkpoint). Both kill points are callbacks after
optimizer step k, not timers, so the tests do not depend on the machine's speed or load.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videomamba.engine import NonFiniteLossError, TrainingInterrupted, train
from videomamba.engine.state import load_training_checkpoint, step_checkpoints

from toy import TINY_MODEL, ToyVideos

SCRIPT = Path(__file__).with_name("run_script.py")
FRAMES, SIZE = 4, 16           # 2 x 2 patches of 8 px per frame: 16 tokens + cls
N_TRAIN = 12                   # 12 videos / (batch 2 x accum 2) = 3 optimizer steps per epoch, 6 in all


def _toy(n, train=True):
    return ToyVideos(n, frames=FRAMES, size=SIZE, train=train)


def _overrides(out_dir, **extra):
    o = {**TINY_MODEL, "model.drop_path_rate": 0.2, "data.num_frames": FRAMES, "data.img_size": SIZE,
         "data.batch_size": 2, "data.num_workers": 0, "augment.mixup": 0, "augment.cutmix": 0,
         "augment.label_smoothing": 0.1, "optim.epochs": 2, "optim.lr": 2e-3, "optim.accum_steps": 2,
         "optim.clip_grad": 1.0, "optim.warmup_steps": 3, "train.ema": True, "train.ema_decay": 0.9,
         "train.deterministic": True, "train.threads": 1, "train.checkpoint_every": 2, "train.keep_last": 2,
         "train.log_every": 1, "train.out_dir": str(out_dir), "train.progress": "none", "train.plots": False}
    o.update(extra)
    return o


def _run_script(overrides, *args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), json.dumps(overrides), "--n", str(N_TRAIN), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _records(out_dir):
    drop = {"clips_per_s", "step_time_s", "time_s"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: 3 steps per epoch, 6 in all; checkpoints at 2, 3 (epoch end), 4 and 6."""
    out = tmp_path_factory.mktemp("ref")
    ref = train(None, _overrides(out), train_dataset=_toy(N_TRAIN), val_dataset=_toy(8, train=False))
    assert ref.step == 6
    return ref


def _assert_same_run(ref, res):
    assert res.step == ref.step
    a, b = ref.model.state_dict(), res.model.state_dict()             # EMA weights (ema_eval)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    raw_ref = torch.load(ref.checkpoint, weights_only=True)["model"]
    raw_res = torch.load(res.checkpoint, weights_only=True)["model"]
    for k in raw_ref:
        assert torch.equal(raw_ref[k], raw_res[k]), k
    assert res.metrics["top1"] == ref.metrics["top1"] and res.metrics["loss"] == ref.metrics["loss"]
    # the log of the resumed run equals the uninterrupted one: no duplicated or missing records
    assert _records(res.out_dir) == _records(ref.out_dir)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, reference):
    # checkpoints at steps 2, 3 (epoch end) and 4; a real process SIGKILLs itself right after step 5
    # (its log record may be written, its checkpoint never is)
    out = tmp_path / "killed"
    p = _run_script(_overrides(out), "--kill-at", "5")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]          # really killed by SIGKILL
    steps = [s for s, _ in step_checkpoints(out)]
    assert steps == [3, 4], steps                                     # keep_last=2; step 5 never saved
    st = load_training_checkpoint(out / "checkpoints" / "step_00000004.pt")
    assert (st["epoch"], st["step_in_epoch"]) == (1, 1)               # mid-epoch: 1 of 3 steps into epoch 2

    res = train(None, _overrides(out), resume=True, train_dataset=_toy(N_TRAIN), val_dataset=_toy(8, train=False))
    _assert_same_run(reference, res)


def test_sigterm_stops_cleanly_with_a_checkpoint_then_resumes(tmp_path, reference):
    out = tmp_path / "term"
    ov = _overrides(out, **{"train.checkpoint_every": 0})
    before = signal.getsignal(signal.SIGTERM)

    def sigterm_after_step_1(state):
        if state["step"] == 1:
            # the trainer's handler is installed, so this process survives the signal
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None, before)
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as ei:
        train(None, ov, train_dataset=_toy(N_TRAIN), val_dataset=_toy(8, train=False),
              callbacks=[sigterm_after_step_1])
    assert signal.getsignal(signal.SIGTERM) == before                 # the handler was restored
    assert "interrupted: stopped after step 2" in str(ei.value)
    assert ei.value.step == 2 and ei.value.checkpoint == out / "checkpoints" / "step_00000002.pt"
    steps = [s for s, _ in step_checkpoints(out)]
    assert steps == [2], steps                      # signalled after step 1: step 2 finished and was saved
    st = load_training_checkpoint(out / "checkpoints" / "step_00000002.pt")
    assert (st["epoch"], st["step_in_epoch"]) == (0, 2)               # mid-epoch
    res = train(None, ov, resume=True, train_dataset=_toy(N_TRAIN), val_dataset=_toy(8, train=False))
    _assert_same_run(reference, res)


def test_resume_from_epoch_end_and_different_checkpoint(tmp_path):
    """Resuming from an explicit epoch-end checkpoint file also reproduces the run."""
    ov = _overrides(tmp_path / "a", **{"train.ema": False, "optim.accum_steps": 1, "optim.epochs": 2,
                                        "train.checkpoint_every": 0, "train.keep_last": 5})
    ref = train(None, ov, train_dataset=_toy(8), val_dataset=None)
    (first_step, first), (last_step, _) = step_checkpoints(tmp_path / "a")
    assert (first_step, last_step) == (4, 8)                          # 8 videos / batch 2: 4 steps per epoch
    ov2 = {**ov, "train.out_dir": str(tmp_path / "b")}
    res = train(None, ov2, resume=first, train_dataset=_toy(8), val_dataset=None)
    assert res.step == ref.step == 8
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ov = _overrides(tmp_path, **{"optim.accum_steps": 1, "train.checkpoint_every": 2, "train.keep_last": 5})
    calls = {"n": 0}

    def poison(state):  # after step 3 completes, break the weights: step 4's loss is NaN
        if state["step"] == 3:
            calls["n"] += 1
            with torch.no_grad():
                for p in model_ref["m"].parameters():
                    p.fill_(float("nan"))

    model_ref = {}
    from videomamba.engine import trainer as T
    orig = T._Trainer._setup_model

    def spy(self):
        orig(self)
        model_ref["m"] = self.model

    T._Trainer._setup_model = spy
    try:
        with pytest.raises(NonFiniteLossError) as ei:
            train(None, ov, train_dataset=_toy(N_TRAIN), val_dataset=None, callbacks=[poison])
    finally:
        T._Trainer._setup_model = orig
    e = ei.value
    assert e.step == 4 and "step 4" in str(e) and "step_00000002.pt" in str(e)
    assert [s for s, _ in step_checkpoints(tmp_path)] == [2]          # nothing written after the bad step
    st = load_training_checkpoint(tmp_path / "checkpoints" / "step_00000002.pt")
    assert all(torch.isfinite(v).all() for v in st["model"].values())
