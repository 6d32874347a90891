"""VideoDataset end to end: annotation file -> normalised clips, views, flips, windows, bad files, workers."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from video_files import denormalize, read_id
from videomamba.data import (AugmentConfig, Sample, VideoDataset, VideoDecodeError, load_video_clips,
                             make_synthetic)
from videomamba.data.sampling import segment_indices

LO = [(0 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
HI = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
NO_AUG = AugmentConfig.none()


def clip_ids(video) -> list[int]:
    return [read_id(f) for f in denormalize(video)]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("syn"), per_class=3, frames=12, size=32, val_fraction=0.34)


def csv_for(tmp_path, rows):
    f = tmp_path / "ann.csv"
    f.write_text("".join(f"{p},{lab}\n" for p, lab in rows))
    return f


def test_train_item_keys_shapes_and_ranges(videos, tmp_path):
    ann = csv_for(tmp_path, [(videos["square"], 1), (videos["h264"], 0)])
    ds = VideoDataset(ann, num_frames=8, img_size=32, train=True,
                      augment=AugmentConfig(random_erasing=0.0))
    assert len(ds) == 2 and ds.classes == ["0", "1"] and ds.num_classes == 2
    for i in range(2):
        item = ds[i]
        assert set(item) == {"video", "label", "index", "path"}
        assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
        assert item["label"] == [1, 0][i] and isinstance(item["label"], int)
        assert item["index"] == i and item["path"] == str([videos["square"], videos["h264"]][i])
        for c in range(3):
            v = item["video"][c]
            assert v.min() >= LO[c] - 1e-5 and v.max() <= HI[c] + 1e-5


def test_train_frames_come_one_per_segment(videos):
    ds = VideoDataset([Sample(videos["square"], 0)], num_frames=8, img_size=48, augment=NO_AUG)
    for _ in range(5):
        got = clip_ids(ds[0]["video"])
        assert all(8 * x <= i < 8 * x + 8 for x, i in enumerate(got)), got


def test_repeated_augmentation_views_share_frames(videos):
    ds = VideoDataset([Sample(videos["square"], 0)], num_frames=4, img_size=48, repeat_aug=3, augment=NO_AUG)
    v = ds[0]["video"]
    assert v.shape == (3, 3, 4, 48, 48)
    assert torch.equal(v[0], v[1]) and torch.equal(v[1], v[2])     # one decode, deterministic views
    ds = VideoDataset([Sample(videos["square"], 0)], num_frames=4, img_size=32, repeat_aug=2)
    v = ds[0]["video"]
    assert v.shape == (2, 3, 4, 32, 32) and not torch.equal(v[0], v[1])


def test_test_views_are_clip_major_with_expected_frames(videos):
    ds = VideoDataset([Sample(videos["square"], 0)], num_frames=4, img_size=48, train=False,
                      num_clips=2, num_crops=3)
    v = ds[0]["video"]
    assert v.shape == (6, 3, 4, 48, 48)
    for view in range(6):
        clip = view // 3
        assert clip_ids(v[view]) == segment_indices(64, 4, False, clip, 2)
    assert clip_ids(v[0]) == [4, 20, 36, 52] and clip_ids(v[3]) == [12, 28, 44, 60]


def test_three_crops_cover_the_long_side(videos):
    ds = VideoDataset([Sample(videos["h264"], 0)], num_frames=2, img_size=48, train=False, num_crops=3)
    v = ds[0]["video"]                                                 # 64x48 frames: crops at x = 0, 8, 16
    ref = VideoDataset([Sample(videos["h264"], 0)], num_frames=2, img_size=48, short_side=48, train=False,
                       num_crops=1)[0]["video"][0]                    # centre crop at x = 8
    assert v.shape == (3, 3, 2, 48, 48)
    assert torch.equal(v[1], ref)
    assert torch.equal(v[0][..., 8:], v[1][..., :40]) and torch.equal(v[2][..., :40], v[1][..., 8:])


def test_flip_is_all_or_nothing_per_clip(videos):
    aug = AugmentConfig(rand_augment=None, random_erasing=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    kw = dict(num_frames=64, sampling="dense", sample_stride=1, img_size=48)
    ref = VideoDataset([Sample(videos["square"], 0)], augment=aug, flip=False, **kw)[0]["video"]
    ds = VideoDataset([Sample(videos["square"], 0)], augment=aug, **kw)
    outcomes = set()
    for _ in range(16):
        v = ds[0]["video"]
        if torch.equal(v, ref):
            outcomes.add("plain")
        elif torch.equal(v, ref.flip(-1)):
            outcomes.add("flipped")
        else:
            raise AssertionError("frames of one clip were flipped differently")
    assert outcomes == {"plain", "flipped"}
    off = VideoDataset([Sample(videos["square"], 0)], augment=aug, flip=False, **kw)
    assert all(torch.equal(off[0]["video"], ref) for _ in range(4))


def test_flip_switched_off_for_ssv2_and_synthetic(tmp_path, synthetic):
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something from left to right": "0"}))
    (tmp_path / "train.json").write_text(json.dumps([{"id": "1", "template": "Pushing [something] from left "
                                                                             "to right"}]))
    assert VideoDataset(tmp_path / "train.json").flip is False
    assert VideoDataset(synthetic["train"]).flip is False
    (tmp_path / "k.csv").write_text("a.mp4,0\n")
    assert VideoDataset(tmp_path / "k.csv").flip is True


REVERSE = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down", "move_down": "move_up",
           "grow": "shrink", "shrink": "grow", "appear": "disappear", "disappear": "appear"}
TRANSPOSE = {"move_left": "move_up", "move_up": "move_left", "move_right": "move_down", "move_down": "move_right"}


def test_symmetries_transform_the_clip_and_relabel(synthetic):
    # 12 frames sampled from 12-frame videos: the training frames are fixed, only the symmetries are random
    kw = dict(num_frames=12, img_size=32, classes=synthetic["classes"])
    plain = VideoDataset(synthetic["train"], augment=NO_AUG, **kw)
    aug = AugmentConfig(rand_augment=None, random_erasing=0.0, flip=False, random_crop=False,
                        symmetries=("reverse", "transpose"))
    ds = VideoDataset(synthetic["train"], augment=aug, **kw)
    names = ds.classes
    torch.manual_seed(0)
    for i in (0, 2, 4, 8):                            # move_left, move_right, move_up, grow
        ref, y = plain[i]["video"], names[plain[i]["label"]]
        candidates = {"none": (ref, y), "reverse": (ref.flip(1), REVERSE[y]),
                      "transpose": (ref.transpose(-1, -2), TRANSPOSE.get(y, y)),
                      "both": (ref.flip(1).transpose(-1, -2), TRANSPOSE.get(REVERSE[y], REVERSE[y]))}
        seen = set()
        for _ in range(24):
            item = ds[i]
            match = [k for k, (v, _) in candidates.items() if torch.equal(item["video"], v)]
            assert match, "the clip is not the original under any combination of the symmetries"
            assert names[item["label"]] in {candidates[k][1] for k in match}
            seen.add(match[0])
        assert len(seen) == 4 if y.startswith("move") else seen >= {"none", "reverse"}
    # evaluation never transforms
    ev = VideoDataset(synthetic["train"], augment=aug, train=False, **kw)
    assert torch.equal(ev[0]["video"][0], plain[0]["video"]) and ev[0]["label"] == plain[0]["label"]


def test_symmetry_errors_name_the_cause(synthetic, tmp_path):
    with pytest.raises(ValueError, match="augment.symmetries must be a list of distinct names from .*got \\['spin'\\]"):
        AugmentConfig(symmetries=("spin",))
    root = tmp_path / "copy"
    shutil.copytree(synthetic["root"], root)
    meta = json.loads((root / "meta.json").read_text())
    del meta["label_maps"]["transpose"]
    (root / "meta.json").write_text(json.dumps(meta))
    aug = AugmentConfig(rand_augment=None, symmetries=("transpose",))
    with pytest.raises(ValueError, match="lists 'transpose', but .*meta.json declares no label map for it"):
        VideoDataset(root / "train.csv", augment=aug)
    meta["label_maps"]["transpose"] = {"move_left": "move_sideways"}
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown \\['move_sideways'\\]"):
        VideoDataset(root / "train.csv", augment=aug)
    meta["label_maps"]["transpose"] = {"move_left": "move_up"}           # move_up would then have two sources
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not one-to-one"):
        VideoDataset(root / "train.csv", augment=aug)
    assert VideoDataset(root / "train.csv", augment=aug, train=False).symmetries == []


def test_lvu_window_limits_the_frames(videos, tmp_path):
    f = tmp_path / "lvu.csv"
    f.write_text(f"{videos['square']},1,2.56\n")                    # 64 frames at 25 fps
    ds = VideoDataset(f, fmt="lvu", train=False, num_frames=4, img_size=48,
                      annotation_kwargs=dict(window=1.0, stride=0.5))
    assert [(s.extra["start"], s.extra["end"]) for s in ds.samples] == [(0, 1), (0.5, 1.5), (1.0, 2.0),
                                                                         (1.5, 2.5), (1.56, 2.56)]
    # window [0.5, 1.5) holds frames 13..37 (25 frames): segment centres 13 + [3, 9, 15, 21]
    assert clip_ids(ds[1]["video"][0]) == [16, 22, 28, 34]
    assert ds[1]["label"] == 1


def test_regression_labels_are_float(videos, tmp_path):
    f = tmp_path / "like.csv"
    f.write_text(f"{videos['square']},3.25,2.56\n")
    ds = VideoDataset(f, fmt="lvu", img_size=32, num_frames=2, annotation_kwargs=dict(window=None))
    item = ds[0]
    assert ds.regression and ds.num_classes == 1 and ds.classes == []
    assert item["label"] == 3.25 and isinstance(item["label"], float)


def test_skip_bad_reports_and_skips(videos, tmp_path):
    rows = [(videos["square"], 0), (videos["missing"], 1), (videos["zero_bytes"], 1),
            (videos["h264"], 1), (videos["truncated_mp4"], 0), (videos["audio"], 1)]
    ann = csv_for(tmp_path, rows)
    with pytest.raises(VideoDecodeError, match=r"does_not_exist\.mp4: file not found"):
        VideoDataset(ann, img_size=32, num_frames=2)[1]
    ds = VideoDataset(ann, img_size=32, num_frames=2, skip_bad=True)
    assert len(ds) == 2 and [s.path for s in ds.samples] == [videos["square"], videos["h264"]]
    reasons = dict(ds.bad_files)
    assert set(reasons) == {str(videos[k]) for k in ("missing", "zero_bytes", "truncated_mp4", "audio")}
    assert reasons[str(videos["zero_bytes"])] == "empty file (0 bytes)"
    assert reasons[str(videos["audio"])].startswith("no video stream")
    assert reasons[str(videos["truncated_mp4"])].startswith("truncated")


def test_skip_bad_replaces_a_file_that_breaks_later(videos, tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(videos["square"], a)
    shutil.copy(videos["h264"], b)
    ds = VideoDataset(csv_for(tmp_path, [(a, 0), (b, 1)]), img_size=32, num_frames=2, skip_bad=True)
    a.write_bytes(b"")
    item = ds[0]
    assert item["path"] == str(b) and item["index"] == 1 and item["label"] == 1
    assert ds.bad_files == [(str(a), "empty file (0 bytes)")]
    b.unlink()
    with pytest.raises(VideoDecodeError, match="all failed"):
        ds[0]


def test_all_bad_files_is_an_error(videos, tmp_path):
    with pytest.raises(VideoDecodeError, match="all 2 video files are unusable"):
        VideoDataset(csv_for(tmp_path, [(videos["missing"], 0), (videos["text"], 0)]), skip_bad=True)


def test_dataloader_with_two_workers(synthetic):
    ds = VideoDataset(synthetic["train"], num_frames=4, img_size=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen, labels, batches = [], [], []
    for batch in loader:
        assert batch["video"].shape[1:] == (3, 4, 32, 32)
        assert batch["label"].dtype == torch.int64
        seen += batch["index"].tolist()
        labels += batch["label"].tolist()
        batches.append(batch["video"])
    assert sorted(seen) == list(range(len(ds)))
    assert labels == [ds.samples[i].label for i in seen]
    again = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True,
                                        generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y["video"]) for x, y in zip(batches, again)), "same seed, different batches"


def test_distributed_sampler_splits_the_dataset(synthetic):
    ds = VideoDataset(synthetic["val"], num_frames=2, img_size=32, train=False)
    parts = [list(torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(len(ds)))


def test_load_video_clips_spreads_over_the_whole_video(videos):
    x = load_video_clips(videos["square"], num_frames=2, num_clips=4, img_size=48)
    assert x.shape == (4, 3, 2, 48, 48)
    assert [clip_ids(v) for v in x] == [[4, 36], [12, 44], [20, 52], [28, 60]]
    dense = load_video_clips(videos["square"], num_frames=4, num_clips=3, img_size=48, sampling="dense",
                             sample_stride=2, num_crops=3)
    assert dense.shape == (9, 3, 4, 48, 48)
    assert clip_ids(dense[0]) == [0, 2, 4, 6] and clip_ids(dense[8]) == [57, 59, 61, 63]
    long = load_video_clips(videos["h264"], num_frames=8, num_clips=2, img_size=32, short_side=40, num_crops=3)
    assert long.shape == (6, 3, 8, 32, 32)


def test_constructor_errors(videos, tmp_path):
    with pytest.raises(ValueError, match="sampling must be one of"):
        VideoDataset([Sample(videos["square"], 0)], sampling="uniform")
    with pytest.raises(ValueError, match=r"short_side \(100\) must be >= img_size \(224\)"):
        VideoDataset([Sample(videos["square"], 0)], short_side=100)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        VideoDataset([Sample(videos["square"], 0)], num_frames=0)
    with pytest.raises(ValueError, match="non-empty list of Sample"):
        VideoDataset([])
    with pytest.raises(IndexError, match="out of range"):
        VideoDataset([Sample(videos["square"], 0)])[1]


def test_classes_and_class_map_saving(synthetic, tmp_path):
    ds = VideoDataset(synthetic["train"], img_size=32, num_frames=2)
    assert ds.classes[:2] == ["move_left", "move_right"] and ds.num_classes == 8
    ds.save_classes(tmp_path / "classes.txt")
    assert (tmp_path / "classes.txt").read_text().split() == ds.classes
    names = np.array(ds.classes)
    assert all(names[s.label] in s.path.name for s in ds.samples)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=(0.5, 0.2)), "scale"),
    (dict(ratio=(0, 1)), "ratio"),
    (dict(random_erasing=1.5), "probability"),
    (dict(rand_augment="rand-m7-z2"), "RandAugment policy"),
])
def test_augment_config_is_checked_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


def test_cache_gives_the_same_items_and_decodes_each_file_once(videos, tmp_path, monkeypatch):
    f = tmp_path / "lvu.csv"
    f.write_text(f"{videos['square']},1,2.56\n")                    # several windows of one file
    kw = dict(fmt="lvu", num_frames=4, img_size=48, annotation_kwargs=dict(window=1.0, stride=0.5))
    plain, cached = VideoDataset(f, train=False, **kw), VideoDataset(f, train=False, cache=True, **kw)
    import videomamba.data.dataset as dataset_module
    opened = []
    real_open = dataset_module.open_video
    monkeypatch.setattr(dataset_module, "open_video", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    for _ in range(2):
        for i in range(len(plain)):
            assert torch.equal(plain[i]["video"], cached[i]["video"])
    assert len(opened) == 2 * len(plain) + 1                         # the cached dataset opened its file once
    assert clip_ids(cached[1]["video"][0]) == [16, 22, 28, 34]          # same frames as the window test above
    train_plain = VideoDataset(f, train=True, augment=NO_AUG, **kw)
    train_cached = VideoDataset(f, train=True, augment=NO_AUG, cache=True, **kw)
    torch.manual_seed(0)
    a = [clip_ids(train_plain[i]["video"]) for i in range(len(plain))]
    torch.manual_seed(0)
    assert a == [clip_ids(train_cached[i]["video"]) for i in range(len(plain))]
