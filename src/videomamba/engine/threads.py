"""``train.threads: auto``: use all of torch's threads or one, whichever is faster *now*, and re-decide online.

Small models on a CPU with few cores gain from a second thread only while the cores are idle: on 2
cores the demo's model ran ~1.6x faster with 2 threads on a quiet machine, and several times *slower*
than with one as soon as another process was busy, because every parallel region waits for a thread
that the scheduler has put aside. Load comes and goes during a run, so the choice is never final:

- **trials**: ``trial`` steps with one thread, then ``trial`` with all of them (the first step after a
  switch pays for waking or parking the pool and is not timed). The many-thread trial stops early
  when it is already clearly losing (its median over twice the one-thread median): next to a busy
  neighbour it would only lose time. Two threads win only when they are faster by more than
  ``margin``; otherwise one thread is kept (it cannot collapse next to a neighbour).
- **online watch**: between trials, the median of the last ``window`` step times is compared with the
  time the chosen setting had in its trial; when it drifts by more than ``drift`` either way (a
  neighbour started or stopped), a new trial starts at once instead of at the next scheduled one.
- **scheduled trials**: every ``every`` steps, doubling (up to ``max_every``) while the choice holds,
  back to ``every`` when it changes: a neighbour that left shows up even when the one-thread time did
  not move.
- **the start is confirmed**: the first steps of a run carry one-off costs (allocations, kernel caches,
  a thread pool that has never run), so the first choice is tried once more ``4 * trial`` steps
  later; when it holds, the schedule goes on as if that check had not run.

The OpenMP side of the same problem (threads that spin while waiting) is ``videomamba.runtime``'s.
"""
from __future__ import annotations

import statistics
import time
from collections import deque

import torch


CONFIRM = "confirming the start"


class ThreadTuner:
    """Call :meth:`before_step` and :meth:`after_step` around every optimizer step.

    ``after_step`` returns a message when a trial ends with a new choice (or with the first one),
    else None. ``set_threads`` is the setter (``torch.set_num_threads``) and ``clock`` the timer
    (``time.perf_counter``); both replaceable in tests."""

    def __init__(self, many: int, trial: int = 6, every: int = 500, max_every: int = 4000,
                 window: int = 20, drift: float = 1.5, margin: float = 0.9,
                 set_threads=torch.set_num_threads, clock=None):
        if many < 2:
            raise ValueError(f"ThreadTuner needs at least 2 threads to choose from, got {many}")
        if trial < 3:
            raise ValueError(f"trial must be >= 3 (one untimed step after a switch), got {trial}")
        if every < 2 * trial or max_every < every:
            raise ValueError(f"need every >= 2 * trial and max_every >= every, got trial={trial}, "
                             f"every={every}, max_every={max_every}")
        if window < 3 or drift <= 1.0 or not 0.0 < margin <= 1.0:
            raise ValueError(f"need window >= 3, drift > 1 and 0 < margin <= 1, got {window}, {drift}, {margin}")
        self.many, self.trial, self.base_every, self.max_every = many, trial, every, max_every
        self.window, self.drift, self.margin = window, drift, margin
        self._set, self._clock = set_threads, clock or time.perf_counter
        self.choice = many
        self.every = every
        self.trials = 0                  # finished trials
        self.history: list[tuple[int, int, str]] = []    # (step, choice, why) of every decision
        self._current: int | None = None
        self._k = 0                      # steps seen
        self._t0 = 0.0
        self._phase: int | None = 1      # threads under trial now, None outside a trial
        self._phase_steps = 0
        self._why = "start"
        self._times: dict[int, list[float]] = {many: [], 1: []}
        self._ref: float | None = None   # the chosen setting's step time in its trial
        self._since = 0                  # steps since the last trial ended
        self._recent: deque = deque(maxlen=window)
        self._confirm_pending = False    # the start's choice is tried once more, 4 * trial steps later
        self._first_k = 0

    # ------------------------------------------------------------------ step hooks
    def before_step(self) -> None:
        want = self._phase or self.choice
        if want != self._current:
            self._set(want)
            self._current = want
        self._t0 = self._clock()

    def after_step(self) -> str | None:
        dt = self._clock() - self._t0
        self._k += 1
        if self._phase is None:
            return self._watch(dt)
        self._phase_steps += 1
        if self._phase_steps > 1:        # the first step after a switch is not timed
            self._times[self._phase].append(dt)
        if self._phase == 1:
            if self._phase_steps >= self.trial:
                self._phase, self._phase_steps = self.many, 0
            return None
        one = statistics.median(self._times[1])
        mine = self._times[self.many]
        losing = len(mine) >= 2 and statistics.median(mine) > 2.0 * one
        if self._phase_steps >= self.trial or losing:
            return self._decide(one, statistics.median(mine))
        return None

    # ------------------------------------------------------------------ internals
    def _start_trial(self, why: str) -> None:
        self._phase, self._phase_steps, self._why = 1, 0, why
        self._times = {self.many: [], 1: []}

    def _decide(self, one: float, many: float) -> str | None:
        before, first = self.choice, self.trials == 0
        self.choice = self.many if many < self.margin * one else 1
        self._ref = many if self.choice == self.many else one
        self.trials += 1
        self._phase, self._since = None, 0
        self._recent.clear()
        changed = self.choice != before
        if self._why == CONFIRM and not changed:     # the schedule goes on as if the check had not run
            self._since = self._k - self._first_k
        else:
            self.every = self.base_every if changed else min(2 * self.every, self.max_every)
        if first:
            self._first_k, self._confirm_pending = self._k, True
        self.history.append((self._k, self.choice, self._why))
        if not first and not changed:
            return None
        return (f"threads auto: {self.choice} ({1000 * many:.0f} ms/step with {self.many} threads, "
                f"{1000 * one:.0f} ms with 1; {self._why})")

    def _watch(self, dt: float) -> None:
        self._since += 1
        self._recent.append(dt)
        if len(self._recent) == self.window and self._ref:
            now = statistics.median(self._recent)
            if now > self.drift * self._ref or now * self.drift < self._ref:
                self._start_trial(f"step time went from {1000 * self._ref:.0f} to {1000 * now:.0f} ms")
                return None
        if self._confirm_pending and self._since >= 4 * self.trial:
            self._confirm_pending = False
            self._start_trial(CONFIRM)
        elif self._since >= self.every:
            self._start_trial("scheduled")
        return None
