"""Every annotation format, class maps, and every malformed-input error (file and line named)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from videomamba.data import AnnotationError, load_annotations, load_classes, read_annotations, save_classes
from videomamba.data.annotations import detect_format


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- Kinetics-style CSV (also Breakfast / COIN) --------------------------------------------------
def test_kinetics_csv_without_header(tmp_path):
    f = write(tmp_path / "ann" / "train.csv", "a/x.mp4,3\nb/y.mp4,0\n\n/abs/z.mp4,1\n")
    ann = read_annotations(f)
    assert ann.fmt == "csv"
    assert [(s.path, s.label) for s in ann.samples] == [
        (tmp_path / "ann" / "a/x.mp4", 3), (tmp_path / "ann" / "b/y.mp4", 0), (Path("/abs/z.mp4"), 1)]
    assert ann.classes == ["0", "1", "2", "3"]


def test_kinetics_csv_with_header_and_root_prefix(tmp_path):
    f = write(tmp_path / "train.csv", "path,label\nx.mp4,1\ny.mp4,0\n")
    samples = load_annotations(f, root=tmp_path / "videos")
    assert [(s.path, s.label) for s in samples] == [(tmp_path / "videos/x.mp4", 1), (tmp_path / "videos/y.mp4", 0)]
    # header=False keeps a first line that only looks like a header
    f2 = write(tmp_path / "odd.csv", "video,1\nx.mp4,0\n")
    assert [s.path.name for s in load_annotations(f2, header=False)] == ["video", "x.mp4"]


def test_space_separated_and_aliases(tmp_path):
    f = write(tmp_path / "list.txt", "vids/a.webm 12\nvids/b.webm 7\n")
    for fmt in ("auto", "kinetics", "breakfast", "coin", "csv"):
        samples = load_annotations(f, fmt=fmt)
        assert [(s.path.name, s.label) for s in samples] == [("a.webm", 12), ("b.webm", 7)]


def test_class_names_and_classes_txt(tmp_path):
    f = write(tmp_path / "train.csv", "a.mp4,run\nb.mp4,jump\nc.mp4,run\n")
    ann = read_annotations(f)
    assert ann.classes == ["jump", "run"] and [s.label for s in ann.samples] == [1, 0, 1]
    save_classes(tmp_path / "classes.txt", ["run", "jump", "swim"])
    ann = read_annotations(f)                       # classes.txt beside the file fixes the order
    assert ann.classes == ["run", "jump", "swim"] and [s.label for s in ann.samples] == [0, 1, 0]
    assert load_classes(tmp_path / "classes.txt") == ["run", "jump", "swim"]
    ann = read_annotations(f, classes=["jump", "run"])
    assert [s.label for s in ann.samples] == [1, 0, 1]


def test_quoted_csv_path_with_comma(tmp_path):
    f = write(tmp_path / "t.csv", '"my, video.mp4",2\n')
    assert load_annotations(f)[0].path.name == "my, video.mp4"


@pytest.mark.parametrize("text, match", [
    ("", r"annotation file is empty"),
    ("\n\n# only a comment\n", r"annotation file is empty"),
    ("a.mp4,1\nb.mp4\n", r"t\.csv:2: expected 2 comma-separated fields 'path,label', got 1"),
    ("a.mp4 1\nb.mp4 2 3\n", r"t\.csv:2: expected 2 space-separated fields"),
    ("a.mp4,1\nb.mp4,\n", r"t\.csv:2: expected 2"),
    ("a.mp4,1\nb.mp4,-2\n", r"t\.csv:2: label -2 is negative"),
    ("a.mp4,1\nb.mp4,0.5\n", r"t\.csv:2: label '0.5' is not an integer class index"),
    ("a.mp4,1\nb.mp4,run\n", r"t\.csv:2: label 'run' mixes integer indices and class names"),
])
def test_csv_errors_name_file_and_line(tmp_path, text, match):
    f = write(tmp_path / "t.csv", text)
    with pytest.raises(AnnotationError, match=match):
        load_annotations(f)


def test_label_out_of_range_for_given_classes(tmp_path):
    f = write(tmp_path / "t.csv", "a.mp4,0\nb.mp4,5\n")
    with pytest.raises(AnnotationError, match=r"t\.csv:2: label 5 is out of range for 3 classes"):
        load_annotations(f, classes=["a", "b", "c"])
    g = write(tmp_path / "n.csv", "a.mp4,walk\n")
    with pytest.raises(AnnotationError, match=r"n\.csv:1: unknown class name 'walk'"):
        load_annotations(g, classes=["run"])


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        load_annotations(tmp_path / "nope.csv")
    f = write(tmp_path / "t.csv", "a.mp4,0\n")
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        load_annotations(f, fmt="kinetics700")
    with pytest.raises(TypeError, match=r"unexpected options \['split'\]"):
        load_annotations(f, split=1)
    (tmp_path / "b.csv").write_bytes(b"a.mp4,1\n\xff\xfe,2\n")
    with pytest.raises(AnnotationError, match=r"b\.csv: not a UTF-8 text file"):
        load_annotations(tmp_path / "b.csv")


def test_classes_txt_errors(tmp_path):
    with pytest.raises(AnnotationError, match=r"classes\.txt:2: blank class name"):
        load_classes(write(tmp_path / "classes.txt", "a\n\nb\n"))
    with pytest.raises(AnnotationError, match="duplicate class names"):
        load_classes(write(tmp_path / "classes.txt", "a\nb\na\n"))
    with pytest.raises(AnnotationError, match="class list is empty"):
        load_classes(write(tmp_path / "classes.txt", "\n"))


# -- Something-Something V2 ------------------------------------------------------------------------
SSV2_LABELS = {"Approaching something with your camera": "0", "Holding something next to something": "1",
               "Pushing something from left to right": "2"}


def test_ssv2(tmp_path):
    write(tmp_path / "something-something-v2-labels.json", json.dumps(SSV2_LABELS))
    entries = [{"id": "78687", "label": "holding potato next to vicks", "template": "Holding [something] next to "
                "[something]", "placeholders": ["potato", "vicks"]},
               {"id": "42326", "label": "pushing a pen from left to right",
                "template": "Pushing [something] from left to right", "placeholders": ["a pen"]}]
    f = write(tmp_path / "train.json", json.dumps(entries))
    ann = read_annotations(f, root=tmp_path / "videos")
    assert ann.fmt == "ssv2"
    assert ann.classes == list(SSV2_LABELS)
    assert [(s.path, s.label, s.extra["id"]) for s in ann.samples] == [
        (tmp_path / "videos/78687.webm", 1, "78687"), (tmp_path / "videos/42326.webm", 2, "42326")]


def test_ssv2_errors(tmp_path):
    f = write(tmp_path / "validation.json", json.dumps([{"id": "1", "template": "Pushing [something]"}]))
    with pytest.raises(AnnotationError, match="labels JSON not found"):
        load_annotations(f)
    labels = write(tmp_path / "labels.json", json.dumps(SSV2_LABELS))
    with pytest.raises(AnnotationError, match=r"entry 0 \(id 1\): template 'Pushing something' is not in"):
        load_annotations(f)
    t = write(tmp_path / "test.json", json.dumps([{"id": "5"}]))
    with pytest.raises(AnnotationError, match="no 'template'"):
        load_annotations(t, labels=labels)
    bad = write(tmp_path / "broken.json", '[{"id": "5",\n "template": }]')
    with pytest.raises(AnnotationError, match=r"broken\.json:2: invalid JSON"):
        load_annotations(bad)
    with pytest.raises(AnnotationError, match="is a JSON object"):
        load_annotations(labels, fmt="ssv2")
    with pytest.raises(AnnotationError, match="no videos listed"):
        load_annotations(write(tmp_path / "e.json", "[]"), labels=labels)


# -- HMDB51 split files ---------------------------------------------------------------------------
def make_hmdb(tmp_path):
    d = tmp_path / "testTrainMulti_7030_splits"
    write(d / "brush_hair_test_split1.txt", "b1.avi 1 \nb2.avi 2 \nb3.avi 0 \n")
    write(d / "brush_hair_test_split2.txt", "b1.avi 2 \nb2.avi 1 \nb3.avi 1 \n")
    write(d / "cartwheel_test_split1.txt", "c1.avi 2 \nc2.avi 1 \n")
    write(d / "cartwheel_test_split2.txt", "c1.avi 1 \nc2.avi 0 \n")
    return d


def test_hmdb51_splits(tmp_path):
    d = make_hmdb(tmp_path)
    assert detect_format(d) == "hmdb51"
    ann = read_annotations(d, root=tmp_path / "hmdb51_org")
    assert ann.classes == ["brush_hair", "cartwheel"]
    assert [(s.path.relative_to(tmp_path).as_posix(), s.label) for s in ann.samples] == [
        ("hmdb51_org/brush_hair/b1.avi", 0), ("hmdb51_org/cartwheel/c2.avi", 1)]
    test = load_annotations(d, subset="test", root=tmp_path)
    assert [s.path.name for s in test] == ["b2.avi", "c1.avi"]
    # one split file names the split; its folder supplies the other classes
    two = load_annotations(d / "cartwheel_test_split2.txt", subset="train")
    assert sorted(s.path.name for s in two) == ["b2.avi", "b3.avi", "c1.avi"]


def test_hmdb51_errors(tmp_path):
    d = make_hmdb(tmp_path)
    write(d / "cartwheel_test_split3.txt", "c1.avi 1\nc2.avi train\n")
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split3\.txt:2: expected 'video_name\.avi 0\|1\|2'"):
        load_annotations(d, split=3)
    with pytest.raises(AnnotationError, match="no HMDB51 split files"):
        load_annotations(d, fmt="hmdb51", split=9)
    with pytest.raises(AnnotationError, match="subset must be"):
        load_annotations(d, subset="val")


# -- LVU ------------------------------------------------------------------------------------------
def test_lvu_classification_windows(tmp_path):
    f = write(tmp_path / "relation.csv", "path,label,duration\nv/a.mp4,2,100\nv/b.mp4,0,30.5\n")
    assert detect_format(f) == "lvu"
    ann = read_annotations(f)
    assert ann.fmt == "lvu" and not ann.regression and ann.classes == ["0", "1", "2"]
    a = [s for s in ann.samples if s.path.name == "a.mp4"]
    assert [(s.extra["start"], s.extra["end"]) for s in a] == [(0, 60), (16, 76), (32, 92), (40, 100)]
    assert all(s.label == 2 and s.extra["video"] == 0 and s.extra["duration"] == 100 for s in a)
    b = [s for s in ann.samples if s.path.name == "b.mp4"]
    assert [(s.extra["start"], s.extra["end"], s.extra["video"]) for s in b] == [(0, 30.5, 1)]
    whole = load_annotations(f, window=None)
    assert len(whole) == 2 and whole[0].extra == {"start": 0.0, "end": 100.0, "duration": 100.0, "video": 0}


def test_lvu_regression(tmp_path):
    f = write(tmp_path / "like.csv", "a.mp4 3.52 70\nb.mp4 4 20\n")
    ann = read_annotations(f, fmt="lvu")
    assert ann.regression and ann.classes == []
    assert [s.label for s in ann.samples] == [3.52, 3.52, 4.0]
    assert all(isinstance(s.label, float) for s in ann.samples)
    ints = read_annotations(write(tmp_path / "views.csv", "a.mp4,4,10\n"), regression=True)
    assert ints.regression and ints.samples[0].label == 4.0


@pytest.mark.parametrize("text, match", [
    ("a.mp4,1,60\nb.mp4,1\n", r"l\.csv:2: expected 3 comma-separated fields 'path,label,duration'"),
    ("a.mp4,1,60\nb.mp4,1,long\n", r"l\.csv:2: duration 'long' is not a number"),
    ("a.mp4,1,60\nb.mp4,1,0\n", r"l\.csv:2: duration must be > 0"),
])
def test_lvu_errors(tmp_path, text, match):
    f = write(tmp_path / "l.csv", text)
    with pytest.raises(AnnotationError, match=match):
        load_annotations(f, fmt="lvu")


def test_lvu_regression_target_must_be_numeric(tmp_path):
    f = write(tmp_path / "l.csv", "a.mp4,1.5,60\nb.mp4,high,60\n")
    with pytest.raises(AnnotationError, match=r"l\.csv:2: regression target 'high' is not a number"):
        load_annotations(f, fmt="lvu")


# -- folder-per-class -----------------------------------------------------------------------------
def test_folder_per_class(tmp_path):
    for p in ("walk/1.mp4", "walk/sub/2.webm", "run/3.avi", "run/notes.txt", "swim/.hidden/4.mp4"):
        write(tmp_path / "data" / p, "x")
    (tmp_path / "data" / "empty_class").mkdir()
    ann = read_annotations(tmp_path / "data")
    assert ann.fmt == "folder" and ann.classes == ["empty_class", "run", "swim", "walk"]
    assert [(s.path.relative_to(tmp_path / "data").as_posix(), s.label) for s in ann.samples] == [
        ("run/3.avi", 1), ("walk/1.mp4", 3), ("walk/sub/2.webm", 3)]


def test_folder_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    write(tmp_path / "flat" / "a.mp4", "x")
    with pytest.raises(AnnotationError, match="no class sub-folders"):
        load_annotations(tmp_path / "flat")
    write(tmp_path / "d" / "a" / "v.mp4", "x")
    write(tmp_path / "d" / "b" / "v.mp4", "x")
    with pytest.raises(AnnotationError, match=r"sub-folders \['b'\] are not in the given classes"):
        load_annotations(tmp_path / "d", classes=["a"])
    (tmp_path / "novids" / "a").mkdir(parents=True)
    with pytest.raises(AnnotationError, match="no samples found"):
        load_annotations(tmp_path / "novids")
