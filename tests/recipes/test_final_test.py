"""Final test of the best checkpoint, exported weights, view micro-batching and LVU window pooling."""
import json
from types import SimpleNamespace

import pytest
import torch

from videomamba.engine.validation import pool_windows, run_eval
from videomamba.engine.tasks import ClassificationTask, RegressionTask
from videomamba.engine.trainer import train

from toy import TINY_MODEL, ToyVideos


def test_best_checkpoint_is_exported_and_tested(tmp_path):
    overrides = {**TINY_MODEL, "data.num_frames": 4, "data.img_size": 32, "data.batch_size": 4,
                 "data.num_workers": 0, "optim.lr": 3e-3, "optim.epochs": 3, "optim.warmup_steps": 0,
                 "train.out_dir": str(tmp_path / "run"), "train.amp": "none", "train.plots": False,
                 "train.progress": "none", "augment.mixup": 0.0, "augment.cutmix": 0.0}
    res = train(None, overrides, train_dataset=ToyVideos(16), val_dataset=ToyVideos(8, train=False, views=2))
    assert res.exported_weights.startswith("best (epoch ")
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    for k, v in res.model.state_dict().items():                       # the exported model is the best one
        assert torch.equal(v, best["model"][k]), k
    from safetensors.torch import load_file
    exported = load_file(str(res.export_dir / "model.safetensors"))
    assert torch.equal(exported["head.weight"], best["model"]["head.weight"])
    test = json.loads((tmp_path / "run/test_metrics.json").read_text())
    assert test["weights"] == res.exported_weights and test["views"] is None      # a Python dataset's own views
    # the test figure is the best weights' score on the test views, recomputed here independently
    loader = torch.utils.data.DataLoader(ToyVideos(8, train=False, views=2), batch_size=3)
    m, _ = run_eval(res.model, loader, ClassificationTask(4), torch.device("cpu"))
    assert test["top1"] == pytest.approx(m["top1"]) and test["n"] == 8
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["exported_weights"] == res.exported_weights and summary["test"]["top1"] == test["top1"]


class _Recorder(torch.nn.Module):
    """A fixed linear 'model' that records how many clips each forward pass received."""

    def __init__(self, k=3):
        super().__init__()
        self.w = torch.randn(3, k, generator=torch.Generator().manual_seed(0))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return x.mean(dim=(2, 3, 4)) @ self.w


def test_view_micro_batches_bound_the_forward_size():
    video = torch.randn(2, 12, 3, 2, 4, 4)                            # 2 videos x (4 clips x 3 crops)
    m = _Recorder()
    full = ClassificationTask(3).predict(m, video)
    assert m.sizes == [24]
    m.sizes.clear()
    chunked = ClassificationTask(3).predict(m, video, view_batch=5)
    assert max(m.sizes) == 5 and sum(m.sizes) == 24
    torch.testing.assert_close(chunked, full)
    # by hand: softmax per view, mean over a video's 12 views
    logits = video.reshape(24, 3, 2, 4, 4).mean(dim=(2, 3, 4)) @ m.w
    torch.testing.assert_close(full, torch.softmax(logits, -1).reshape(2, 12, 3).mean(1))
    reg = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 16, 1))
    torch.testing.assert_close(RegressionTask().predict(reg, video, view_batch=7), RegressionTask().predict(reg, video))


def test_pool_windows_by_hand():
    index = torch.tensor([0, 1, 2, 3, 4])
    pred = torch.tensor([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.1, 0.9], [0.5, 0.5]])
    label = torch.tensor([1, 1, 0, 1, 1])
    video = torch.tensor([0, 0, 1, 2, 2])                              # videos: {0, 1}, {2}, {3, 4}
    i, p, y, paths = pool_windows(index, pred, label, ["a", "a", "b", "c", "c"], video)
    assert i.tolist() == [0, 2, 3] and y.tolist() == [1, 0, 1] and paths == ["a", "b", "c"]
    torch.testing.assert_close(p, torch.tensor([[0.4, 0.6], [1.0, 0.0], [0.3, 0.7]]))
    with pytest.raises(ValueError, match="different labels"):
        pool_windows(index, pred, torch.tensor([1, 0, 0, 1, 1]), ["a"] * 5, video)


class _Windows(torch.utils.data.Dataset):
    """Three videos cut into 2, 1 and 3 windows; window w of video v is a constant clip of value c."""

    def __init__(self):
        from videomamba.data.annotations import Sample
        spec = [(0, 1, 0.9), (0, 1, -0.5), (1, 0, -1.0), (2, 1, -0.2), (2, 1, -0.1), (2, 1, -0.3)]
        self.samples = [Sample(f"v{v}.mp4", y, {"video": v}) for v, y, _ in spec]
        self.values = [c for _, _, c in spec]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        x = torch.full((2, 3, 2, 4, 4), self.values[i])
        return {"video": x, "label": self.samples[i].label, "index": i, "path": str(self.samples[i].path)}


class _Sign(torch.nn.Module):
    def forward(self, x):                                              # logits (-c, c): class 1 when c > 0
        c = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([-c, c], -1) * 10


def test_run_eval_pools_windows_into_videos():
    loader = torch.utils.data.DataLoader(_Windows(), batch_size=4)
    m, out = run_eval(_Sign(), loader, ClassificationTask(2), torch.device("cpu"), view_batch=3)
    # per window: class 1 only for window 0 of video 0; pooled, video 0 averages softmax(9, -9)-ish and
    # softmax(-5, 5): class 1 wins (0.5 * (1 + ~0) vs ...): computed explicitly below
    p = torch.softmax(torch.tensor([[-9.0, 9.0], [5.0, -5.0], [10.0, -10.0], [2.0, -2.0], [1.0, -1.0], [3.0, -3.0]]), -1)
    pooled = torch.stack([p[0:2].mean(0), p[2], p[3:6].mean(0)])
    torch.testing.assert_close(out["pred"], pooled)
    assert m["n"] == 3 and m["windows"] == 6
    assert m["top1"] == pytest.approx(100 * 2 / 3)                     # video 0 right (0.5 + eps), 1 right, 2 wrong
    assert out["windows"]["pred"].shape == (6, 2)
    m2, _ = run_eval(_Sign(), loader, ClassificationTask(2), torch.device("cpu"), pool=False)
    assert m2["n"] == 6


def test_window_predictions_of_a_long_file(tmp_path):
    """Per-window predictions of one file and their mean; each window equals evaluating that time range."""
    from videomamba.data import VideoDataset
    from videomamba.data.annotations import Sample
    from videomamba.data.synthetic import write_mp4
    from videomamba.apps.predict import window_predictions
    import numpy as np

    frames = np.zeros((24, 32, 32, 3), np.uint8)
    for i in range(24):
        frames[i, :, :, i % 3] = 10 * i                        # 3 s at 8 fps, brightness rises with time
    write_mp4(tmp_path / "long.mp4", frames, fps=8)
    torch.manual_seed(0)
    from videomamba import create_model
    model = create_model("videomamba_tiny", embed_dim=16, depth=1, patch_size=16, num_frames=4, img_size=32,
                         num_classes=3).eval()
    out = window_predictions(model, tmp_path / "long.mp4", 1.0, num_frames=4, img_size=32, clips=2, crops=1,
                             view_batch=1)
    assert [(w["start"], w["end"]) for w in out["windows"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    for w in out["windows"]:
        ds = VideoDataset([Sample(tmp_path / "long.mp4", 0, {"start": w["start"], "end": w["end"]})], train=False,
                          num_frames=4, img_size=32, num_clips=2, num_crops=1, classes=["v"])
        ref = ClassificationTask(3).predict(model, ds[0]["video"][None])[0]
        torch.testing.assert_close(w["pred"], ref)
    torch.testing.assert_close(out["pred"], torch.stack([w["pred"] for w in out["windows"]]).mean(0))


def test_lvu_run_scores_one_prediction_per_video(tmp_path):
    """An LVU file cut into windows: training uses windows, the final test and eval pool them per video."""
    from videomamba.data.synthetic import make_synthetic
    from videomamba.apps.evaluate import EvalOptions, evaluate

    make_synthetic(tmp_path / "d", per_class=4, frames=16, size=32, classes=["move_left", "move_right"])
    videos = sorted((tmp_path / "d").rglob("*.mp4"))
    lvu = tmp_path / "lvu.csv"
    lvu.write_text("".join(f"{p},{i % 2},2.0\n" for i, p in enumerate(videos)))     # 2 s videos
    res = train("lvu_director", {**TINY_MODEL, "model.num_classes": 2, "data.train": str(lvu), "data.val": str(lvu),
                                 "data.window": 1.0, "data.window_stride": 0.5, "data.num_frames": 4,
                                 "data.img_size": 32, "data.short_side": None, "data.batch_size": 4,
                                 "data.num_workers": 0, "data.test_clips": 1, "data.test_crops": 1,
                                 "optim.epochs": 1, "train.max_steps": 1, "train.amp": "none", "train.plots": False,
                                 "train.progress": "none", "train.out_dir": str(tmp_path / "run")})
    test = json.loads((tmp_path / "run/test_metrics.json").read_text())
    # 'release' windows of 1 s every 0.5 s over 2 s: starts 0, 0.5, 1.0 (1.5 -> 0.5 s = half a window: kept)
    assert test["n"] == len(videos) and test["windows"] == 4 * len(videos)
    out = evaluate(res.export_dir, lvu, options=EvalOptions(num_workers=0, progress=False, view_batch=1), log=None)
    assert out["n"] == len(videos) and out["windows"] == 4 * len(videos)
