"""Training: the Python API behind ``videomamba train`` / ``pretrain``.

    from videomamba.engine import train
    result = train("demo", {"data.train": "train.csv", "data.val": "val.csv", "train.out_dir": "runs/x"})

Modules: ``config`` (typed YAML config), ``tasks`` (batch -> loss dict, views -> prediction),
``optim`` (param groups, layer decay, lr rule, cosine schedule), ``ema``, ``data`` (datasets from
a config, resumable seeded loaders), ``state`` (training checkpoints), ``trainer`` (the loop, DDP),
``validation`` (the scoring loop), ``methods`` (distillation, masked pretraining), ``metrics``.
Applications that use a trained model (predict, evaluate, convert, demo) are in
:mod:`videomamba.apps`.
"""
import importlib

# imported on first use, so that ``from videomamba.engine.tasks import ...`` does not load the trainer
_EXPORTS = {"ConfigError": "config", "TrainConfig": "config", "dump_yaml": "config", "list_configs": "config",
            "load_config": "config", "NonFiniteLossError": "trainer", "TrainingInterrupted": "trainer",
            "TrainResult": "trainer", "train": "trainer", "run_eval": "validation"}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["train", "load_config", "TrainConfig", "TrainResult", "ConfigError", "NonFiniteLossError",
           "TrainingInterrupted", "run_eval", "dump_yaml", "list_configs"]
