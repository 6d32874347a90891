"""make_synthetic(captions=True): a caption per clip, paired clips, caption symmetries."""
from __future__ import annotations

import json

import numpy as np
import pytest

from videomamba.data.synthetic import (caption_for, caption_parts, colour_name, make_synthetic,
                                       render_class_video, reverse_caption)


def test_colour_names():
    assert colour_name((1.0, 0.0, 0.0)) == "red"
    assert colour_name((0.0, 0.0, 1.0)) == "blue"
    assert colour_name((0.0, 0.8, 0.0)) == "green"
    assert colour_name((1.0, 1.0, 0.0)) == "yellow"
    assert colour_name((1.0, 0.5, 0.0)) == "orange"
    assert colour_name((1.0, 1.0, 1.0)) == "white"


def test_caption_and_its_reverse():
    params = {"color": (1.0, 0.0, 0.0), "shape": "triangle"}
    assert caption_for("move_left", params) == "a red triangle moving to the left"
    assert caption_for("grow", {"color": (1.0, 0.5, 0.0), "shape": "ellipse"}) == "an orange oval growing"
    assert reverse_caption("a red triangle moving to the left") == "a red triangle moving to the right"
    assert reverse_caption("a blue kite turning counterclockwise") == "a blue kite turning clockwise"
    assert reverse_caption("a blue kite disappearing") == "a blue kite appearing"


def test_caption_parts_inverts_caption_for():
    assert caption_parts("an orange l shape moving to the left") == {"colour": "orange", "shape": "l shape",
                                                                    "motion": "moving to the left"}
    assert caption_parts("a blue kite turning counterclockwise")["motion"] == "turning counterclockwise"
    for shape, word in (("L", "l shape"), ("ellipse", "oval"), ("kite", "kite")):
        for name, phrase in (("move_up", "moving up"), ("appear", "appearing"), ("disappear", "disappearing")):
            cap = caption_for(name, {"color": (0.0, 0.0, 1.0), "shape": shape})
            assert caption_parts(cap) == {"colour": "blue", "shape": word, "motion": phrase}
    with pytest.raises(ValueError, match="not 'a <colour> <shape> <motion>'"):
        caption_parts("a red triangle dancing")


def test_paired_clips_are_exact_reversals():
    a, pa = render_class_video("move_left", 3, frames=6, size=32, seed=1, with_params=True, paired=True)
    b, pb = render_class_video("move_right", 3, frames=6, size=32, seed=1, with_params=True, paired=True)
    assert np.array_equal(a[::-1], b)
    assert caption_for("move_right", pb) == reverse_caption(caption_for("move_left", pa))
    # without pairing the default dataset is unchanged: the partner has its own random stream
    c = render_class_video("move_right", 3, frames=6, size=32, seed=1)
    assert not np.array_equal(a[::-1], c)


def test_make_synthetic_writes_captions(tmp_path):
    out = make_synthetic(tmp_path, classes=["move_left", "move_right", "grow", "shrink"], per_class=3, frames=4,
                         size=32, captions=True)
    train = json.loads(out["captions_train"].read_text())
    val = json.loads(out["captions_val"].read_text())
    assert len(train) + len(val) == 12 and len(val) == 4
    assert all((tmp_path / it["video"]).is_file() and it["caption"].startswith(("a ", "an ")) for it in train + val)
    by_video = {it["video"]: it["caption"] for it in train + val}
    for v, c in by_video.items():
        if "/move_left/" in v:
            assert by_video[v.replace("move_left", "move_right")] == reverse_caption(c)
    csv_lines = (tmp_path / "captions_val.csv").read_text().splitlines()
    assert csv_lines[0] == "path,caption" and len(csv_lines) == 5
    meta = json.loads(out["meta"].read_text())
    assert meta["captions"] and meta["caption_maps"]["reverse"]["growing"] == "shrinking"
    # every caption holds exactly one phrase of each group (what a negative caption swaps)
    groups = meta["caption_groups"]
    assert set(groups) == {"shape", "colour"} and "an orange" in groups["colour"] and "l shape" in groups["shape"]
    for c in by_video.values():
        for phrases in groups.values():
            assert sum(c.startswith(p + " ") or f" {p} " in c for p in phrases) == 1, (c, phrases)
