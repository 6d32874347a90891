"""``train`` and ``pretrain`` share one flag table and one exit-status mapping."""
import pytest

import videomamba.engine as engine
from videomamba.cli import main
from videomamba.engine import NonFiniteLossError, TrainingInterrupted


@pytest.mark.parametrize("command", [["train"], ["pretrain", "--teacher", "teacher_dir"]])
@pytest.mark.parametrize("error, status", [(NonFiniteLossError(float("nan"), 3, 0, 3, None), 3),
                                           (TrainingInterrupted(5, None), 130)])
def test_training_commands_map_errors_to_the_same_status(monkeypatch, capsys, command, error, status):
    seen = {}

    def fake_train(cfg, resume=None, **kw):
        seen["cfg"], seen["resume"] = cfg, resume
        raise error
    monkeypatch.setattr(engine, "train", fake_train)
    rc = main([*command, "-c", "demo", "--epochs", "2", "--device", "cpu", "-o", "runs/x", "--resume",
               "optim.lr=0.5"])
    assert rc == status
    assert str(error) in capsys.readouterr().err
    cfg = seen["cfg"]
    # flags and KEY=VALUE overrides land in the same config keys for both commands
    assert (cfg.optim.epochs, cfg.train.device, cfg.train.out_dir, cfg.optim.lr) == (2, "cpu", "runs/x", 0.5)
    assert seen["resume"] == "auto"


def test_distillation_and_pretraining_together_are_refused_once(capsys):
    rc = main(["pretrain", "-c", "demo", "--teacher", "t", "distill.teacher=s", "--print-config"])
    assert rc == 2 and "distill.teacher / pretrain.teacher" in capsys.readouterr().err
