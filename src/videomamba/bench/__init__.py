"""Benchmark harness: VideoMamba against the models users would pick instead (issue 6).

One definition, three front ends: ``videomamba benchmark ...``, ``python benchmarks/run.py ...``
and the functions below. Every configuration runs in its own subprocess
(:mod:`videomamba.bench.child`) so that its peak memory is its own; the parent
(:mod:`videomamba.bench.runner`) enforces a time and a memory budget and records "timeout" or
"oom" instead of hanging. :mod:`videomamba.bench.suite` holds the grids (``--quick`` and full),
:mod:`videomamba.bench.analysis` the exponent fits, roofline and target checks, and
:mod:`videomamba.bench.report` the markdown page and PNG plots.

Nothing here is imported by ``import videomamba``; ``transformers`` (peers) and ``matplotlib``
(plots) are optional and imported lazily (``pip install -e ".[bench]"``).
"""
from .analysis import fit_exponent

__all__ = ["fit_exponent"]
