"""Synthetic labelled videos whose classes can only be told apart by temporal order.

Classes come in pairs, and the second member of a pair is the first one played backwards:

=============  ==============  ================================================================
class          partner         the main object...
=============  ==============  ================================================================
move_left      move_right      slides horizontally by 30-55 % of the frame
move_up        move_down       slides vertically by 30-55 % of the frame
rotate_cw      rotate_ccw      turns 90-180 degrees about its centre (clockwise on screen)
grow           shrink          scales from 35-50 % to 95-110 % of its size
appear         disappear       is absent until a frame in the middle half of the video, then present
=============  ==============  ================================================================

Because a partner video is rendered by the same random process and then reversed, the two classes of
a pair have exactly the same distribution of *sets* of frames: a model that sees the frames as an
unordered bag can tell the pairs apart but is at chance (50 %) between the members of a pair. Every
video draws its own shape (triangle, rectangle, ellipse, kite or L; none looks the same after a turn of
less than 180 degrees), colours (the object contrasts with the background), background (colour, gradient
and a static grain), speed, start position and a smaller distractor shape doing a random walk (whose
statistics are the same forwards and backwards).

Defaults: 8 classes (every pair but rotation, which small models learn far more slowly), 40 videos per
class (a quarter for validation), 16 frames of 64x64 px at 8 fps, h264 (libx264, yuv420p, CRF 17, one
thread and no macroblock-tree, so that the bytes depend neither on the core count nor on chance). Same
seed -> same annotation files and the same decoded frames.

Horizontal flips turn move_left into move_right and rotate_cw into rotate_ccw, so ``meta.json`` says
``"flip": false`` and :class:`~videomamba.data.VideoDataset` honours it. ``meta.json`` also carries
``label_maps``: what each symmetry of a clip (mirrors, the diagonal transpose, playing backwards) does to
the labels, for ``augment.symmetries``, which augments with those transforms and relabels the clip.
"""
from __future__ import annotations

import colorsys
import json
import logging
import multiprocessing
import os
import zlib
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text
from .video import write_video

log = logging.getLogger(__name__)

# class -> (motion, played backwards)
CLASS_MOTIONS = {
    "move_left": ("move_x", False), "move_right": ("move_x", True),
    "move_up": ("move_y", False), "move_down": ("move_y", True),
    "rotate_cw": ("rotate", False), "rotate_ccw": ("rotate", True),
    "grow": ("grow", False), "shrink": ("grow", True),
    "appear": ("appear", False), "disappear": ("appear", True),
}
SYNTHETIC_CLASSES = tuple(CLASS_MOTIONS)
# Rotation is left out of the defaults: in a probe (a small 3D CNN, 30 training videos per class, 8 frames
# of 64 px) every default class reached 80-100 % on validation while cw vs ccw stayed at chance.
DEFAULT_CLASSES = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink", "appear", "disappear")
SHAPES = ("triangle", "rectangle", "ellipse", "kite", "L")
_PER_FRAME = ("cx", "cy", "angle", "scale", "visible")
_SUPERSAMPLE = 4  # sub-pixels per side: anti-aliased edges, so sub-pixel motion shows in the pixels


def _image(motion: str, rev: bool, symmetry: str) -> tuple[str, bool]:
    """The (motion, played backwards) a video of ``motion`` shows after ``symmetry`` (see transforms)."""
    if symmetry == "reverse" or motion == "rotate":       # every mirror turns the sense of rotation
        return motion, not rev
    if (symmetry, motion) in (("hflip", "move_x"), ("vflip", "move_y")):
        return motion, not rev
    if symmetry == "transpose" and motion in ("move_x", "move_y"):
        return ("move_y" if motion == "move_x" else "move_x"), rev
    return motion, rev


def label_maps(classes) -> dict[str, dict[str, str]]:
    """For each symmetry that maps the class set onto itself, the classes it changes: ``{symmetry: {class:
    class it becomes}}`` (an empty map: every class keeps its label). Rendering is symmetric (positions,
    gradients, shapes and the distractor's walk are drawn from mirror- and time-symmetric distributions),
    so a transformed video is a sample of the class it is mapped to."""
    from .transforms import SYMMETRIES

    by_motion = {m: c for c, m in CLASS_MOTIONS.items()}
    out = {}
    for sym in SYMMETRIES:
        images = {c: by_motion[_image(*CLASS_MOTIONS[c], sym)] for c in classes}
        if all(v in classes for v in images.values()):
            out[sym] = {c: v for c, v in images.items() if v != c}
    return out


def class_pairs(classes) -> list[tuple[str, str]]:
    """Pairs ``(forward, backward)`` among ``classes`` that share a motion."""
    by_motion: dict[str, dict[bool, str]] = {}
    for c in classes:
        motion, rev = CLASS_MOTIONS[c]
        by_motion.setdefault(motion, {})[rev] = c
    return [(d[False], d[True]) for d in by_motion.values() if len(d) == 2]


# -- captions (make_synthetic(captions=True)) -----------------------------------------------------
MOTION_PHRASES = {
    "move_left": "moving to the left", "move_right": "moving to the right", "move_up": "moving up",
    "move_down": "moving down", "rotate_cw": "turning clockwise", "rotate_ccw": "turning counterclockwise",
    "grow": "growing", "shrink": "shrinking", "appear": "appearing", "disappear": "disappearing",
}
SHAPE_NAMES = {"triangle": "triangle", "rectangle": "rectangle", "ellipse": "oval", "kite": "kite", "L": "l shape"}
# hue (degrees) upper bounds -> colour name; the main object's saturation is >= 0.6 and value >= 0.5
_HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
         (290, "purple"), (345, "pink"), (360, "red"))
# what playing a clip backwards does to its caption (every motion phrase has its partner)
CAPTION_REVERSE = {"moving to the left": "moving to the right", "moving to the right": "moving to the left",
                   "moving up": "moving down", "moving down": "moving up",
                   "turning clockwise": "turning counterclockwise", "turning counterclockwise": "turning clockwise",
                   "growing": "shrinking", "shrinking": "growing", "appearing": "disappearing",
                   "disappearing": "appearing"}


def caption_groups() -> dict[str, list[str]]:
    """Interchangeable phrases of the captions (``meta.json`` ``caption_groups``; the source of
    ``video_text.negative_captions``): the shape names, and the colour words with their article
    ("a red", "an orange") so that a swap keeps the caption grammatical."""
    colours = list(dict.fromkeys(name for _, name in _HUES))
    return {"shape": list(SHAPE_NAMES.values()),
            "colour": [("an " if c[0] in "aeiou" else "a ") + c for c in colours]}


def colour_name(rgb) -> str:
    """A basic colour word for an RGB triple in [0, 1] (hue bins; white / black / grey when unsaturated)."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    if s < 0.25:
        return "white" if v > 0.8 else ("black" if v < 0.2 else "grey")
    deg = h * 360.0
    return next(name for bound, name in _HUES if deg < bound)


def caption_for(name: str, params: dict) -> str:
    """"a red triangle moving to the left": the main object's colour, shape and motion."""
    colour = colour_name(params["color"])
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {SHAPE_NAMES[params['shape']]} {MOTION_PHRASES[name]}"


def caption_parts(caption: str) -> dict[str, str]:
    """The inverse of :func:`caption_for`: "an orange l shape moving up" -> {"colour": "orange",
    "shape": "l shape", "motion": "moving up"} (for scoring which attribute a retrieval got wrong)."""
    for phrase in sorted(CAPTION_REVERSE, key=len, reverse=True):
        if caption.endswith(" " + phrase):
            words = caption[: -len(phrase) - 1].split(" ", 2)          # article, colour, shape
            if len(words) == 3:
                return {"colour": words[1], "shape": words[2], "motion": phrase}
    raise ValueError(f"caption {caption!r} is not 'a <colour> <shape> <motion>' of the synthetic set")


def reverse_caption(caption: str) -> str:
    """The caption of the same clip played backwards (direction words swapped)."""
    for phrase in sorted(CAPTION_REVERSE, key=len, reverse=True):
        if caption.endswith(" " + phrase):
            return caption[: -len(phrase)] + CAPTION_REVERSE[phrase]
    raise ValueError(f"caption {caption!r} names no motion of the synthetic set")


# -- rendering -----------------------------------------------------------------------------------
def _inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of points (object-local coordinates, circumradius about 1) inside ``shape``."""
    if shape == "ellipse":
        return (x / 1.0) ** 2 + (y / 0.5) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(x) <= 1.0) & (np.abs(y) <= 0.45)
    if shape == "L":
        a = (x >= -0.8) & (x <= 0.8) & (y >= 0.3) & (y <= 0.8)
        b = (x >= -0.8) & (x <= -0.3) & (y >= -0.8) & (y <= 0.8)
        return a | b
    verts = {"triangle": [(1.0, 0.0), (-0.6, 0.6), (-0.6, -0.6)],
             "kite": [(1.0, 0.0), (0.0, 0.5), (-0.6, 0.0), (0.0, -0.5)]}[shape]
    inside = np.ones_like(x, dtype=bool)
    n = len(verts)
    for i in range(n):
        (x0, y0), (x1, y1) = verts[i], verts[(i + 1) % n]
        # vertices run counter-clockwise in y-up terms: the inside is on the same side for every edge
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def _coverage(shape: str, grid_x, grid_y, cx, cy, radius, angle, size) -> np.ndarray:
    """Fraction of each pixel covered by the shape centred at (cx, cy), turned by ``angle`` (radians,
    clockwise on screen since y points down), circumradius ``radius`` (pixels)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = grid_x - cx, grid_y - cy
    lx = (c * dx + s * dy) / radius
    ly = (-s * dx + c * dy) / radius
    m = _inside(shape, lx, ly).astype(np.float32)
    k = _SUPERSAMPLE
    return m.reshape(size, k, size, k).mean(axis=(1, 3))


def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _luma(rgb) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _contrasting(rng, bg_luma: float, sat, val, min_diff: float) -> np.ndarray:
    for _ in range(100):
        rgb = _hsv(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))
        if abs(_luma(rgb) - bg_luma) >= min_diff:
            return rgb
    return np.array([1.0, 1.0, 1.0] if bg_luma < 0.5 else [0.0, 0.0, 0.0], dtype=np.float32)


def render_video(motion: str, frames: int, size: int, rng: np.random.Generator, with_params: bool = False,
                 distractor: bool = True):
    """One forward video of ``motion`` as uint8 (T, size, size, 3).

    ``with_params`` also returns the main object's per-frame state (``cx``, ``cy``, ``angle``, ``scale``,
    ``visible``) and its ``shape`` and ``color``, for tests and figures.
    """
    S, T = float(size), frames
    u = np.linspace(0.0, 1.0, T)
    k = _SUPERSAMPLE
    axis = (np.arange(size * k, dtype=np.float32) + 0.5) / k
    gx, gy = np.meshgrid(axis, axis)

    # background: colour + linear gradient + static grain
    bg = _hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.2, 0.8))
    direction = rng.uniform(0, 2 * np.pi)
    ramp = ((np.cos(direction) * (gx[::k, ::k] / S - 0.5) + np.sin(direction) * (gy[::k, ::k] / S - 0.5))
            * rng.uniform(0.0, 0.3))
    grain = rng.normal(0.0, 0.02, (size, size, 3))
    background = np.clip(bg + ramp[..., None] + grain, 0, 1).astype(np.float32)
    bg_luma = _luma(bg)

    # main object
    shape = SHAPES[rng.integers(len(SHAPES))]
    color = _contrasting(rng, bg_luma, (0.6, 1.0), (0.5, 1.0), 0.3)
    r = rng.uniform(0.14, 0.20) * S
    angle = np.full(T, rng.uniform(0, 2 * np.pi))
    scale = np.ones(T)
    visible = np.ones(T, dtype=bool)
    cx = np.full(T, rng.uniform(r, S - r))
    cy = np.full(T, rng.uniform(r, S - r))
    if motion in ("move_x", "move_y"):
        d = rng.uniform(0.30, 0.55) * S
        start = rng.uniform(r + d, S - r)
        path = start - d * u                                   # towards smaller x (left) or y (up)
        if motion == "move_x":
            cx = path
        else:
            cy = path
    elif motion == "rotate":
        angle = angle + np.deg2rad(rng.uniform(90.0, 180.0)) * u
    elif motion == "grow":
        s0, s1 = rng.uniform(0.35, 0.50), rng.uniform(0.95, 1.10)
        scale = s0 + (s1 - s0) * u
        rmax = r * s1
        cx = np.full(T, rng.uniform(rmax, S - rmax))
        cy = np.full(T, rng.uniform(rmax, S - rmax))
    elif motion == "appear":
        first = int(rng.integers(int(round(0.25 * T)), int(round(0.75 * T)) + 1))
        visible = np.arange(T) >= min(max(first, 1), T - 1)
    else:
        raise ValueError(f"unknown motion {motion!r}")

    # distractor: a small shape on a reflected random walk, behind the main object
    d_shape = SHAPES[rng.integers(len(SHAPES))]
    d_color = _contrasting(rng, bg_luma, (0.3, 1.0), (0.3, 1.0), 0.15)
    d_r = rng.uniform(0.05, 0.08) * S
    d_angle = rng.uniform(0, 2 * np.pi)
    pos = rng.uniform(d_r, S - d_r, 2)
    walk = []
    for _ in range(T):
        walk.append(pos.copy())
        pos = pos + rng.normal(0.0, 0.015 * S, 2)
        lo, hi = d_r, S - d_r
        pos = np.where(pos < lo, 2 * lo - pos, pos)
        pos = np.where(pos > hi, 2 * hi - pos, pos)
        pos = np.clip(pos, lo, hi)

    out = np.empty((T, size, size, 3), dtype=np.uint8)
    for t in range(T):
        img = background.copy()
        if distractor:
            a = _coverage(d_shape, gx, gy, walk[t][0], walk[t][1], d_r, d_angle, size)[..., None]
            img = img * (1 - a) + d_color * a
        if visible[t]:
            a = _coverage(shape, gx, gy, cx[t], cy[t], r * scale[t], angle[t], size)[..., None]
            img = img * (1 - a) + color * a
        out[t] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    if not with_params:
        return out
    params = {"cx": cx, "cy": cy, "angle": angle, "scale": scale, "visible": visible, "shape": shape,
              "color": color, "radius": r}
    return out, params


def video_rng(seed: int, name: str, i: int) -> np.random.Generator:
    """The generator of video ``i`` of class ``name``: independent of which other classes are made."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(i)]))


def render_class_video(name: str, i: int, frames: int = 16, size: int = 64, seed: int = 0,
                       with_params: bool = False, paired: bool = False, distractor: bool = True):
    """Video ``i`` of class ``name``; a backward class plays its motion's forward rendering in reverse.
    ``paired``: the backward class's video ``i`` is exactly the forward class's video ``i`` reversed
    (same object, colours and path), so that only the direction of motion tells them apart."""
    motion, backwards = CLASS_MOTIONS[name]
    rng_name = name
    if paired and backwards:
        rng_name = next(c for c, (m, b) in CLASS_MOTIONS.items() if m == motion and not b)
    video, params = render_video(motion, frames, size, video_rng(seed, rng_name, i), with_params=True,
                                 distractor=distractor)
    if backwards:
        video = video[::-1].copy()
        params = {k: (v[::-1].copy() if k in _PER_FRAME else v) for k, v in params.items()}
    return (video, params) if with_params else video


def write_mp4(path, video: np.ndarray, fps: int = 8, crf: int = 17) -> None:
    """Encode uint8 (T, H, W, 3) frames as h264, atomically and deterministically
    (:func:`videomamba.data.video.write_video`)."""
    T, H, W, _ = video.shape
    if H % 2 or W % 2:
        raise ValueError(f"{path}: h264 in yuv420p needs even frame sizes, got {W}x{H}")
    write_video(path, video, fps=fps, crf=crf)


def _write_one(task) -> str | None:
    path, name, i, frames, size, seed, fps, *captions = task
    if not captions or not captions[0]:
        write_mp4(path, render_class_video(name, i, frames, size, seed), fps=fps)
        return None
    # one object per clip: a caption names "the" object, a second shape would make it ambiguous
    video, params = render_class_video(name, i, frames, size, seed, with_params=True, paired=True, distractor=False)
    write_mp4(path, video, fps=fps)
    return caption_for(name, params)


def make_synthetic(out_dir, classes=None, per_class: int = 40, frames: int = 16, size: int = 64, seed: int = 0,
                   val_fraction: float = 0.25, fps: int = 8, progress: bool = False,
                   workers: int | None = 1, captions: bool = False) -> dict:
    """Write ``out_dir/videos/<class>/<class>_NNN.mp4``, ``train.csv``, ``val.csv`` (``path,label`` with
    paths relative to ``out_dir``), ``classes.txt`` (line i = class i) and ``meta.json``.

    The last ``round(per_class * val_fraction)`` videos of each class go to validation. Returns
    ``dict(train=Path, val=Path, classes=Path, root=Path, meta=Path)``. ``workers``: processes that
    render and encode (None: one per core); the files do not depend on it.

    ``captions``: also write a caption for every clip ("a red triangle moving to the left": colour,
    shape and motion of the main object) as ``captions_train.json`` / ``captions_val.json`` (the
    release's video-text layout) and ``captions_train.csv`` / ``captions_val.csv`` (``path,caption``),
    returned as ``captions_train`` / ``captions_val``. The clips then have no distractor shape (the
    caption names the one object), and they come in exact pairs: video ``i``
    of a backward class is video ``i`` of its forward class played backwards, so that two captions
    differing only in the direction of motion have clips with the same frames in opposite orders.
    ``meta.json`` gains ``caption_maps`` (what playing a clip backwards does to its caption).
    """
    classes = list(DEFAULT_CLASSES if classes is None else classes)
    unknown = [c for c in classes if c not in CLASS_MOTIONS]
    if unknown:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {list(SYNTHETIC_CLASSES)}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be at least 2 distinct names, got {classes}")
    if per_class < 1 or frames < 2 or fps < 1:
        raise ValueError(f"need per_class >= 1, frames >= 2 and fps >= 1, got {per_class}, {frames}, {fps}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (h264 yuv420p), got {size}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(per_class * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= per_class:
        raise ValueError(f"per_class={per_class} leaves no training video with val_fraction={val_fraction}")

    from tqdm.auto import tqdm

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    train_rows, val_rows = [], []
    jobs = [(label, name, i) for label, name in enumerate(classes) for i in range(per_class)]
    rels = [f"videos/{name}/{name}_{i:03d}.mp4" for _, name, i in jobs]
    tasks = [(root / rel, name, i, frames, size, seed, fps, captions) for rel, (_, name, i) in zip(rels, jobs)]
    texts: dict[int, str] = {}
    workers = min(len(tasks), os.cpu_count() or 1) if workers is None else max(1, int(workers))
    bar = tqdm(total=len(tasks), desc="synthetic videos", unit="video", disable=not progress)
    if workers == 1:
        for k, t in enumerate(tasks):
            texts[k] = _write_one(t)
            bar.update()
    else:
        # every video is a pure function of (class, index, seed): the bytes do not depend on the workers
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ctx.Pool(workers) as pool:
            for k, text in enumerate(pool.imap(_write_one, tasks, chunksize=8)):
                texts[k] = text
                bar.update()
    bar.close()
    for rel, (label, _, i) in zip(rels, jobs):
        (val_rows if i >= per_class - n_val else train_rows).append(f"{rel},{label}\n")
    out = {"train": root / "train.csv", "val": root / "val.csv", "classes": root / "classes.txt",
           "root": root, "meta": root / "meta.json"}
    atomic_write_text(out["train"], "".join(train_rows))
    atomic_write_text(out["val"], "".join(val_rows))
    atomic_write_text(out["classes"], "".join(f"{c}\n" for c in classes))
    meta = {"generator": "videomamba.data.synthetic", "version": 1, "seed": seed, "classes": classes,
            "pairs": class_pairs(classes), "per_class": per_class, "val_per_class": n_val, "frames": frames,
            "size": size, "fps": fps, "codec": "h264", "flip": False, "label_maps": label_maps(classes),
            "note": "pairs differ only in temporal order; horizontal flips swap left/right and cw/ccw labels, "
                    "label_maps lists what each symmetry (augment.symmetries) does to the labels"}
    if captions:
        meta["captions"] = True
        meta["caption_maps"] = {"reverse": dict(CAPTION_REVERSE)}
        meta["caption_groups"] = caption_groups()
        for split, split_rows in (("train", train_rows), ("val", val_rows)):
            wanted = {r.split(",", 1)[0] for r in split_rows}
            items = [{"video": rel, "caption": texts[k]} for k, rel in enumerate(rels) if rel in wanted]
            out[f"captions_{split}"] = root / f"captions_{split}.json"
            atomic_write_text(out[f"captions_{split}"], json.dumps(items, indent=1) + "\n")
            atomic_write_text(root / f"captions_{split}.csv",
                              "path,caption\n" + "".join(f"{it['video']},{it['caption']}\n" for it in items))
    atomic_write_text(out["meta"], json.dumps(meta, indent=2) + "\n")
    return out
