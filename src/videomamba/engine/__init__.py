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
from .config import ConfigError, TrainConfig, dump_yaml, list_configs, load_config
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train
from .validation import run_eval

__all__ = ["train", "load_config", "TrainConfig", "TrainResult", "ConfigError", "NonFiniteLossError",
           "TrainingInterrupted", "run_eval", "dump_yaml", "list_configs"]
