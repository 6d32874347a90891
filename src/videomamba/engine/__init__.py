"""Training, evaluation and inference: the Python API behind ``videomamba train / eval / predict / demo``.

    from videomamba.engine import train, evaluate, predict
    result = train("demo", {"data.train": "train.csv", "data.val": "val.csv", "train.out_dir": "runs/x"})
    evaluate(result.export_dir, "val.csv", shuffle_frames=True)
    predict(["clip.mp4"], result.export_dir, topk=3)

Modules: ``config`` (typed YAML config), ``tasks`` (batch -> loss dict), ``optim`` (param groups,
layer decay, lr rule, cosine schedule), ``ema``, ``data`` (resumable seeded loaders), ``state``
(training checkpoints), ``trainer`` (the loop, DDP), ``evaluate``, ``predict``, ``metrics``,
``convert``, ``demo``.
"""
from .config import ConfigError, TrainConfig, dump_yaml, list_configs, load_config
from .evaluate import evaluate, format_eval, run_eval
from .predict import format_predictions, predict
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train

__all__ = ["train", "evaluate", "predict", "load_config", "TrainConfig", "TrainResult",
           "ConfigError", "NonFiniteLossError", "TrainingInterrupted", "run_eval", "format_eval", "format_predictions", "dump_yaml",
           "list_configs", "demo"]


def demo(*args, **kwargs):
    """Synthetic data -> train -> evaluate (+ shuffled frames) -> predict; see :func:`engine.demo.run_demo`."""
    from .demo import run_demo
    return run_demo(*args, **kwargs)
