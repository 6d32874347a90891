"""Annotation formats -> a list of :class:`Sample` (path, label, extra) and a class-name list.

Formats (``fmt``):

- ``"csv"`` (aliases ``"kinetics"``, ``"breakfast"``, ``"coin"``): one video per line, ``path,label``
  or space-separated ``path label`` (the first line decides; a path with spaces needs the comma form,
  quoted if it holds a comma). Blank lines and ``#`` comments are ignored. An optional header line
  (``path,label``, ``video,class``...) is skipped; ``header=True/False`` overrides the guess. The label
  is an integer class index or a class name. Relative paths are resolved against ``root`` (a path
  prefix) or, when ``root`` is None, the annotation file's folder.
- ``"ssv2"``: Something-Something V2's ``train.json`` / ``validation.json`` (a list of objects with
  ``id`` and ``template``) plus its labels JSON (``{"Approaching something with your camera": "0"}``),
  given as ``labels=`` or found beside the file as ``something-something-v2-labels.json`` or
  ``labels.json``. The video of entry ``id`` is ``root/<id>.webm`` (``video_ext=``). The template's
  brackets are dropped to match the labels' keys. (SSv2 as a ``path label`` list is ``"csv"``.)
- ``"hmdb51"``: the official split files ``<class>_test_split<k>.txt`` (lines ``video.avi 1|2|0``,
  1 = train, 2 = test, 0 = unused); ``path`` is their folder (or any one of them, whose split number
  is then used); ``split=1..3``, ``subset="train"|"test"``. Videos are ``root/<class>/<video>``;
  classes are the 51 names in sorted order.
- ``"lvu"``: ``path,label,duration`` (duration in seconds). Labels are integers (classification: relation,
  speaking, scene, director, genre, writer, year) or floats (regression: like, views); ``regression=None``
  decides from the file (any non-integer label -> regression). Each video is cut into
  ``window``-second windows every ``stride`` seconds (60 / 16 by default, ``window=None`` for whole videos);
  a window's sample has ``extra = {"start": s, "end": s, "duration": s, "video": i}`` (seconds; ``video``
  numbers the source line so that window predictions can be pooled).
- ``"folder"``: ``path/<class>/**/<video>`` (hidden files and folders skipped); classes are the
  sub-folder names, sorted.
- ``"rawframes"``: the release's frame lists, ``dir nframes label`` (space- or comma-separated): each
  video is a folder of ``img_{:05}.jpg`` frames numbered from 1 (``template=``, ``start_index=``), read
  by :class:`~videomamba.data.frames.FrameFolderReader`; ``extra = {"num_frames": n, ...}``.
- ``"list"``: one video path per line and no label (label-free lists for masked pretraining); every
  sample gets label 0 and there are no classes.
- ``"auto"``: a folder with ``*_test_split<k>.txt`` files -> hmdb51, another folder -> folder,
  ``.json`` -> ssv2, a text file whose lines have three fields with integer second and third fields
  and a first field without a video extension -> rawframes, three fields with a numeric third -> lvu,
  lines of one field -> list, else csv.

Class names: ``classes=`` (a list, or a path to a ``classes.txt`` with one name per line, line i
naming class i) fixes the index of every name; without it a ``classes.txt`` beside the annotation
file is used when present, else names are sorted (or, for integer labels, named "0".."K-1").

Every error names the file (and line) and what was expected.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "kinetics", "breakfast", "coin", "ssv2", "hmdb51", "lvu", "folder", "rawframes", "list")
_CSV_ALIASES = ("csv", "kinetics", "breakfast", "coin")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ogv", ".ts")
_HEADER_PATH = {"path", "video", "videos", "filename", "file", "video_path", "vid", "video_id", "name",
                "youtube_id", "id", "clip", "video_name"}
_HEADER_LABEL = {"label", "labels", "class", "class_id", "label_id", "category", "target", "classname",
                 "class_name", "action"}
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")


class AnnotationError(ValueError):
    """A missing, empty or malformed annotation source; the message names the file and line."""


@dataclass
class Sample:
    """One training/eval item: ``path`` of the video, ``label`` (int class or float target), ``extra``."""
    path: Path
    label: int | float
    extra: dict = field(default_factory=dict)


@dataclass
class Annotations:
    samples: list[Sample]
    classes: list[str]
    fmt: str
    source: Path
    regression: bool = False


def load_classes(path) -> list[str]:
    """Read a ``classes.txt``: one class name per line, line i is class i; blank lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: class list not found")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise AnnotationError(f"{path}: class list is empty")
    names = []
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise AnnotationError(f"{path}:{i}: blank class name")
        names.append(name)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise AnnotationError(f"{path}: duplicate class names {sorted(dup)}")
    return names


def save_classes(path, classes) -> None:
    from ..fileio import atomic_write_text

    atomic_write_text(path, "".join(f"{c}\n" for c in classes))


def load_annotations(path, fmt: str = "auto", root=None, **kwargs) -> list[Sample]:
    """Parse an annotation source into samples; see the module docstring for ``fmt`` and ``kwargs``."""
    return read_annotations(path, fmt=fmt, root=root, **kwargs).samples


def read_annotations(path, fmt: str = "auto", root=None, classes=None, **kwargs) -> Annotations:
    """Like :func:`load_annotations` but also returns the class names and the detected format."""
    path = Path(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; expected one of {FORMATS}")
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file or folder not found")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in _CSV_ALIASES:
        fmt = "csv"
    if isinstance(classes, (str, Path)):
        classes = load_classes(classes)
    elif classes is not None:
        classes = [str(c) for c in classes]
    parser = {"csv": _read_csv, "ssv2": _read_ssv2, "hmdb51": _read_hmdb51, "lvu": _read_lvu,
              "folder": _read_folder, "rawframes": _read_rawframes, "list": _read_list}[fmt]
    allowed = {"csv": {"header"}, "ssv2": {"labels", "video_ext"}, "hmdb51": {"split", "subset"},
               "lvu": {"header", "regression", "window", "stride", "scheme"}, "folder": {"extensions"},
               "rawframes": {"template", "start_index"}, "list": set()}[fmt]
    bad = set(kwargs) - allowed
    if bad:
        raise TypeError(f"unexpected options {sorted(bad)} for annotation format {fmt!r}; "
                        f"it accepts {sorted(allowed)}")
    root = Path(root) if root is not None else None
    ann = parser(path, root, classes, **kwargs)
    if not ann.samples:
        raise AnnotationError(f"{path}: no samples found ({fmt} format)")
    return ann


def detect_format(path: Path) -> str:
    if path.is_dir():
        if any(_HMDB_SPLIT.match(p.name) for p in path.iterdir()):
            return "hmdb51"
        return "folder"
    if path.suffix.lower() == ".json":
        return "ssv2"
    if _HMDB_SPLIT.match(path.name):
        return "hmdb51"
    for lineno, line in _lines(path):
        fields = _split(line, "," if "," in line else None)
        if (len(fields) == 3 and _is_int(fields[1]) and _is_int(fields[2])
                and Path(fields[0]).suffix.lower() not in VIDEO_EXTENSIONS):
            return "rawframes"
        if len(fields) == 1:
            return "list"
        if len(fields) == 3 and _is_float(fields[2]):
            return "lvu"
        if len(fields) == 3 and lineno == 1 and fields[2].strip().lower() == "duration":
            return "lvu"
        return "csv"
    raise AnnotationError(f"{path}: annotation file is empty")


# -- helpers -------------------------------------------------------------------------------------
def _lines(path: Path):
    """(line number, stripped line) for non-blank, non-comment lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield i, s


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter == ",":
        return [f.strip() for f in next(csv.reader(io.StringIO(line)))]
    return line.split()


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _looks_like_header(fields: list[str]) -> bool:
    low = [f.strip().lower() for f in fields]
    return low[0] in _HEADER_PATH or (len(low) > 1 and low[1] in _HEADER_LABEL)


def _resolve(p: str, base: Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def _classes_beside(path: Path) -> list[str] | None:
    f = (path if path.is_dir() else path.parent) / "classes.txt"
    return load_classes(f) if f.is_file() else None


def _index_labels(path: Path, raw: list[tuple[int, str]], classes: list[str] | None,
                  ) -> tuple[list[int], list[str]]:
    """Map raw label strings (all ints or all names) to indices; returns (indices, class names)."""
    if classes is None:
        classes = _classes_beside(path)
    ints = [_is_int(r) for _, r in raw]
    if all(ints):
        labels = [int(r) for _, r in raw]
        for (lineno, _), lab in zip(raw, labels):
            if lab < 0:
                raise AnnotationError(f"{path}:{lineno}: label {lab} is negative; expected a class index >= 0")
            if classes is not None and lab >= len(classes):
                raise AnnotationError(f"{path}:{lineno}: label {lab} is out of range for {len(classes)} classes")
        if classes is None:
            classes = [str(i) for i in range(max(labels) + 1)]
        return labels, classes
    if any(ints):
        lineno, r = raw[ints.index(not ints[0])]
        raise AnnotationError(f"{path}:{lineno}: label {r!r} mixes integer indices and class names "
                              "in one file; use one or the other")
    if classes is None:
        classes = sorted({r for _, r in raw})
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for lineno, r in raw:
        if r not in index:
            raise AnnotationError(f"{path}:{lineno}: unknown class name {r!r} (not in the {len(classes)} "
                                  "given classes)")
        labels.append(index[r])
    return labels, classes


# -- formats -------------------------------------------------------------------------------------
def _read_rows(path: Path, expect: int, what: str, header: bool | None):
    rows = []
    delimiter = None
    first = True
    for lineno, line in _lines(path):
        if delimiter is None:
            delimiter = "," if "," in line else " "
        try:
            fields = _split(line, delimiter if delimiter == "," else None)
        except csv.Error as e:
            raise AnnotationError(f"{path}:{lineno}: malformed CSV ({e})") from None
        if first:
            first = False
            if header or (header is None and _looks_like_header(fields)):
                continue
        if len(fields) != expect or not all(fields):
            sep = "comma-separated" if delimiter == "," else "space-separated"
            raise AnnotationError(f"{path}:{lineno}: expected {expect} {sep} fields '{what}', "
                                  f"got {len(fields)}: {line!r}")
        rows.append((lineno, fields))
    return rows


def _read_csv(path: Path, root, classes, header: bool | None = None) -> Annotations:
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; the csv format expects a 'path,label' file")
    rows = _read_rows(path, 2, "path,label", header)
    if not rows:
        raise AnnotationError(f"{path}: annotation file is empty (expected lines 'path,label')")
    for lineno, (_, lab) in rows:
        if not _is_int(lab) and _is_float(lab):
            raise AnnotationError(f"{path}:{lineno}: label {lab!r} is not an integer class index or a class "
                                  "name (regression targets need the lvu format)")
    labels, classes = _index_labels(path, [(ln, f[1]) for ln, f in rows], classes)
    base = root or path.parent
    samples = [Sample(_resolve(f[0], base), lab) for (_, f), lab in zip(rows, labels)]
    return Annotations(samples, classes, "csv", path)


def release_window_bounds(duration: float, window: float = 60.0, stride: float = 16.0) -> list[tuple[float, float]]:
    """The release's LVU windows (``video_sm/datasets/lvu.py``): a video shorter than ``window`` is one
    window; else windows start at 0, stride, ... below ``int(duration)``, a window running past the
    end is cut at ``duration`` if at least ``window / 2`` long and dropped otherwise."""
    if duration < window:
        return [(0.0, float(duration))]
    out = []
    s = 0.0
    while s < int(duration):
        e = s + window
        if e > duration:
            if duration - s >= window / 2:
                out.append((s, float(duration)))
        else:
            out.append((s, e))
        s += stride
    return out


def _read_lvu(path: Path, root, classes, header: bool | None = None, regression: bool | None = None,
              window: float | None = 60.0, stride: float = 16.0, scheme: str = "cover") -> Annotations:
    """``scheme``: ``"release"`` (:func:`release_window_bounds`) or ``"cover"``
    (:func:`~videomamba.data.sampling.window_bounds`: a last window ending at the video's end)."""
    from .sampling import window_bounds

    if scheme not in ("release", "cover"):
        raise AnnotationError(f"lvu window scheme must be 'release' or 'cover', got {scheme!r}")
    bounds_fn = release_window_bounds if scheme == "release" else window_bounds

    rows = _read_rows(path, 3, "path,label,duration", header)
    if not rows:
        raise AnnotationError(f"{path}: annotation file is empty (expected lines 'path,label,duration')")
    durations = []
    for lineno, f in rows:
        try:
            d = float(f[2])
        except ValueError:
            raise AnnotationError(f"{path}:{lineno}: duration {f[2]!r} is not a number of seconds") from None
        if not d > 0:
            raise AnnotationError(f"{path}:{lineno}: duration must be > 0 seconds, got {f[2]!r}")
        durations.append(d)
    if regression is None:
        regression = not all(_is_int(f[1]) for _, f in rows)
    if regression:
        labels = []
        for lineno, f in rows:
            if not _is_float(f[1]):
                raise AnnotationError(f"{path}:{lineno}: regression target {f[1]!r} is not a number")
            labels.append(float(f[1]))
        classes = []
    else:
        labels, classes = _index_labels(path, [(ln, f[1]) for ln, f in rows], classes)
    base = root or path.parent
    samples = []
    for v, ((_, f), lab, d) in enumerate(zip(rows, labels, durations)):
        p = _resolve(f[0], base)
        bounds = bounds_fn(d, window, stride) if window else [(0.0, d)]
        for s, e in bounds:
            samples.append(Sample(p, lab, {"start": s, "end": e, "duration": d, "video": v}))
    return Annotations(samples, classes, "lvu", path, regression=regression)


def _read_ssv2(path: Path, root, classes, labels=None, video_ext: str = ".webm") -> Annotations:
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if isinstance(entries, dict):
        raise AnnotationError(f"{path}: is a JSON object; the ssv2 format expects the list of videos "
                              "(train.json / validation.json), with the labels JSON given as labels=")
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{'id', 'template'}} objects")
    if not entries:
        raise AnnotationError(f"{path}: annotation file is empty (no videos listed)")
    if labels is None:
        for name in ("something-something-v2-labels.json", "labels.json"):
            if (path.parent / name).is_file():
                labels = path.parent / name
                break
    if classes is None:
        if labels is None:
            raise AnnotationError(f"{path}: SSv2 labels JSON not found beside it "
                                  "(something-something-v2-labels.json); pass labels=PATH")
        labels = Path(labels)
        try:
            table = json.loads(labels.read_text(encoding="utf-8-sig"))
        except (OSError, json.JSONDecodeError) as e:
            raise AnnotationError(f"{labels}: cannot read the SSv2 labels JSON ({e})") from None
        if not isinstance(table, dict) or not all(_is_int(str(v)) for v in table.values()):
            raise AnnotationError(f"{labels}: expected an object mapping template -> class index")
        by_index = sorted(table.items(), key=lambda kv: int(kv[1]))
        if [int(v) for _, v in by_index] != list(range(len(by_index))):
            raise AnnotationError(f"{labels}: class indices must be 0..{len(by_index) - 1} without gaps")
        classes = [k for k, _ in by_index]
    index = {c: i for i, c in enumerate(classes)}
    base = root or path.parent
    samples = []
    for k, e in enumerate(entries):
        where = f"{path}: entry {k}"
        if not isinstance(e, dict) or "id" not in e:
            raise AnnotationError(f"{where}: expected an object with 'id' and 'template'")
        if "template" not in e:
            raise AnnotationError(f"{where} (id {e['id']}): no 'template' - the SSv2 test list has no labels")
        name = str(e["template"]).replace("[", "").replace("]", "")
        if name not in index:
            raise AnnotationError(f"{where} (id {e['id']}): template {name!r} is not in the labels JSON")
        samples.append(Sample(base / f"{e['id']}{video_ext}", index[name],
                              {"id": str(e["id"]), "label_text": e.get("label")}))
    return Annotations(samples, classes, "ssv2", path)


def _read_hmdb51(path: Path, root, classes, split: int | None = None, subset: str = "train") -> Annotations:
    subsets = {"train": "1", "test": "2"}
    if subset not in subsets:
        raise AnnotationError(f"hmdb51 subset must be 'train' or 'test', got {subset!r}")
    folder = path if path.is_dir() else path.parent
    if not path.is_dir():
        m = _HMDB_SPLIT.match(path.name)
        if not m:
            raise AnnotationError(f"{path}: not an HMDB51 split file (<class>_test_split<k>.txt)")
        split = int(m["split"]) if split is None else split
    split = 1 if split is None else int(split)
    files = sorted(p for p in folder.iterdir() if (m := _HMDB_SPLIT.match(p.name)) and int(m["split"]) == split)
    if not files:
        raise AnnotationError(f"{folder}: no HMDB51 split files '<class>_test_split{split}.txt' found")
    names = [_HMDB_SPLIT.match(p.name)["cls"] for p in files]
    if classes is None:
        classes = sorted(names)
    index = {c: i for i, c in enumerate(classes)}
    base = root or folder
    samples = []
    for f, cls in zip(files, names):
        if cls not in index:
            raise AnnotationError(f"{f}: class {cls!r} is not in the given classes")
        for lineno, line in _lines(f):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{f}:{lineno}: expected 'video_name.avi 0|1|2', got {line!r}")
            if parts[1] == subsets[subset]:
                samples.append(Sample(base / cls / parts[0], index[cls], {"split": split}))
    return Annotations(samples, classes, "hmdb51", path)


def _read_folder(path: Path, root, classes, extensions=VIDEO_EXTENSIONS) -> Annotations:
    if not path.is_dir():
        raise AnnotationError(f"{path}: the folder format expects a folder of class sub-folders")
    exts = {e.lower() for e in extensions}
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise AnnotationError(f"{path}: no class sub-folders found (expected {path}/<class>/<video>)")
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise AnnotationError(f"{path}: sub-folders {extra} are not in the given classes")
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in exts
                       and not any(part.startswith(".") for part in p.relative_to(d).parts))
        if not files:
            log.warning("%s: class folder has no videos with extensions %s", d, sorted(exts))
        samples += [Sample(p, index[d.name]) for p in files]
    return Annotations(samples, classes, "folder", path)


def _read_rawframes(path: Path, root, classes, template: str = "img_{:05}.jpg", start_index: int = 1) -> Annotations:
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; the rawframes format expects a 'dir nframes label' list")
    rows = _read_rows(path, 3, "dir nframes label", False)
    if not rows:
        raise AnnotationError(f"{path}: annotation file is empty (expected lines 'dir nframes label')")
    for lineno, f in rows:
        if not _is_int(f[1]) or int(f[1]) < 1:
            raise AnnotationError(f"{path}:{lineno}: frame count {f[1]!r} is not a positive integer")
    labels, classes = _index_labels(path, [(ln, f[2]) for ln, f in rows], classes)
    base = root or path.parent
    samples = [Sample(_resolve(f[0], base), lab, {"num_frames": int(f[1]), "template": template,
                                                  "start_index": int(start_index)})
               for (_, f), lab in zip(rows, labels)]
    return Annotations(samples, classes, "rawframes", path)


def _read_list(path: Path, root, classes) -> Annotations:
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; the list format expects one video path per line")
    base = root or path.parent
    samples = []
    for lineno, line in _lines(path):
        if "," in line:
            raise AnnotationError(f"{path}:{lineno}: expected one video path per line (no label), got {line!r}; "
                                  "a labelled list is the csv format")
        samples.append(Sample(_resolve(line, base), 0))
    return Annotations(samples, [], "list", path)
