"""train.threads: auto -- the tuner's schedule and choice (fake clock), and a run that uses it."""
import pytest
import torch

from videomamba.engine import ConfigError, train
from videomamba.engine.threads import ThreadTuner

from toy import TINY_MODEL, ToyVideos


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
def test_tuner_times_both_and_keeps_the_faster(cost, choice):
    clock = FakeClock()
    calls = []
    tuner = ThreadTuner(2, trial=4, every=20, set_threads=calls.append, clock=clock)
    msgs = _drive(tuner, clock, cost, 20)
    # steps 0-3 with 1 thread, then 2 threads from step 4; the first step of each is not timed
    assert calls[:2] == [1, 2] and tuner.choice == choice
    if choice == 2:       # 4 steps with 2 threads: the decision after step 7
        assert calls == [1, 2] and [i for i, m in enumerate(msgs) if m] == [7]
        assert msgs[7] == ("threads auto: 2 (50 ms/step with 2 threads, 80 ms with 1; start)")
    else:                 # two timed steps at 300 ms > 2 x 100 ms: the 2-thread trial stops early, after step 6
        assert calls == [1, 2, 1] and [i for i, m in enumerate(msgs) if m] == [6]
        assert msgs[6] == ("threads auto: 1 (300 ms/step with 2 threads, 100 ms with 1; start)")
    # the next scheduled trial can change the choice when the load has changed
    flipped = {2: cost[1], 1: cost[2]}
    msgs = _drive(tuner, clock, flipped, 60)
    assert any(msgs) and tuner.choice == 3 - choice


def test_tuner_prefers_one_thread_when_two_barely_win():
    clock = FakeClock()
    tuner = ThreadTuner(2, trial=4, every=20, set_threads=lambda n: None, clock=clock)
    _drive(tuner, clock, {2: 0.075, 1: 0.080}, 10)      # 2 threads 6 % faster: within the 10 % margin
    assert tuner.choice == 1
    tuner = ThreadTuner(2, trial=4, every=20, set_threads=lambda n: None, clock=clock)
    _drive(tuner, clock, {2: 0.070, 1: 0.080}, 10)      # 12.5 % faster: worth the second thread
    assert tuner.choice == 2


def test_tuner_ignores_the_first_step_after_a_switch():
    clock = FakeClock()
    tuner = ThreadTuner(2, trial=3, every=10, set_threads=lambda n: None, clock=clock)
    durations = iter([9.0, 0.1, 0.1, 9.0, 0.2, 0.2])   # steps 0 and 3 pay for the switch
    for _ in range(6):
        tuner.before_step()
        clock.t += next(durations)
        tuner.after_step()
    assert tuner.trials == 1 and tuner.choice == 1   # 0.1 s with 1 thread beats 0.2 s; the 9 s outliers untimed


def test_tuner_reacts_online_to_a_neighbour_and_returns_when_it_leaves():
    """A CPU-bound neighbour arrives at step 200 (2 threads collapse from 50 to 500 ms/step, 1 thread
    slows from 80 to 90 ms) and leaves at step 1200. The tuner notices the collapse from the step times
    within a window, not at the next scheduled trial, and goes back to 2 threads after the neighbour left."""
    clock = FakeClock()
    tuner = ThreadTuner(2, trial=4, every=50, max_every=200, window=20, set_threads=lambda n: None, clock=clock)
    quiet, busy = {2: 0.05, 1: 0.08}, {2: 0.50, 1: 0.09}
    choices, spent = [], {"quiet": 0.0, "busy": 0.0}
    for step in range(2000):
        cost = busy if 200 <= step < 1200 else quiet
        t0 = clock.t
        tuner.before_step()
        clock.t += cost[tuner._current]
        tuner.after_step()
        spent["busy" if 200 <= step < 1200 else "quiet"] += clock.t - t0
        choices.append(tuner.choice)
    assert choices[199] == 2
    switched = choices.index(1, 200)
    assert switched <= 200 + 10 + 4 + 3      # half a window of slow steps, a 1-thread trial, 3 steps of 2 threads
    assert all(c == 1 for c in choices[switched:1200])
    back = choices.index(2, 1200)
    assert back <= 1200 + 200 + 8            # the next scheduled trial (at most max_every steps away)
    # the cost of reacting: the busy phase took at most 25 % over 1 thread throughout (1000 x 90 ms)
    assert spent["busy"] <= 1.25 * 1000 * 0.09
    # and the scheduled trials cost the quiet phases at most 10 % over 2 threads throughout
    assert spent["quiet"] <= 1.10 * 1000 * 0.05
    # the switch came from the online watch, not from a scheduled trial: once half of the 20-step window
    # was slow, its median (50 + 500) / 2 ms passed 1.5 x 50 ms
    (why,) = [w for k, c, w in tuner.history if k == switched + 1]
    assert why == "step time went from 50 to 275 ms"


def test_tuner_validates():
    with pytest.raises(ValueError, match="at least 2 threads"):
        ThreadTuner(1)
    with pytest.raises(ValueError, match="every >= 2 \\* trial"):
        ThreadTuner(2, trial=8, every=10)
    with pytest.raises(ValueError, match="drift > 1"):
        ThreadTuner(2, drift=1.0)


def test_train_with_threads_auto(tmp_path):
    prev = torch.get_num_threads()
    msgs = []
    ov = {**TINY_MODEL, "data.num_frames": 4, "data.img_size": 32, "data.batch_size": 2, "data.num_workers": 0,
          "augment.mixup": 0, "augment.cutmix": 0, "optim.epochs": 1, "train.threads": "auto",
          "train.progress": "log", "train.plots": False, "train.out_dir": str(tmp_path / "run")}
    try:
        torch.set_num_threads(2)
        res = train(None, ov, train_dataset=ToyVideos(40), log=msgs.append)   # 20 steps: one trial of 6 + 6
        assert torch.get_num_threads() == 2     # whatever the tuner chose last, the pool is given back
    finally:
        torch.set_num_threads(prev)
    assert res.step == 20
    assert sum("threads auto:" in m for m in msgs) == 1, msgs
    with pytest.raises(ConfigError, match="train.threads"):
        train(None, {**ov, "train.threads": "many"}, train_dataset=ToyVideos(40), log=msgs.append)


def test_tuner_confirms_the_start_soon():
    """The first 2-thread steps of a run pay one-off costs (here 400 ms instead of 50): the start picks
    1 thread, and the check 4 x trial steps later goes back to 2, not the scheduled trial 500 steps on."""
    clock = FakeClock()
    tuner = ThreadTuner(2, trial=4, every=500, set_threads=lambda n: None, clock=clock)
    seen = {"two": 0}
    msgs = []
    for _ in range(60):
        tuner.before_step()
        if tuner._current == 2:
            seen["two"] += 1
            clock.t += 0.40 if seen["two"] <= 4 else 0.05      # warm-up of the 2-thread pool
        else:
            clock.t += 0.08
        msgs.append(tuner.after_step())
    said = [m for m in msgs if m]
    assert said[0].startswith("threads auto: 1 (") and said[0].endswith("; start)")
    assert said[1] == "threads auto: 2 (50 ms/step with 2 threads, 80 ms with 1; confirming the start)"
    assert tuner.choice == 2 and [c for _, c, _ in tuner.history] == [1, 2]
    assert tuner.history[1][0] <= tuner.history[0][0] + 4 * 4 + 2 * 4      # the check, then its own trial


def test_tuner_confirmation_that_holds_leaves_the_schedule_as_it_was():
    """When the check agrees with the start, the scheduled trials come at the steps they would have
    come without it: ``every`` after the first decision, then doubling."""
    clock = FakeClock()
    tuner = ThreadTuner(2, trial=4, every=50, max_every=400, set_threads=lambda n: None, clock=clock)
    _drive(tuner, clock, {2: 0.05, 1: 0.08}, 400)
    steps = [k for k, _, _ in tuner.history]
    whys = [w for _, _, w in tuner.history]
    assert whys[:3] == ["start", "confirming the start", "scheduled"]
    first = steps[0]
    # the first scheduled trial starts every (after the start: doubled to 100) steps after the start's
    # decision and takes 4 + 4 steps; the next one 200 steps after that decision
    assert steps[2] == first + 100 + 8 and steps[3] == steps[2] + 200 + 8
