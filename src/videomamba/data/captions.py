"""Video-text annotations and datasets (retrieval, video-text pre-training).

Formats:

- the release's JSON layout: a list of ``{"video": path, "caption": str | [str, ...]}`` (or
  ``"image"`` instead of ``"video"`` for image-text pairs, which become one-frame clips). A list of
  captions means several captions for one video (MSRVTT train, MSVD), or, for paragraph
  retrieval (DiDeMo, ActivityNet), the sentences of one paragraph, joined into one caption;
- a CSV ``path,caption`` (header optional; a caption holding commas must be quoted; one line per
  caption, several lines may name the same video);
- JSON Lines with the same keys as the JSON layout.

Dataset presets (``DATASETS``) give the release's paragraph mode and text length for MSRVTT
(1k-A test split), DiDeMo, ActivityNet, LSMDC and MSVD; their annotation files are the release's
``anno_downstream/*.json``.

Items (``VideoTextDataset[i]``):

- training (``pairs``): one (video, caption) pair: ``video`` (3, T, H, W), ``caption`` str,
  ``idx`` int (the video's id: captions of the same video are positives), ``path``;
- evaluation (``videos``): one video: ``video`` (V, 3, T, H, W) with V clips, ``index``, ``path``;
  its captions are ``dataset.texts`` with ``txt2img`` / ``img2txt``.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")

# name -> (paragraph retrieval, max text length), as the release's downstream configs
DATASETS = {
    "msrvtt": (False, 32), "didemo": (True, 64), "anet": (True, 150), "activitynet": (True, 150),
    "lsmdc": (False, 96), "msvd": (False, 64),
}


class CaptionError(ValueError):
    """A bad video-text annotation: the message names the file (and entry) and what was expected."""


@dataclass
class VideoCaptions:
    """One video (or image) and its captions."""
    path: Path
    captions: list[str]
    is_image: bool = False
    extra: dict = field(default_factory=dict)


def _resolve(p: str, root: Path | None, base: Path) -> Path:
    q = Path(p)
    if q.is_absolute():
        return q
    return (root / q) if root is not None else (base / q)


def read_video_text(path, root=None, paragraph: bool = False, fmt: str = "auto") -> list[VideoCaptions]:
    """Read an annotation file -> one :class:`VideoCaptions` per video (entries naming the same
    video are merged, keeping the caption order). ``paragraph``: join each entry's caption list
    into one caption (DiDeMo, ActivityNet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    root = Path(root) if root else None
    if fmt == "auto":
        fmt = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".txt": "csv"}.get(path.suffix.lower())
        if fmt is None:
            raise CaptionError(f"{path}: cannot tell the format from the suffix; use .json (the release's layout), "
                               f".jsonl or .csv (path,caption)")
    entries: list[tuple[str, object, bool, str]] = []           # (path, caption(s), is_image, where)
    if fmt in ("json", "jsonl"):
        try:
            if fmt == "json":
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                data = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise CaptionError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(data, list):
            raise CaptionError(f"{path}: expected a list of {{'video': path, 'caption': text}} objects, "
                               f"got {type(data).__name__}")
        for i, e in enumerate(data):
            where = f"{path} entry {i}"
            if not isinstance(e, dict):
                raise CaptionError(f"{where}: expected an object with 'video' (or 'image') and 'caption'")
            media = e.get("video", e.get("image"))
            if media is None:
                raise CaptionError(f"{where}: no 'video' or 'image' field (keys: {sorted(e)})")
            if "caption" not in e:
                raise CaptionError(f"{where}: no 'caption' field (keys: {sorted(e)})")
            entries.append((str(media), e["caption"], "video" not in e, where))
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        for i, row in enumerate(rows):
            where = f"{path} line {i + 1}"
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if i == 0 and [c.strip().lower() for c in row[:2]] in (["path", "caption"], ["video", "caption"],
                                                                   ["image", "caption"], ["path", "text"]):
                continue
            if len(row) < 2:
                raise CaptionError(f"{where}: expected 'path,caption', got {','.join(row)!r}")
            cap = ",".join(row[1:]) if len(row) > 2 else row[1]
            p = row[0].strip()
            entries.append((p, cap, Path(p).suffix.lower() in IMAGE_EXTENSIONS, where))
    else:
        raise CaptionError(f"unknown video-text annotation format {fmt!r}; expected json, jsonl or csv")

    videos: dict[Path, VideoCaptions] = {}
    for media, cap, is_image, where in entries:
        if isinstance(cap, str):
            caps = [cap]
        elif isinstance(cap, list) and cap and all(isinstance(c, str) for c in cap):
            caps = [" ".join(c.strip() for c in cap)] if paragraph else list(cap)
        else:
            raise CaptionError(f"{where}: 'caption' must be a string or a non-empty list of strings, got {cap!r}")
        p = _resolve(media, root, path.parent)
        vc = videos.get(p)
        if vc is None:
            vc = videos[p] = VideoCaptions(p, [], is_image or p.suffix.lower() in IMAGE_EXTENSIONS)
        vc.captions.extend(caps)
    if not videos:
        raise CaptionError(f"{path}: no entries")
    return list(videos.values())


def check_files(videos: list[VideoCaptions], skip_missing: bool = False, source: str = "") -> tuple[list[VideoCaptions], list[str]]:
    """Missing media files: an error naming them, or (``skip_missing``) dropped and returned."""
    missing = [str(v.path) for v in videos if not v.path.is_file()]
    if missing and not skip_missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{source + ': ' if source else ''}{len(missing)} video file(s) do not exist: "
                                f"{', '.join(missing[:5])}{more} (pass skip_missing / --skip-missing to skip them)")
    if missing:
        log.warning("skipping %d missing video file(s), e.g. %s", len(missing), missing[0])
    keep = [v for v in videos if str(v.path) not in set(missing)]
    if not keep:
        raise FileNotFoundError(f"{source}: none of the {len(videos)} video files exist")
    return keep, missing


def load_image_clip(path: Path, img_size: int, train: bool) -> torch.Tensor:
    """An image as a one-frame clip: (3, 1, S, S) normalised."""
    import numpy as np
    from PIL import Image

    from . import transforms as T

    try:
        img = np.asarray(Image.open(path).convert("RGB"))
    except (OSError, ValueError) as e:
        raise CaptionError(f"{path}: cannot read the image: {e}") from None
    clip = torch.from_numpy(img.copy()).permute(2, 0, 1)[None]                  # (1, 3, H, W)
    clip = T.center_crop(T.resize_short_side(clip, img_size), img_size)
    return T.normalize(clip)


class VideoTextDataset(torch.utils.data.Dataset):
    """Video-text pairs (``train=True``: one item per caption) or videos with their captions
    (``train=False``: one item per video; ``texts``, ``txt2img``, ``img2txt`` for retrieval).

    Decoding, sampling and augmentation are :class:`~videomamba.data.VideoDataset`'s.
    """

    def __init__(self, annotations, root=None, *, train: bool = True, paragraph: bool = False,
                 num_frames: int = 8, img_size: int = 224, num_clips: int = 1, sampling: str = "segment",
                 sample_stride: int = 4, augment=None, flip: bool = False, skip_missing: bool = False,
                 cache: bool = False, fmt: str = "auto"):
        from .annotations import Sample
        from .dataset import AugmentConfig, VideoDataset

        if isinstance(annotations, (str, Path)):
            source = str(annotations)
            videos = read_video_text(annotations, root, paragraph=paragraph, fmt=fmt)
        else:
            source = "captions"
            videos = list(annotations)
        videos, self.missing = check_files(videos, skip_missing, source)
        kinds = {v.is_image for v in videos}
        if len(kinds) > 1:
            raise CaptionError(f"{source}: mixes images and videos; give image-text pairs in their own file")
        self.is_image = kinds == {True}
        self.source = source
        self.train = train
        self.videos = videos
        self.img_size = int(img_size)
        self.paths = [v.path for v in videos]
        self.texts: list[str] = []
        self.txt2img: list[int] = []
        self.img2txt: list[list[int]] = []
        for i, v in enumerate(videos):
            self.img2txt.append([])
            for c in v.captions:
                self.img2txt[i].append(len(self.texts))
                self.txt2img.append(i)
                self.texts.append(c)
        if train:
            samples = [Sample(self.paths[vi], vi) for vi in self.txt2img]
        else:
            samples = [Sample(p, i) for i, p in enumerate(self.paths)]
        self.items = samples
        self._video = None
        if not self.is_image:
            names = [str(i) for i in range(len(videos))]
            aug = augment if augment is not None else AugmentConfig.none()
            self._video = VideoDataset(samples, classes=names, num_frames=num_frames, sampling=sampling,
                                       sample_stride=sample_stride, train=train, img_size=img_size,
                                       num_clips=1 if train else num_clips, augment=aug, flip=flip, cache=cache)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        s = self.items[index]
        if self.is_image:
            video = load_image_clip(s.path, self.img_size, self.train)
            if not self.train:
                video = video[None]
        else:
            video = self._video[index]["video"]
        out = {"video": video, "index": int(index), "path": str(s.path), "idx": int(s.label)}
        if self.train:
            out["caption"] = self.texts[index]
        return out


def dataset_preset(name: str | None) -> tuple[bool, int | None]:
    """(paragraph, max_txt_l) of a named downstream dataset, or (False, None)."""
    if not name:
        return False, None
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError(f"unknown retrieval dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]
