"""Raw-frame folders, label-free lists, the release's LVU windows and pretraining crop."""
import numpy as np
import pytest
import torch

from videomamba.data import VideoDataset
from videomamba.data.annotations import AnnotationError, read_annotations, release_window_bounds
from videomamba.data.frames import FrameFolderReader
from videomamba.data.multiscale import crop_pairs, fixed_offsets, multiscale_crop


def _frames(folder, n, h=20, w=28):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):                        # frame i has value 10 * i (PNG under a .jpg name would be
        arr = np.full((h, w, 3), 10 * i, np.uint8)   # lossy as JPEG: write JPEG-named PNGs via format)
        Image.fromarray(arr).save(folder / f"img_{i + 1:05}.jpg", format="PNG")


def test_rawframes_list_and_reader(tmp_path):
    _frames(tmp_path / "v0", 8)
    _frames(tmp_path / "v1", 6)
    ann = tmp_path / "train.txt"
    ann.write_text("v0 8 1\nv1 6 0\n")
    a = read_annotations(ann)
    assert a.fmt == "rawframes" and [s.label for s in a.samples] == [1, 0]
    assert a.samples[0].extra["num_frames"] == 8
    r = FrameFolderReader(tmp_path / "v0", 8)
    got = r.get_frames([0, 3, 7])
    assert got.shape == (3, 20, 28, 3) and got[:, 0, 0, 0].tolist() == [0, 30, 70]   # 1-based files
    # the dataset samples frames from the folder: segment sampling at test time takes the middle of
    # each of 4 segments of 8 frames -> frames 1, 3, 5, 7 -> values 10, 30, 50, 70
    ds = VideoDataset(ann, train=False, num_frames=4, img_size=16, num_clips=1, num_crops=1)
    x = ds[0]["video"][0]                                                       # (3, 4, 16, 16)
    mean, std = 0.485, 0.229
    vals = (x[0, :, 8, 8] * std + mean) * 255
    torch.testing.assert_close(vals, torch.tensor([10.0, 30.0, 50.0, 70.0]), atol=0.6, rtol=0)


def test_rawframes_errors_name_the_problem(tmp_path):
    _frames(tmp_path / "v0", 3)
    with pytest.raises(Exception, match=r"frame 4 missing: img_00005.jpg"):
        FrameFolderReader(tmp_path / "v0", 5).get_frames([4])
    bad = tmp_path / "bad.txt"
    bad.write_text("v0 x 1\n")
    with pytest.raises(AnnotationError, match="bad.txt:1: frame count 'x'"):
        read_annotations(bad, fmt="rawframes")


def test_label_free_list(tmp_path):
    f = tmp_path / "unlabelled.txt"
    f.write_text("a.mp4\nsub/b.mp4\n")
    a = read_annotations(f)
    assert a.fmt == "list" and a.classes == [] and [s.path.name for s in a.samples] == ["a.mp4", "b.mp4"]


def test_release_lvu_windows_by_hand():
    assert release_window_bounds(50, 60, 16) == [(0.0, 50.0)]
    # 100 s: starts 0, 16, 32, 48, 64, 80, 96; ends 60, 76, 92, (108 -> 100: 52 s >= 30 kept),
    # (64: 36 s kept), (80: 20 s < 30 dropped), (96: dropped)
    assert release_window_bounds(100, 60, 16) == [(0, 60), (16, 76), (32, 92), (48, 100.0), (64, 100.0)]


def test_multiscale_crop_candidates_by_hand():
    # 320 x 240 frame, output 224: base 240 -> sides 240, 210, 180, 158; 224 is not within 3 px of any
    pairs = crop_pairs(320, 240, 224)
    assert (240, 240) in pairs and (210, 240) in pairs and (158, 240) not in pairs and len(pairs) == 10
    assert fixed_offsets(320, 240, 240, 240) == [(0, 0), (80, 0), (0, 0), (80, 0), (40, 0), (0, 0), (80, 0),
                                                 (40, 0), (40, 0), (20, 0), (60, 0), (20, 0), (60, 0)]
    clip = torch.randint(0, 255, (2, 3, 240, 320), dtype=torch.uint8)
    out = multiscale_crop(clip, 224, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.uint8


def test_pretrain_augment_preset():
    from videomamba.engine.config import load_config

    cfg = load_config(None, ["augment.preset=pretrain"])
    assert cfg.augment.crop == "multiscale" and cfg.augment.rand_augment is None and cfg.augment.mixup == 0
    cfg = load_config(None, ["augment.preset=pretrain", "augment.flip=false"])
    assert cfg.augment.flip is False                                           # explicit keys win
    from videomamba.engine.config import ConfigError
    with pytest.raises(ConfigError, match="augment.preset"):
        load_config(None, ["augment.preset=heavy"])


def test_hmdb51_split_folder_gives_train_and_test_subsets(tmp_path):
    """kaist_hmdb51_f16 points data.train and data.val at one split folder: training reads the
    videos marked 1, evaluation those marked 2."""
    from videomamba.engine.config import load_config
    from videomamba.engine.data import _annotation_kwargs

    (tmp_path / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (tmp_path / "cartwheel_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    cfg = load_config("kaist_hmdb51_f16")
    tr = read_annotations(tmp_path, fmt="hmdb51", **_annotation_kwargs(cfg, str(tmp_path), train=True))
    te = read_annotations(tmp_path, fmt="hmdb51", **_annotation_kwargs(cfg, str(tmp_path), train=False))
    assert sorted(s.path.name for s in tr.samples) == ["a.avi", "e.avi"]
    assert sorted(s.path.name for s in te.samples) == ["b.avi", "d.avi"]
