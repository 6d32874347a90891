"""Metrics against hand-computed values; the metrics log drops records past a resumed step."""
import json

import torch

from videomamba.engine.metrics import MetricsLog, classification_metrics, confusion_matrix, regression_metrics, topk_correct


def test_topk_confusion_and_per_class():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = torch.tensor([0, 1, 1, 1])
    assert topk_correct(probs, labels, (1, 2)) == {1: 2, 2: 4}
    cm = confusion_matrix(probs.argmax(-1), labels, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["top1"] == 50.0 and m["top5"] == 100.0 and m["n"] == 4
    assert m["per_class"] == {"a": 100.0, "b": 100.0 / 3, "c": None}
    nll = -torch.log(torch.tensor([0.7, 0.3, 0.4, 0.5])).mean()
    assert abs(m["loss"] - float(nll)) < 1e-6


def test_regression_metrics():
    m = regression_metrics(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0]))
    assert abs(m["mse"] - 5 / 3) < 1e-9 and abs(m["mae"] - 1.0) < 1e-9


def test_metrics_log_files_and_resume(tmp_path):
    log = MetricsLog(tmp_path)
    for s in (1, 2, 3):
        log.log({"kind": "train", "step": s, "loss": 1.0 / s})
    log.log({"kind": "val", "step": 3, "top1": 50.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 3]
    csv = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv[0] == "kind,step,loss,top1" and len(csv) == 5
    again = MetricsLog(tmp_path, resume_step=2)                            # resumed from a step-2 checkpoint
    assert [r["step"] for r in again.records] == [1, 2]
