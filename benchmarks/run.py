#!/usr/bin/env python
"""Benchmarks of issue 6: ``python benchmarks/run.py [--quick|--full] ...``.

The same as ``videomamba benchmark ...``; the harness lives in ``videomamba.bench`` (one
definition). See benchmarks/README.md.
"""
import sys

from videomamba.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
