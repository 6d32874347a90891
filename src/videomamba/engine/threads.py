"""``train.threads: auto``: time training steps with all of torch's threads and with one, keep the faster.

Small models on a CPU with few cores gain from a second thread only while the cores are idle: on 2
cores, the demo's model ran ~1.6x faster with 2 threads on a quiet machine, and 5-8x *slower* than
with one as soon as another process was busy, because every parallel region waits for a thread that
the scheduler has put aside. Load changes during a run, so the choice is re-made periodically:
every ``every`` steps, ``trial`` steps run with ``many`` threads and ``trial`` with one, and the
lower median step time wins until the next trial.
"""
from __future__ import annotations

import statistics
import time

import torch


class ThreadTuner:
    """Call :meth:`before_step` and :meth:`after_step` around every optimizer step.

    ``after_step`` returns a message (the choice and the timings) when the first trial ends and when a
    later one changes the choice, else None.
    ``set_threads`` is the setter (``torch.set_num_threads``; replaceable in tests)."""

    def __init__(self, many: int, trial: int = 8, every: int = 1000, set_threads=torch.set_num_threads):
        if many < 2:
            raise ValueError(f"ThreadTuner needs at least 2 threads to choose from, got {many}")
        if trial < 2 or every < 2 * trial:
            raise ValueError(f"need trial >= 2 and every >= 2 * trial, got trial={trial}, every={every}")
        self.many, self.trial, self.every = many, trial, every
        self._set = set_threads
        self.choice = many
        self._current: int | None = None
        self._k = 0                      # steps seen
        self._t0 = 0.0
        self._times: dict[int, list[float]] = {many: [], 1: []}

    def _phase(self) -> int | None:
        """Threads the current step is a trial of, or None outside a trial."""
        w = self._k % self.every
        if w < self.trial:
            return self.many
        if w < 2 * self.trial:
            return 1
        return None

    def before_step(self) -> None:
        want = self._phase() or self.choice
        if want != self._current:
            self._set(want)
            self._current = want
        self._t0 = time.perf_counter()

    def after_step(self) -> str | None:
        dt = time.perf_counter() - self._t0
        phase = self._phase()
        self._k += 1
        if phase is None:
            return None
        # the first step after a switch pays for waking or parking the thread pool: not timed
        if self._k % self.every not in (1, self.trial + 1):
            self._times[phase].append(dt)
        if self._k % self.every != 2 * self.trial:
            return None
        many, one = (statistics.median(self._times[n]) for n in (self.many, 1))
        self._times = {self.many: [], 1: []}
        first, before = self._k == 2 * self.trial, self.choice
        self.choice = self.many if many < one else 1
        if not first and self.choice == before:
            return None
        return (f"threads auto: {self.choice} ({1000 * many:.0f} ms/step with {self.many} threads, "
                f"{1000 * one:.0f} ms with 1)")
