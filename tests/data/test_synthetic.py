"""Synthetic dataset: determinism, class semantics, bag-of-frames symmetry, files and the CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from videomamba.data import DEFAULT_CLASSES, SYNTHETIC_CLASSES, decode_video, load_annotations, make_synthetic
from videomamba.data.synthetic import (CLASS_MOTIONS, class_pairs, label_maps, render_class_video, render_video,
                                       video_rng)

SMALL = dict(per_class=2, frames=8, size=32, val_fraction=0.5)


def decoded(out) -> dict[str, np.ndarray]:
    rows = load_annotations(out["train"]) + load_annotations(out["val"])
    return {s.path.relative_to(out["root"]).as_posix(): decode_video(s.path).frames.numpy() for s in rows}


def test_same_seed_same_dataset(tmp_path):
    a = make_synthetic(tmp_path / "a", seed=7, **SMALL)
    b = make_synthetic(tmp_path / "b", seed=7, workers=2, **SMALL)        # rendered by two processes
    for key in ("train", "val", "classes", "meta"):
        assert a[key].read_text() == b[key].read_text()
    files = sorted(p.relative_to(a["root"]) for p in a["root"].rglob("*.mp4"))
    assert files and all((a["root"] / f).read_bytes() == (b["root"] / f).read_bytes() for f in files)
    fa, fb = decoded(a), decoded(b)
    assert fa.keys() == fb.keys() and len(fa) == 16
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    c = make_synthetic(tmp_path / "c", seed=8, **SMALL)
    fc = decoded(c)
    assert not any(np.array_equal(fa[k], fc[k]) for k in fa)


def test_files_and_split(tmp_path):
    out = make_synthetic(tmp_path, per_class=4, frames=6, size=16, val_fraction=0.25)
    assert out["root"] == tmp_path
    train, val = load_annotations(out["train"]), load_annotations(out["val"])
    assert len(train) == 8 * 3 and len(val) == 8
    assert out["classes"].read_text().split() == list(DEFAULT_CLASSES)
    for s in train + val:
        assert s.path.is_file() and s.path.parent.name == DEFAULT_CLASSES[s.label]
        clip = decode_video(s.path)
        assert clip.frames.shape == (6, 16, 16, 3) and clip.fps == 8
    assert sorted(p.stem[-3:] for p in (s.path for s in val) if "grow" == p.parent.name) == ["003"]
    meta = json.loads(out["meta"].read_text())
    assert meta["flip"] is False and meta["pairs"] == [list(p) for p in class_pairs(DEFAULT_CLASSES)]
    assert meta["label_maps"] == label_maps(DEFAULT_CLASSES)
    assert (out["train"].read_text().splitlines()[0] == "videos/move_left/move_left_000.mp4,0")


@pytest.mark.parametrize("name", SYNTHETIC_CLASSES)
def test_class_semantics(name):
    for i in range(4):
        _, p = render_class_video(name, i, frames=16, size=64, with_params=True)
        check_semantics(name, p)


def check_semantics(name, p):
    """The main object's per-frame state ``p`` does what class ``name`` says (64 px frames)."""
    first, last = 0, -1
    if name == "move_left":
        assert p["cx"][last] < p["cx"][first] - 0.25 * 64 and np.ptp(p["cy"]) == 0
    elif name == "move_right":
        assert p["cx"][last] > p["cx"][first] + 0.25 * 64
    elif name == "move_up":
        assert p["cy"][last] < p["cy"][first] - 0.25 * 64 and np.ptp(p["cx"]) == 0
    elif name == "move_down":
        assert p["cy"][last] > p["cy"][first] + 0.25 * 64
    elif name == "rotate_cw":    # image y points down: a growing angle turns clockwise on screen
        assert np.all(np.diff(p["angle"]) > 0) and np.pi / 2 - 1e-6 <= np.ptp(p["angle"]) <= np.pi + 1e-6
        assert np.ptp(p["cx"]) == 0 and np.ptp(p["cy"]) == 0      # turns in place
    elif name == "rotate_ccw":
        assert np.all(np.diff(p["angle"]) < 0)
    elif name == "grow":
        assert np.all(np.diff(p["scale"]) > 0) and p["scale"][last] / p["scale"][first] > 1.9
    elif name == "shrink":
        assert np.all(np.diff(p["scale"]) < 0)
    elif name == "appear":
        assert not p["visible"][0] and p["visible"][-1] and np.all(np.diff(p["visible"].astype(int)) >= 0)
    elif name == "disappear":
        assert p["visible"][0] and not p["visible"][-1] and np.all(np.diff(p["visible"].astype(int)) <= 0)
    if name.startswith("move") or name.startswith("rotate") or name in ("grow", "shrink"):
        assert p["visible"].all()


def transformed_state(p, symmetry, size=64):
    """The main object's per-frame state after a symmetry of the clip, worked out by hand: mirrors move the
    centre and negate the angle (a mirror turns clockwise into counter-clockwise), the transpose swaps x and
    y, playing backwards reverses every per-frame array."""
    q = {k: np.asarray(p[k], dtype=float).copy() for k in ("cx", "cy", "angle", "scale", "visible")}
    if symmetry == "hflip":
        q["cx"], q["angle"] = size - q["cx"], np.pi - q["angle"]
    elif symmetry == "vflip":
        q["cy"], q["angle"] = size - q["cy"], -q["angle"]
    elif symmetry == "transpose":
        q["cx"], q["cy"], q["angle"] = q["cy"], q["cx"], np.pi / 2 - q["angle"]
    else:
        q = {k: v[::-1] for k, v in q.items()}
    q["visible"] = q["visible"].astype(bool)
    return q


def test_label_maps_follow_the_motion():
    expected_reverse = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down",
                        "move_down": "move_up", "grow": "shrink", "shrink": "grow", "appear": "disappear",
                        "disappear": "appear"}
    maps = label_maps(DEFAULT_CLASSES)
    assert maps["reverse"] == expected_reverse
    assert maps["hflip"] == {"move_left": "move_right", "move_right": "move_left"}
    assert maps["transpose"] == {"move_left": "move_up", "move_up": "move_left", "move_right": "move_down",
                                 "move_down": "move_right"}
    # a symmetry is declared only where it maps the class set onto itself; an empty map keeps every label
    assert label_maps(["move_left", "move_right", "grow"]) == {"hflip": {"move_left": "move_right",
                                                                         "move_right": "move_left"},
                                                               "vflip": {}}
    # every declared map sends a video to a class whose semantics the transformed motion satisfies
    every = label_maps(SYNTHETIC_CLASSES)
    assert sorted(every) == ["hflip", "reverse", "transpose", "vflip"]
    for sym, mapping in every.items():
        for name in SYNTHETIC_CLASSES:
            for i in range(2):
                _, p = render_class_video(name, i, frames=16, size=64, with_params=True)
                check_semantics(mapping.get(name, name), transformed_state(p, sym))


def object_centroid(frame, color):
    """Centroid of pixels close to the object's colour, from pixels alone."""
    d = np.abs(frame.astype(float) - np.asarray(color) * 255).sum(-1)
    ys, xs = np.nonzero(d < 60)
    return xs.mean(), ys.mean(), len(xs)


@pytest.mark.parametrize("name, axis, sign", [("move_left", 0, -1), ("move_right", 0, 1), ("move_up", 1, -1),
                                              ("move_down", 1, 1)])
def test_motion_is_visible_in_the_decoded_pixels(tmp_path, name, axis, sign):
    out = make_synthetic(tmp_path, classes=[name, "grow"], per_class=3, val_fraction=0.0)
    for s in load_annotations(out["train"]):
        if s.label != 0:
            continue
        i = int(s.path.stem[-3:])
        _, p = render_class_video(name, i, with_params=True)
        frames = decode_video(s.path).frames.numpy()
        start, end = object_centroid(frames[0], p["color"]), object_centroid(frames[-1], p["color"])
        assert start[2] > 20 and end[2] > 20, "object not found by colour"
        assert sign * (end[axis] - start[axis]) > 0.2 * 64


def test_partner_class_is_the_same_process_played_backwards():
    # bag-of-frames symmetry holds by construction: the partner's frames are a forward rendering reversed
    for name, (motion, backwards) in CLASS_MOTIONS.items():
        if not backwards:
            continue
        video = render_class_video(name, 3, frames=10, size=32, seed=5)
        forward = render_video(motion, 10, 32, video_rng(5, name, 3))
        assert np.array_equal(video, forward[::-1])
    pairs = class_pairs(SYNTHETIC_CLASSES)
    assert len(pairs) == 5 and ("rotate_cw", "rotate_ccw") in pairs


def test_videos_vary():
    shapes = {render_class_video("grow", i, frames=4, size=32, with_params=True)[1]["shape"] for i in range(30)}
    assert len(shapes) >= 4
    firsts = [render_class_video("grow", i, frames=4, size=32)[0] for i in range(5)]
    assert len({f.tobytes() for f in firsts}) == 5


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=["move_left", "jump"]), r"unknown synthetic classes \['jump'\]"),
    (dict(classes=["grow"]), "at least 2 distinct"),
    (dict(size=33), "even number"),
    (dict(per_class=1, val_fraction=0.5), "leaves no training video"),
    (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(tmp_path, **kwargs)


def test_cli(tmp_path, capsys):
    from videomamba import cli
    from videomamba.commands import make_synthetic as cmd

    assert cli.COMMANDS["make-synthetic"][0] == "make_synthetic"
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "out"), "--classes", "appear", "disappear", "--per-class", "3",
                              "--frames", "6", "--size", "24", "--seed", "3"])
    assert cmd.run(args) == 0
    captured = capsys.readouterr()
    assert "synthetic videos" in captured.err and "100%" in captured.err      # tqdm progress bar
    assert (tmp_path / "out" / "classes.txt").read_text() == "appear\ndisappear\n"
    assert len(load_annotations(tmp_path / "out" / "train.csv")) == 4
    assert decode_video(tmp_path / "out" / "videos/appear/appear_000.mp4").frames.shape == (6, 24, 24, 3)
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "--classes", "dance"])


def test_cli_end_to_end(tmp_path, capsys):
    from videomamba.cli import main

    assert main(["make-synthetic", str(tmp_path / "d"), "--per-class", "2", "--frames", "4", "--size", "16",
                 "--classes", "grow", "shrink"]) == 0
    assert (tmp_path / "d" / "val.csv").read_text() == ("videos/grow/grow_001.mp4,0\n"
                                                         "videos/shrink/shrink_001.mp4,1\n")
    assert main(["make-synthetic", str(tmp_path / "e"), "--size", "15"]) == 2
    assert "size must be an even number" in capsys.readouterr().err
