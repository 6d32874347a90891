"""How a model wants its clips: one typed preprocessing config, and the class lists of public datasets.

:class:`ClipConfig` travels with the model (``config.json`` ``extra["data"]`` and training
checkpoints) and is resolved once, by :meth:`ClipConfig.for_model`: what training saved, else the
release's defaults for the dataset the checkpoint was trained on (told by its file name or its head
size), else the model's own table sizes. The dataset and ``predict`` read the same object.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .transforms import IMAGENET_MEAN, IMAGENET_STD

SAMPLINGS = ("segment", "dense")


@dataclass(frozen=True)
class ClipConfig:
    """num_frames frames per clip, sampled by ``sampling`` (TSN segments or dense at
    ``sample_stride``), short side resized to ``short_side`` (default ``img_size``), ``test_clips`` x
    ``test_crops`` square crops of ``img_size``, normalised with ``mean`` / ``std``."""

    num_frames: int = 8
    img_size: int = 224
    short_side: int | None = None
    sampling: str = "segment"
    sample_stride: int = 4
    test_clips: int = 1
    test_crops: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    view_batch: int | None = None         # views per forward pass at test time (None: all at once)
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None            # a known dataset these defaults / names came from
    task: str = "classification"         # classification | regression | retrieval (video-text)

    def __post_init__(self):
        for k in ("num_frames", "img_size", "sample_stride", "test_clips", "test_crops"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.view_batch is not None and (not isinstance(self.view_batch, int) or self.view_batch < 1):
            raise ValueError(f"view_batch must be null or a positive integer, got {self.view_batch!r}")
        if self.short_side is not None and self.short_side < self.img_size:
            raise ValueError(f"short_side ({self.short_side}) must be >= img_size ({self.img_size})")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r} is not valid; expected one of {', '.join(SAMPLINGS)}")
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each (RGB), std > 0")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def replace(self, **changes) -> "ClipConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and v is not None})

    # ------------------------------------------------------------------ resolution
    @classmethod
    def for_model(cls, model, source: str | None = None) -> "ClipConfig":
        """The clip config a model was trained with: ``extra["data"]`` / ``extra["classes"]`` saved
        by training, else the release's defaults for the dataset its file name or head size
        tells, else its table sizes (frames, size) and one view."""
        cfg = model.cfg
        extra = dict(getattr(cfg, "extra", None) or {})
        base = {"num_frames": getattr(cfg, "num_frames", 8), "img_size": getattr(cfg, "img_size", 224),
                "mean": getattr(cfg, "mean", IMAGENET_MEAN), "std": getattr(cfg, "std", IMAGENET_STD)}
        if getattr(cfg, "image", False):
            base["num_frames"] = 1
        saved = extra.get("data")
        if extra.get("classes") is not None:
            base["class_names"] = extra["classes"]
        if saved or extra.get("classes") is not None:
            return cls.from_dict({**base, **(saved or {}), "task": extra.get("task", "classification")})
        if hasattr(model, "encode_text"):             # a video-text model: retrieval, its own tables
            return cls.from_dict({**base, "task": "retrieval"})
        name = guess_dataset(source or extra.get("converted_from"), getattr(cfg, "num_classes", 0))
        if name is None:
            return cls.from_dict(base)
        d = {**base, **RELEASE_DEFAULTS[name], "dataset": name}
        d["num_frames"], d["img_size"] = base["num_frames"], base["img_size"]    # the model's own tables
        labels = DATASET_LABELS.get(name)
        if labels and len(class_names(labels)) == getattr(cfg, "num_classes", 0):
            d["class_names"] = class_names(labels)
        return cls.from_dict(d)


# The release's evaluation settings per dataset (test views, sampling; the training scripts of the
# original repository's video_sm/exp/*/run_*.sh and the papers' tables).
RELEASE_DEFAULTS: dict[str, dict] = {
    "k400": {"sampling": "segment", "test_clips": 4, "test_crops": 3},
    "ssv2": {"sampling": "segment", "test_clips": 2, "test_crops": 3},
    "breakfast": {"sampling": "segment", "test_clips": 4, "test_crops": 3},
    "coin": {"sampling": "segment", "test_clips": 10, "test_crops": 3},
    "lvu": {"sampling": "segment", "test_clips": 4, "test_crops": 3},
    "hmdb51": {"sampling": "segment", "test_clips": 4, "test_crops": 3},
    "ucf101": {"sampling": "segment", "test_clips": 4, "test_crops": 3},
    "in1k": {"sampling": "segment", "test_clips": 1, "test_crops": 1},
}
DATASET_LABELS = {"k400": "Kinetics400", "ssv2": "SomethingSomethingV2", "breakfast": "Breakfast",
                  "coin": "COIN", "hmdb51": "HMDB51", "ucf101": "UCF101"}
# head sizes that name one dataset on their own (10 would be Breakfast or an LVU task: not unique)
_UNIQUE_SIZES = {400: "k400", 174: "ssv2", 180: "coin", 51: "hmdb51", 101: "ucf101", 1000: "in1k"}
_NAME_HINTS = (("k400", "k400"), ("kinetics", "k400"), ("ssv2", "ssv2"), ("sthv2", "ssv2"),
               ("something", "ssv2"), ("breakfast", "breakfast"), ("coin", "coin"), ("lvu", "lvu"),
               ("hmdb", "hmdb51"), ("ucf", "ucf101"), ("in1k", "in1k"), ("imagenet", "in1k"))


def guess_dataset(source: str | None, num_classes: int) -> str | None:
    """The original dataset a checkpoint was trained on, from its file name or its head size."""
    if source:
        stem = Path(str(source)).name.lower()
        for hint, name in _NAME_HINTS:
            if re.search(rf"(^|[_\-.]){hint}", stem):
                return name
    return _UNIQUE_SIZES.get(int(num_classes or 0))


def class_names(dataset_or_file) -> list[str]:
    """Index-ordered class names: a list of names, a shipped list (``Kinetics400``,
    ``SomethingSomethingV2``, ``Breakfast``, ``COIN``, ``HMDB51``, ``UCF101``, ``LVU_*``; or a short
    name such as ``k400``) or a text file with one name per line (:func:`~.annotations.load_classes`)."""
    if isinstance(dataset_or_file, (list, tuple)):
        return [str(c) for c in dataset_or_file]
    key = DATASET_LABELS.get(str(dataset_or_file).lower(), str(dataset_or_file))
    res = resources.files("videomamba.data") / "labels" / f"{key}.txt"
    if res.is_file():
        return res.read_text(encoding="utf-8").splitlines()
    p = Path(dataset_or_file)
    if not p.is_file():
        shipped = sorted(f.name[:-4] for f in (resources.files("videomamba.data") / "labels").iterdir()
                         if f.name.endswith(".txt"))
        raise FileNotFoundError(f"class list {dataset_or_file!r}: not a file and not a shipped list "
                                f"({', '.join(shipped)})")
    from .annotations import load_classes
    return load_classes(p)


def shipped_class_lists() -> list[str]:
    return sorted(f.name[:-4] for f in (resources.files("videomamba.data") / "labels").iterdir()
                  if f.name.endswith(".txt"))


