"""Image classification data (the release's ``image_sm``): ImageNet-style lists and image folders.

Formats (``fmt``):

- ``"imagenet"``: the release's meta file, one image per line ``relative/path.JPEG label`` (space- or
  comma-separated, label an integer class index), relative to ``root`` (the release's
  ``root_dir``) or, without it, to the list's folder.
- ``"imagefolder"``: ``path/<class>/**/<image>``; classes are the sub-folder names, sorted.
- ``"auto"``: a folder -> imagefolder, a file -> imagenet.

Item keys, as the video pipeline's: ``video`` float32 ``(3, H, W)`` ImageNet-normalised (the image
models take ``(B, 3, H, W)``), ``label`` int, ``index``, ``path``.

Transforms (timm's ``create_transform`` as the release's ``image_sm`` uses it):

- training: random resized crop (scale 0.08-1, ratio 3/4-4/3, bicubic), horizontal flip 0.5,
  RandAugment (the same operations as the video pipeline, on one frame), normalisation, random
  erasing; mixup / cutmix act on the batch (``augment.*``).
- evaluation: resize the short side to ``int(img_size / crop_pct)`` (bicubic), centre crop
  ``img_size`` (``crop_pct`` 0.875, the release's ``--eval-crop-ratio``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import transforms as T
from .annotations import AnnotationError, Sample, _index_labels, _lines, _resolve, load_classes
from .rand_augment import RandAugment

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif")
IMAGE_FORMATS = ("auto", "imagenet", "imagefolder")
RELEASE_IMAGE_RAND_AUGMENT = "rand-m9-mstd0.5-inc1"


class ImageDecodeError(ValueError):
    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass
class ImageAugment:
    rand_augment: str | None = RELEASE_IMAGE_RAND_AUGMENT
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    random_erasing: float = 0.25
    crop_pct: float = 0.875


def image_augment(cfg) -> ImageAugment:
    """The training augmentation of a config's ``augment`` section."""
    a = cfg.augment
    return ImageAugment(rand_augment=a.rand_augment, scale=tuple(a.scale), ratio=tuple(a.ratio), flip=a.flip,
                        random_erasing=a.random_erasing)


def read_image_list(path, fmt: str = "auto", root=None, classes=None) -> tuple[list[Sample], list[str]]:
    """Parse an image annotation source into samples and class names (see the module docstring)."""
    path = Path(path)
    if fmt not in IMAGE_FORMATS:
        raise AnnotationError(f"unknown image annotation format {fmt!r}; expected one of {IMAGE_FORMATS}")
    if not path.exists():
        raise AnnotationError(f"{path}: image list or folder not found")
    if isinstance(classes, (str, Path)):
        classes = load_classes(classes)
    if fmt == "auto":
        fmt = "imagefolder" if path.is_dir() else "imagenet"
    if fmt == "imagefolder":
        if not path.is_dir():
            raise AnnotationError(f"{path}: the imagefolder format expects a folder of class sub-folders")
        dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise AnnotationError(f"{path}: no class sub-folders found (expected {path}/<class>/<image>)")
        names = [d.name for d in dirs]
        classes = list(classes) if classes is not None else names
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise AnnotationError(f"{path}: sub-folders {unknown} are not in the given classes")
        index = {c: i for i, c in enumerate(classes)}
        samples = []
        for d in dirs:
            files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            samples += [Sample(p, index[d.name]) for p in files]
    else:
        if path.is_dir():
            raise AnnotationError(f"{path}: is a folder; the imagenet format expects a list 'path label'")
        rows = []
        for lineno, line in _lines(path):
            fields = [f.strip() for f in line.split(",")] if "," in line else line.rsplit(None, 1)
            if len(fields) != 2 or not all(fields):
                raise AnnotationError(f"{path}:{lineno}: expected 'relative/path.JPEG label', got {line!r}")
            rows.append((lineno, fields))
        labels, classes = _index_labels(path, [(ln, f[1]) for ln, f in rows], classes)
        base = Path(root) if root is not None else path.parent
        samples = [Sample(_resolve(f[0], base), lab) for (_, f), lab in zip(rows, labels)]
    if not samples:
        raise AnnotationError(f"{path}: no images found ({fmt} format)")
    return samples, list(classes)


def load_image(path) -> torch.Tensor:
    """An RGB image file -> uint8 (3, H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageDecodeError(path, f"not a readable image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _resize_bicubic(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> uint8 (..., 3, *size), bicubic, anti-aliased when shrinking."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    x = F.interpolate(img.float().reshape(-1, *img.shape[-3:]), size=size, mode="bicubic", align_corners=False,
                      antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).reshape(*img.shape[:-2], *size)


def eval_transform(img: torch.Tensor, img_size: int, crop_pct: float = 0.875) -> torch.Tensor:
    """uint8 (3, H, W) -> normalised float (3, img_size, img_size): short side to int(img_size / crop_pct),
    centre crop."""
    short = int(img_size / crop_pct)
    h, w = T.short_side_size(img.shape[-2], img.shape[-1], short)
    x = _resize_bicubic(img, (h, w))
    x = T.center_crop(x, img_size)
    return T.normalize(x.unsqueeze(0))[:, 0]                                  # (3, H, W)


def train_transform(img: torch.Tensor, img_size: int, aug: ImageAugment, rand_augment: RandAugment | None
                    ) -> torch.Tensor:
    top, left, h, w = T.random_resized_crop_params(img.shape[-2], img.shape[-1], aug.scale, aug.ratio)
    x = _resize_bicubic(T.crop(img, top, left, h, w), (img_size, img_size)).unsqueeze(0)   # (1, 3, H, W)
    if aug.flip and float(torch.rand(1)) < 0.5:
        x = T.hflip(x)
    if rand_augment is not None:
        x = rand_augment(x)
    x = T.normalize(x)                                                        # (3, 1, H, W)
    if aug.random_erasing > 0:
        x = T.random_erasing(x, aug.random_erasing)
    return x[:, 0]


class ImageDataset(torch.utils.data.Dataset):
    """Map-style image dataset (ImageNet list or image folder); see the module docstring."""

    def __init__(self, annotations, root=None, fmt: str = "auto", train: bool = True, img_size: int = 224,
                 classes=None, augment: ImageAugment | None = None, crop_pct: float = 0.875):
        if isinstance(annotations, (list, tuple)):
            self.samples = list(annotations)
            names = load_classes(classes) if isinstance(classes, (str, Path)) else classes
            self.classes = list(names) if names is not None else [
                str(i) for i in range(max(int(s.label) for s in self.samples) + 1)]
        else:
            self.samples, self.classes = read_image_list(annotations, fmt, root, classes)
        if int(img_size) < 1:
            raise ValueError(f"img_size must be >= 1, got {img_size}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.train, self.img_size, self.crop_pct = train, int(img_size), float(crop_pct)
        self.augment = augment if augment is not None else ImageAugment()
        self._rand_augment = (RandAugment.from_string(self.augment.rand_augment)
                              if train and self.augment.rand_augment else None)
        self.num_clips = self.num_crops = 1
        self.regression = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        s = self.samples[index]
        img = load_image(s.path)
        if self.train:
            x = train_transform(img, self.img_size, self.augment, self._rand_augment)
        else:
            x = eval_transform(img, self.img_size, self.crop_pct)
        return {"video": x, "label": int(s.label), "index": index, "path": str(s.path)}


def make_synthetic_images(out_dir, classes=("red", "green", "blue", "gray"), per_class: int = 6, size: int = 32,
                          seed: int = 0, val_per_class: int = 2) -> dict:
    """A tiny image set for tests: class c is a square of its colour on noise. Writes
    ``out_dir/train/<class>/*.png``, ``out_dir/val/<class>/*.png`` and ImageNet-style lists
    ``out_dir/meta/{train,val}.txt`` (``<split>/<class>/<file> label``). Returns the paths."""
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "gray": (128, 128, 128),
               "yellow": (220, 220, 30), "cyan": (30, 220, 220)}
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    lists = {"train": [], "val": []}
    for split, n in (("train", per_class), ("val", val_per_class)):
        for ci, c in enumerate(classes):
            d = out / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 80, (size, size + 8, 3), dtype=np.uint8)
                s = size // 2
                y, x = rng.integers(0, size - s + 1), rng.integers(0, size + 8 - s + 1)
                img[y:y + s, x:x + s] = colours.get(c, (255, 255, 255))
                name = f"{c}_{i:03d}.png"
                Image.fromarray(img).save(d / name)
                lists[split].append(f"{split}/{c}/{name} {ci}")
    (out / "meta").mkdir(exist_ok=True)
    for split, lines in lists.items():
        (out / "meta" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    return {"root": out, "train_list": out / "meta/train.txt", "val_list": out / "meta/val.txt",
            "train_dir": out / "train", "val_dir": out / "val", "classes": out / "classes.txt"}
