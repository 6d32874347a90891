"""Benchmark harness: VideoMamba against the models users would pick instead.

It lives in the repository's ``benchmarks/``, outside the installed package; the front end is
``python benchmarks/run.py ...`` (:mod:`harness.cli`). Every configuration runs in its own
subprocess (:mod:`harness.child`) so that its peak memory is its own; the parent
(:mod:`harness.runner`) enforces a time and a memory budget and records "timeout" or "oom" instead
of hanging. :mod:`harness.suite` holds the grids (``--quick`` and full), :mod:`harness.analysis` the
exponent fits, roofline and target checks, and :mod:`harness.report` the markdown page and plots.

``transformers`` (peers) and ``matplotlib`` (plots) are imported lazily (``pip install -e ".[bench]"``).
"""
from .analysis import fit_exponent

__all__ = ["fit_exponent"]
