"""train.threads: auto -- the tuner's schedule and choice (fake clock), and a run that uses it."""
import pytest
import torch

from videomamba.engine import ConfigError, train
from videomamba.engine import threads as threads_mod
from videomamba.engine.threads import ThreadTuner

from .toy import TINY_MODEL, ToyVideos


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _drive(tuner, clock, cost, steps):
    """Run ``steps`` fake steps whose duration depends on the thread count in force; return the messages."""
    msgs = []
    for _ in range(steps):
        tuner.before_step()
        clock.t += cost[tuner._current]
        msgs.append(tuner.after_step())
    return msgs


@pytest.mark.parametrize("cost,choice", [({2: 0.05, 1: 0.08}, 2), ({2: 0.30, 1: 0.10}, 1)])
def test_tuner_times_both_and_keeps_the_faster(monkeypatch, cost, choice):
    clock = FakeClock()
    monkeypatch.setattr(threads_mod.time, "perf_counter", clock)
    calls = []
    tuner = ThreadTuner(2, trial=4, every=20, set_threads=calls.append)
    msgs = _drive(tuner, clock, cost, 20)
    # steps 0-3 with 2 threads, 4-7 with 1, then the choice until step 19
    assert calls[:2] == [2, 1] and tuner.choice == choice
    assert calls == ([2, 1, 2] if choice == 2 else [2, 1])
    assert [i for i, m in enumerate(msgs) if m] == [7]
    assert msgs[7] == (f"threads auto: {choice} ({1000 * cost[2]:.0f} ms/step with 2 threads, "
                       f"{1000 * cost[1]:.0f} ms with 1)")
    # the next trial starts at step 20 and can change the choice when the load changes
    flipped = {2: cost[1], 1: cost[2]}
    msgs = _drive(tuner, clock, flipped, 8)
    assert msgs[7] is not None and tuner.choice == 3 - choice


def test_tuner_ignores_the_first_step_after_a_switch(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(threads_mod.time, "perf_counter", clock)
    tuner = ThreadTuner(2, trial=3, every=10, set_threads=lambda n: None)
    durations = iter([9.0, 0.2, 0.2, 9.0, 0.1, 0.1])   # steps 0 and 3 pay for the switch
    for _ in range(6):
        tuner.before_step()
        clock.t += next(durations)
        tuner.after_step()
    assert tuner.choice == 1       # 0.1 s with 1 thread beats 0.2 s with 2; the 9 s outliers were not timed


def test_tuner_validates():
    with pytest.raises(ValueError, match="at least 2 threads"):
        ThreadTuner(1)
    with pytest.raises(ValueError, match="every >= 2 \\* trial"):
        ThreadTuner(2, trial=8, every=10)


def test_train_with_threads_auto(tmp_path):
    prev = torch.get_num_threads()
    msgs = []
    ov = {**TINY_MODEL, "data.num_frames": 4, "data.img_size": 32, "data.batch_size": 2, "data.num_workers": 0,
          "augment.mixup": 0, "augment.cutmix": 0, "optim.epochs": 1, "train.threads": "auto",
          "train.progress": "log", "train.plots": False, "train.out_dir": str(tmp_path / "run")}
    try:
        torch.set_num_threads(2)
        res = train(None, ov, train_dataset=ToyVideos(40), log=msgs.append)   # 20 steps: one trial of 8 + 8
        assert torch.get_num_threads() == 2     # whatever the tuner chose last, the pool is given back
    finally:
        torch.set_num_threads(prev)
    assert res.step == 20
    assert sum("threads auto:" in m for m in msgs) == 1, msgs
    with pytest.raises(ConfigError, match="train.threads"):
        train(None, {**ov, "train.threads": "many"}, train_dataset=ToyVideos(40), log=msgs.append)
