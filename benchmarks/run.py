#!/usr/bin/env python
"""Benchmarks: ``python benchmarks/run.py [--quick|--full|one|report|list] ...`` (see benchmarks/README.md).

The harness is the ``harness`` package next to this file, outside the installed library.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
