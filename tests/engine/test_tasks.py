"""Tasks: losses against hand computations, view averaging, frame shuffling."""
import torch
import torch.nn.functional as F

from videomamba.engine.tasks import ClassificationTask, RegressionTask, flatten_views, shuffle_frames


class Linear(torch.nn.Module):
    """(N, 3, T, H, W) -> (N, K): a fixed linear map of the clip mean, so expectations are exact."""

    def __init__(self, k=3):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3 * 2, k))

    def forward(self, x):
        f = torch.cat([x.mean((2, 3, 4)), x[:, :, 0].mean((2, 3))], 1)
        return f @ self.w


def test_label_smoothing_loss_and_repeated_views():
    torch.manual_seed(0)
    m = Linear(3)
    task = ClassificationTask(3, label_smoothing=0.1)
    video = torch.randn(2, 2, 3, 4, 8, 8)                    # (B, V, ...): repeated augmentation
    label = torch.tensor([2, 0])
    out = task.train_step(m, {"video": video, "label": label}, torch.device("cpu"))
    logits = m(video.reshape(4, 3, 4, 8, 8))
    y = torch.tensor([2, 2, 0, 0])
    target = torch.full((4, 3), 0.1 / 3)
    target[torch.arange(4), y] += 0.9
    expected = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(out["loss"], expected, atol=1e-6) and out["count"] == 4
    assert int(out["correct"]) == int((logits.argmax(-1) == y).sum())


def test_soft_targets_from_mixup():
    torch.manual_seed(0)
    m = Linear(4)
    soft = torch.tensor([[0.7, 0.3, 0, 0], [0.3, 0.7, 0, 0]])
    task = ClassificationTask(4, mixup=lambda x, y: (x * 0.5, soft))
    x = torch.randn(2, 3, 2, 4, 4)
    out = task.train_step(m, {"video": x, "label": torch.tensor([0, 1])}, torch.device("cpu"))
    expected = -(soft * F.log_softmax(m(x * 0.5), -1)).sum(-1).mean()
    assert torch.allclose(out["loss"], expected, atol=1e-6) and "correct" not in out


def test_predict_averages_softmax_over_views():
    torch.manual_seed(0)
    m = Linear(5)
    video = torch.randn(3, 4, 3, 2, 4, 4)                    # 3 videos x 4 views
    p = ClassificationTask(5).predict(m, video)
    manual = torch.stack([F.softmax(m(video[i]), -1).mean(0) for i in range(3)])
    assert torch.allclose(p, manual, atol=1e-6) and torch.allclose(p.sum(-1), torch.ones(3))


def test_regression_mse_and_view_mean():
    m = Linear(1)
    x = torch.randn(2, 3, 3, 2, 4, 4)
    y = torch.tensor([0.5, -1.0])
    task = RegressionTask()
    out = task.train_step(m, {"video": x, "label": y}, torch.device("cpu"))
    pred = m(x.reshape(6, 3, 2, 4, 4)).reshape(-1)
    assert torch.allclose(out["loss"], ((pred - y.repeat_interleave(3)) ** 2).mean(), atol=1e-6)
    assert torch.allclose(task.predict(m, x)[:, 0], pred.reshape(2, 3).mean(1), atol=1e-6)


def test_shuffle_frames_permutes_each_clip():
    x = torch.arange(2 * 3 * 3 * 6 * 1 * 1, dtype=torch.float).reshape(2, 3, 3, 6, 1, 1)   # (B, V, C, T, 1, 1)
    g = torch.Generator().manual_seed(0)
    s = shuffle_frames(x, g)
    assert s.shape == x.shape
    changed = 0
    for b in range(2):
        for v in range(3):
            orig, new = x[b, v, 0, :, 0, 0], s[b, v, 0, :, 0, 0]
            assert torch.equal(orig.sort().values, new.sort().values)          # a permutation of the frames
            perm = (new - orig[0]).long()
            for c in range(3):                                               # same permutation for every channel
                assert torch.equal(s[b, v, c, :, 0, 0], x[b, v, c, perm, 0, 0])
            changed += int(not torch.equal(orig, new))
    assert changed >= 5
    assert flatten_views(x[:, 0])[1] == 1 and flatten_views(x)[0].shape == (6, 3, 6, 1, 1)
