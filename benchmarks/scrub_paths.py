#!/usr/bin/env python
"""Committed result files hold repo-relative paths only: find absolute paths in them, and rewrite them.

    python benchmarks/scrub_paths.py                  # rewrite every JSON / markdown file under benchmarks/results
    python benchmarks/scrub_paths.py --check          # list what would change; exit status 1 if anything would
    python benchmarks/scrub_paths.py FILE ...         # these files only

A path inside the repository becomes repo-relative (``/…/repo/benchmarks/x.json`` ->
``benchmarks/x.json``); one inside the Python environment's packages becomes
``<site-packages>/…``; one in a temporary directory becomes ``<tmp>/…`` (its random directory name
dropped); the user's home becomes ``~``. JSON files are rewritten value by value (keys too), so
their structure never changes; other text files line by line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file

from harness.paths import REPO, absolute_paths, scrub, scrub_file, scrub_text  # noqa: E402,F401

RESULTS = REPO / "benchmarks" / "results"


def result_files(root: Path = RESULTS) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".json", ".md") and p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="default: every .json / .md under benchmarks/results")
    ap.add_argument("--check", action="store_true", help="only list; exit status 1 if any absolute path is found")
    args = ap.parse_args(argv)
    files = args.files or result_files()
    bad = 0
    for f in files:
        if not f.is_file():
            print(f"scrub_paths: {f}: no such file", file=sys.stderr)
            return 2
        found = scrub_file(f, write=not args.check)
        if found:
            bad += 1
            rel = f.resolve().relative_to(REPO) if f.resolve().is_relative_to(REPO) else f
            print(f"{rel}: {len(found)} absolute path(s)" + ("" if args.check else ", rewritten")
                  + f", e.g. {found[0]}")
    return 1 if args.check and bad else 0


if __name__ == "__main__":
    sys.exit(main())
