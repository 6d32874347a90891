"""Absolute paths out of result files: what the writers and ``benchmarks/scrub_paths.py`` use.

A path inside the repository becomes repo-relative (``/…/repo/benchmarks/x.json`` ->
``benchmarks/x.json``); one inside the Python environment's packages becomes
``<site-packages>/…``; one in a temporary directory becomes ``<tmp>/…`` (its random directory name
dropped); the user's home becomes ``~``.
"""
from __future__ import annotations

import json
import os
import re
import site
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# an absolute path as it appears in text: /dir/... under one of the usual roots
ABSOLUTE = re.compile(r"(?<![\w.~<>-])/(?:home|root|tmp|work|Users|usr|opt|var|mnt|srv|data|scratch)(?:/[^\s\"'`,;)\]}]*)?")


def _prefixes(repo: Path) -> list[tuple[str, str]]:
    """(absolute prefix, replacement), longest first: the environment's packages (which may sit inside
    the repository), then the repository."""
    pairs = []
    for p in {sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib"),
              *(site.getsitepackages() if hasattr(site, "getsitepackages") else [])}:
        if p:
            pairs.append((str(Path(p)), "<site-packages>"))
    pairs.append((str(repo), ""))
    return sorted(pairs, key=lambda kv: -len(kv[0]))


def scrub_text(text: str, repo: Path = REPO) -> str:
    """``text`` with every absolute path made relative (see the module's docstring)."""
    for prefix, repl in _prefixes(Path(repo)):
        if repl == "":
            text = re.sub(re.escape(prefix) + r"(/|(?=[\s\"'`]|$))", lambda m: "" if m.group(1) else ".", text)
        else:
            text = text.replace(prefix, repl)
    # a temporary directory's random name says nothing: <tmp>/rest
    tmp = re.escape(str(Path(tempfile.gettempdir())))
    text = re.sub(tmp + r"/([^/\s\"']+)(/|(?=[\s\"']|$))",
                  lambda m: "<tmp>/" if m.group(2) else f"<tmp>/{m.group(1)}", text)   # a file right in it: kept
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        text = re.sub(re.escape(home) + r"(?=/|[\s\"']|$)", "~", text)
    return text


def scrub(obj, repo: Path = REPO):
    """A JSON value with every string scrubbed (keys included)."""
    if isinstance(obj, str):
        return scrub_text(obj, repo)
    if isinstance(obj, list):
        return [scrub(x, repo) for x in obj]
    if isinstance(obj, dict):
        return {scrub_text(k, repo): scrub(v, repo) for k, v in obj.items()}
    return obj


def absolute_paths(obj) -> list[str]:
    """Every absolute path left in a JSON value or a text."""
    if isinstance(obj, str):
        return ABSOLUTE.findall(obj)
    if isinstance(obj, list):
        return [p for x in obj for p in absolute_paths(x)]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in absolute_paths(k) + absolute_paths(v)]
    return []


def scrub_file(path: Path, write: bool = True, repo: Path = REPO) -> list[str]:
    """Scrub one file in place (atomically); returns the absolute paths it held."""
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        found = absolute_paths(data)
        new = json.dumps(scrub(data, repo), indent=_indent(text)) + ("\n" if text.endswith("\n") else "")
    else:
        found = absolute_paths(text)
        new = scrub_text(text, repo)
    if write and found and new != text:
        from videomamba.fileio import atomic_write_text
        atomic_write_text(path, new)
    return found


def write_result(path, data, indent: int = 2) -> str:
    """Write a result file (JSON, repo-relative paths, atomically); returns its path as printed."""
    from videomamba.fileio import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(scrub(data), indent=indent) + "\n")
    return str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)


def print_result(data, path, write: bool = True) -> None:
    """Print a script's result as JSON and, unless ``write`` is false (probes), write it to ``path``."""
    print(json.dumps(data, indent=2))
    if write:
        print(f"wrote {write_result(path, data)}")


def _indent(text: str) -> int | None:
    m = re.match(r"[\[{]\n( +)", text)
    return len(m.group(1)) if m else None


