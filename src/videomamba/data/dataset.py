"""From an annotation file to normalised clips: the map-style dataset used by train / eval / predict.

Item keys (``dataset[i]``):

- ``video``: float32, ImageNet-normalised.
  - Training with ``repeat_aug == 1``: ``(3, T, H, W)``.
  - Training with ``repeat_aug = V > 1``: ``(V, 3, T, H, W)``, V augmentations of one decoded clip
    (the release's repeated sampling, which saves decoding).
  - Evaluation (``train=False``): ``(V, 3, T, H, W)`` with ``V = num_clips * num_crops``, clip-major
    (view ``c * num_crops + k`` is temporal clip c, spatial crop k).
- ``label``: int class index, or float for regression (LVU like/views).
- ``index``: the item's index, to look up ``dataset.samples[index]`` (e.g. LVU window bounds).
- ``path``: the video file, as a string.

Training transform per view: one random-resized crop (``AugmentConfig.scale``/``ratio``) of the decoded
frames resized to ``img_size``, horizontal flip with probability 0.5, RandAugment, normalisation, random
erasing. The crop comes first so that RandAugment works on ``img_size`` pixels, not the source size; the
crop is relative to the frame, so resizing the short side first (as the release does) would change
only interpolation, and ``short_side`` is therefore used at evaluation only. Evaluation: resize the short
side to ``short_side`` (default ``img_size``), then ``num_crops`` square crops along the long side.

Horizontal flip is switched off for SSv2 annotations and for folders whose ``meta.json`` says
``"flip": false`` (the synthetic set, whose left/right and clockwise classes swap under a flip).

``AugmentConfig.symmetries`` are the label-changing counterpart: each listed symmetry of the clip
(``hflip``, ``vflip``, ``transpose``, ``reverse``: see :func:`~videomamba.data.transforms.apply_symmetry`)
is applied with probability 0.5 to the decoded frames, and the label is mapped through the dataset's
``meta.json`` ``label_maps`` (e.g. playing ``move_left`` backwards gives ``move_right``). A symmetry the
dataset declares no map for is an error, not a silent identity.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from . import transforms as T
from .annotations import Annotations, Sample, load_classes, read_annotations, save_classes
from .rand_augment import RandAugment
from .sampling import SAMPLINGS, sample_indices, time_to_frame_range
from .video import MemoryReader, VideoDecodeError, open_video
from .views import eval_views

log = logging.getLogger(__name__)

DEFAULT_RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"


@dataclass
class AugmentConfig:
    """Training augmentation, the ``augment:`` section of a training config. ``AugmentConfig()`` is the
    release recipe; ``AugmentConfig.none()`` only resizes and centre-crops (for sanity checks and
    order-sensitive data); ``preset`` names defaults for the fields a config does not give
    (:data:`AUGMENT_PRESETS`). Every range check of these fields lives here."""

    rand_augment: str | None = DEFAULT_RAND_AUGMENT
    random_crop: bool = True               # random resized crop (false: resize + centre crop)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    random_erasing: float = 0.25
    flip: bool = True                      # never for SSv2: left/right is the label there
    symmetries: tuple[str, ...] = ()       # hflip / vflip / transpose / reverse, each p=0.5, relabelled
                                           # through the dataset's meta.json label_maps
    crop: str = "random_resized"           # or "multiscale": the release's pretraining crop (data/multiscale.py)
    # batch-level mixing (data/mixup.py) and the loss's label smoothing
    mixup: float = 0.8                     # mixup alpha (0: off)
    cutmix: float = 1.0                    # cutmix alpha (0: off)
    switch_prob: float = 0.5
    mixup_prob: float = 1.0
    label_smoothing: float = 0.1
    preset: str | None = None              # the named defaults these values started from, if any

    def __post_init__(self):
        def need(ok, key, expected, value):
            if not ok:
                raise ValueError(f"augment.{key} must be {expected}, got {value!r}")

        need(self.crop in ("random_resized", "multiscale"), "crop", "'random_resized' or 'multiscale'", self.crop)
        need(self.preset is None or self.preset in AUGMENT_PRESETS, "preset",
             f"one of {', '.join(AUGMENT_PRESETS)} or null", self.preset)
        sym = list(self.symmetries)
        need(all(s in T.SYMMETRIES for s in sym) and len(set(sym)) == len(sym), "symmetries",
             f"a list of distinct names from {list(T.SYMMETRIES)}", sym)
        self.symmetries = tuple(sym)
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)
        need(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, "scale",
             "[min, max] with 0 < min <= max <= 1", list(self.scale))
        need(len(self.ratio) == 2 and 0 < self.ratio[0] <= self.ratio[1], "ratio", "[min, max] with 0 < min <= max",
             list(self.ratio))
        for k in ("random_erasing", "switch_prob", "mixup_prob"):
            need(0 <= getattr(self, k) <= 1, k, "a probability in [0, 1]", getattr(self, k))
        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)", self.label_smoothing)
        for k in ("mixup", "cutmix"):
            need(getattr(self, k) >= 0, k, "an alpha >= 0 (0: off)", getattr(self, k))
        if self.rand_augment:
            RandAugment.from_string(self.rand_augment)   # fail here, not inside a DataLoader worker

    @classmethod
    def from_preset(cls, name: str, **fields) -> "AugmentConfig":
        if name not in AUGMENT_PRESETS:
            raise ValueError(f"augment.preset must be one of {', '.join(AUGMENT_PRESETS)}, got {name!r}")
        return cls(**{**AUGMENT_PRESETS[name], **fields, "preset": name})

    @classmethod
    def release_pretrain(cls) -> "AugmentConfig":
        """The release's lighter masked-pretraining augmentation: multi-scale crop and flip only."""
        return cls.from_preset("pretrain")

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(rand_augment=None, random_erasing=0.0, flip=False, random_crop=False)


# ``augment.preset``: the values a preset sets unless the config gives them.
AUGMENT_PRESETS = {
    # the release's masked-pretraining pipeline (video_sm/datasets/build.py, DataAugmentationForVideoMAE):
    # multi-scale crop (scales 1, .875, .75, .66) + flip + normalisation, nothing else
    "pretrain": {"crop": "multiscale", "rand_augment": None, "random_erasing": 0.0, "flip": True,
                 "mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0},
}


class VideoDataset(torch.utils.data.Dataset):
    """Map-style dataset over an annotation source; safe with DataLoader workers and DistributedSampler.

    ``annotations``: a path (parsed with ``fmt``/``root``/``annotation_kwargs``; see
    :mod:`videomamba.data.annotations`), an :class:`Annotations`, or a list of :class:`Sample`.
    ``classes``: class names (list or classes.txt path), fixing the label order.
    ``sampling``: "segment" (TSN) or "dense" (``sample_stride`` apart); see :mod:`videomamba.data.sampling`.
    ``skip_bad``: probe every file once at construction and drop the ones that cannot be decoded,
    listing them in ``bad_files`` as ``(path, reason)``; a file that still fails later is replaced by the
    next good item and logged (a worker's discoveries stay in that worker). Without it a bad file raises
    VideoDecodeError naming the file and the reason.
    ``cache``: decode each file once and keep all its frames in memory (uint8), for small datasets read
    for many epochs; each DataLoader worker holds its own cache, so keep workers persistent (or use none).
    """

    def __init__(self, annotations, root=None, fmt: str = "auto", num_frames: int = 8,
                 sampling: str = "segment", sample_stride: int = 4, train: bool = True, img_size: int = 224,
                 short_side: int | None = None, num_clips: int = 1, num_crops: int = 1, repeat_aug: int = 1,
                 augment: AugmentConfig | None = None, flip: bool = True, skip_bad: bool = False,
                 classes=None, backend: str = "auto", threads: int = 1, short: str = "pad",
                 annotation_kwargs: dict | None = None, cache: bool = False):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        for name, v in (("num_frames", num_frames), ("img_size", img_size), ("num_clips", num_clips),
                        ("num_crops", num_crops), ("repeat_aug", repeat_aug), ("sample_stride", sample_stride)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if short_side is not None and short_side < img_size:
            raise ValueError(f"short_side ({short_side}) must be >= img_size ({img_size})")

        if isinstance(annotations, (str, Path)):
            ann = read_annotations(annotations, fmt=fmt, root=root, classes=classes, **(annotation_kwargs or {}))
        elif isinstance(annotations, Annotations):
            ann = annotations
        else:
            samples = list(annotations)
            if not samples or not all(isinstance(s, Sample) for s in samples):
                raise ValueError("annotations must be a path, an Annotations or a non-empty list of Sample")
            names = load_classes(classes) if isinstance(classes, (str, Path)) else classes
            regression = any(isinstance(s.label, float) for s in samples)
            if names is None and not regression:
                names = [str(i) for i in range(max(int(s.label) for s in samples) + 1)]
            ann = Annotations(samples, list(names or []), "samples", Path("."), regression)
        self.annotations = ann
        self.samples: list[Sample] = list(ann.samples)
        self.classes: list[str] = list(ann.classes)
        self.regression = ann.regression
        self.num_frames, self.sampling, self.sample_stride = int(num_frames), sampling, int(sample_stride)
        self.train, self.img_size = train, int(img_size)
        self.short_side = int(short_side) if short_side else int(img_size)
        self.num_clips, self.num_crops, self.repeat_aug = int(num_clips), int(num_crops), int(repeat_aug)
        self.augment = augment if augment is not None else AugmentConfig()
        self.flip = bool(flip) and self.augment.flip and self._flip_allowed(ann)
        self.symmetries = self._label_permutations(ann) if train else []
        self.backend, self.threads, self.short = backend, threads, short
        self._rand_augment = (RandAugment.from_string(self.augment.rand_augment)
                              if train and self.augment.rand_augment else None)
        self.skip_bad = skip_bad
        self.bad_files: list[tuple[str, str]] = []
        self.cache = bool(cache)
        self._cache: dict[Path, MemoryReader] = {}
        if skip_bad:
            self._drop_bad_files()

    @classmethod
    def from_config(cls, data, augment: AugmentConfig | None, annotations, train: bool, classes=None,
                    views: tuple[int, int] | None = None, annotation_kwargs: dict | None = None) -> "VideoDataset":
        """The dataset a training config's ``data:`` and ``augment:`` sections describe (any object with
        those attributes). ``views``: (clips, crops) at evaluation (default: ``data.test_clips`` x
        ``data.test_crops``); training loads one clip, ``data.repeat_aug`` augmented views of it."""
        clips, crops = (1, 1) if train else (views or (data.test_clips, data.test_crops))
        augment = augment if augment is not None else AugmentConfig()
        return cls(annotations, root=data.root, fmt=data.format, num_frames=data.num_frames, sampling=data.sampling,
                   sample_stride=data.sample_stride, train=train, img_size=data.img_size, short_side=data.short_side,
                   num_clips=clips, num_crops=crops, repeat_aug=data.repeat_aug if train else 1,
                   augment=augment if train else None, flip=augment.flip, skip_bad=data.skip_bad, classes=classes,
                   cache=data.cache, annotation_kwargs=annotation_kwargs)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of outputs a head needs: the class count, or 1 for regression."""
        return 1 if self.regression else len(self.classes)

    def save_classes(self, path) -> None:
        save_classes(path, self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def _meta(ann: Annotations) -> tuple[Path, dict]:
        """The dataset's ``meta.json`` (next to the annotations) and its content ({} if absent or unreadable)."""
        meta = (ann.source if ann.source.is_dir() else ann.source.parent) / "meta.json"
        try:
            content = json.loads(meta.read_text()) if meta.is_file() else {}
        except (OSError, ValueError):
            content = {}
        return meta, content if isinstance(content, dict) else {}

    @classmethod
    def _flip_allowed(cls, ann: Annotations) -> bool:
        if ann.fmt == "ssv2":
            log.info("horizontal flip disabled: SSv2 labels depend on left/right")
            return False
        meta, content = cls._meta(ann)
        if content.get("flip") is False:
            log.info("horizontal flip disabled by %s", meta)
            return False
        return True

    def _label_permutations(self, ann: Annotations) -> list[tuple[str, list[int]]]:
        """``(symmetry, label permutation)`` for each of ``augment.symmetries``, from meta.json's label_maps."""
        if not self.augment.symmetries:
            return []
        meta, content = self._meta(ann)
        if self.regression:
            raise ValueError(f"augment.symmetries relabel classes; {ann.source} is a regression task")
        maps = content.get("label_maps") or {}
        index = {c: i for i, c in enumerate(self.classes)}
        out = []
        for sym in self.augment.symmetries:
            if sym not in maps:
                raise ValueError(f"augment.symmetries lists {sym!r}, but {meta} declares no label map for it "
                                 f"(label_maps has {sorted(maps)}); a symmetry without a map would keep "
                                 f"labels that may be wrong")
            mapping = maps[sym]
            unknown = sorted((set(mapping) | set(mapping.values())) - set(index)) if isinstance(mapping, dict) else None
            if unknown is None or unknown:
                raise ValueError(f"{meta}: label_maps[{sym!r}] must map class names of {ann.source} to class "
                                 f"names, got {'unknown ' + str(unknown) if unknown else type(mapping).__name__}")
            perm = [index[mapping.get(c, c)] for c in self.classes]
            if sorted(perm) != list(range(len(perm))):
                raise ValueError(f"{meta}: label_maps[{sym!r}] is not one-to-one: {mapping}")
            out.append((sym, perm))
        return out

    def _drop_bad_files(self) -> None:
        verdict: dict[Path, str | None] = {}
        for s in self.samples:
            if s.path in verdict:
                continue
            try:
                with self._open_file(s.path, s, threads=1):
                    verdict[s.path] = None
            except VideoDecodeError as e:
                verdict[s.path] = e.reason
        self.bad_files = [(str(p), r) for p, r in verdict.items() if r is not None]
        if self.bad_files:
            self.samples = [s for s in self.samples if verdict[s.path] is None]
            shown = "; ".join(f"{p} ({r})" for p, r in self.bad_files[:5])
            more = f" and {len(self.bad_files) - 5} more" if len(self.bad_files) > 5 else ""
            log.warning("skipping %d bad video file(s): %s%s", len(self.bad_files), shown, more)
            if not self.samples:
                raise VideoDecodeError(self.annotations.source, f"all {len(verdict)} video files are unusable, "
                                                                f"e.g. {shown}")

    # -- items ------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self.samples)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.samples)} videos")
        attempts = min(len(self.samples), 10) if self.skip_bad else 1
        for k in range(attempts):
            i = (index + k) % len(self.samples)
            try:
                video, label = self._load(self.samples[i])
            except VideoDecodeError as e:
                if not self.skip_bad:
                    raise
                self.bad_files.append((e.path, e.reason))
                log.warning("skipping bad video %s: %s", e.path, e.reason)
                continue
            return {"video": video, "label": label, "index": i, "path": str(self.samples[i].path)}
        raise VideoDecodeError(self.samples[index].path, f"this and the next {attempts - 1} videos all failed")

    def _frame_window(self, reader, sample: Sample) -> tuple[int, int]:
        n = reader.info.num_frames
        if "start" not in sample.extra:
            return 0, n
        times = reader.frame_times
        if times is None:  # no timestamps: assume a constant rate
            fps = reader.info.fps or 1.0
            times = [i / fps for i in range(n)]
        return time_to_frame_range(times, float(sample.extra["start"]), float(sample.extra["end"]))

    def _open_file(self, path: Path, sample: Sample | None = None, threads: int | None = None):
        """A video file, or a raw-frame folder (``rawframes`` lists; data/frames.py)."""
        if sample is not None and "num_frames" in sample.extra or Path(path).is_dir():
            from .frames import FrameFolderReader
            extra = sample.extra if sample is not None else {}
            return FrameFolderReader(path, extra.get("num_frames"), extra.get("template", "img_{:05}.jpg"),
                                     extra.get("start_index", 1))
        return open_video(path, backend=self.backend, threads=self.threads if threads is None else threads)

    def _open(self, path: Path, sample: Sample | None = None):
        if not self.cache:
            return self._open_file(path, sample)
        reader = self._cache.get(path)
        if reader is None:
            with self._open_file(path, sample) as f:
                reader = self._cache[path] = MemoryReader(f)
        return reader

    def _load(self, sample: Sample) -> tuple[torch.Tensor, int | float]:
        """The clip(s) of one video and its label (changed by a symmetry, if one was applied)."""
        label = float(sample.label) if self.regression else int(sample.label)
        with self._open(sample.path, sample) as reader:
            start, end = self._frame_window(reader, sample)
            clip_count = 1 if self.train else self.num_clips
            per_clip = [sample_indices(reader.info.num_frames, self.num_frames, self.sampling, self.sample_stride,
                                       self.train, c, clip_count, short=self.short, start=start, end=end)
                        for c in range(clip_count)]
            flat = [i for idx in per_clip for i in idx]
            frames = reader.get_frames(flat)                                  # (clips*T, H, W, 3) uint8
        # a view: crops slice it and the resize makes the one copy, of the cropped pixels only
        clips = frames.permute(0, 3, 1, 2).split(self.num_frames)
        if self.train:
            clip = clips[0]
            for sym, perm in self.symmetries:
                if float(torch.rand(1)) < 0.5:
                    clip, label = T.apply_symmetry(clip, sym), perm[label]
            views = [self._train_view(clip) for _ in range(self.repeat_aug)]
            return (views[0] if self.repeat_aug == 1 else torch.stack(views)), label
        return eval_views(clips, self.img_size, self.short_side, self.num_crops), label      # (V, 3, T, H, W)

    def _train_view(self, clip: torch.Tensor) -> torch.Tensor:
        a = self.augment
        if a.random_crop and a.crop == "multiscale":
            from .multiscale import multiscale_crop
            clip = multiscale_crop(clip, self.img_size)
        elif a.random_crop:
            clip = T.random_resized_crop(clip, self.img_size, a.scale, a.ratio)
        else:
            clip = T.center_crop(T.resize_short_side(clip, self.short_side), self.img_size)
        if self.flip and float(torch.rand(1)) < 0.5:
            clip = T.hflip(clip)
        if self._rand_augment is not None:
            clip = self._rand_augment(clip)
        x = T.normalize(clip)                                                 # (3, T, H, W)
        return T.random_erasing(x, a.random_erasing) if a.random_erasing > 0 else x


def load_video_clips(path, num_frames: int, num_clips: int, img_size: int, short_side: int | None = None,
                     num_crops: int = 1, sampling: str = "segment", sample_stride: int = 4,
                     backend: str = "auto", short: str = "pad") -> torch.Tensor:
    """Evaluation views of one video of any length: float (V, 3, T, H, W), V = num_clips * num_crops.

    Clips spread over the whole video (see :mod:`videomamba.data.sampling`), normalised like the dataset
    (:func:`videomamba.data.views.read_views` with these settings).
    """
    from .clip_config import ClipConfig
    from .views import read_views

    clip = ClipConfig(num_frames=num_frames, img_size=img_size, short_side=short_side, sampling=sampling,
                      sample_stride=sample_stride)
    return read_views(path, clip, num_clips, num_crops, backend=backend, short=short)
