"""Checkpoints: the one way in for weights, and our own format.

- :mod:`.io`: safe reading of files (allow-listed unpickling), ``save_pretrained``.
- :mod:`.formats`: the format table; a file is parsed once into a :class:`Checkpoint`.
- :mod:`.infer`: the file decides the model (config from tensors and saved ``args`` / ``config``).
- :mod:`.adapters`: the filter, small per-key adapters with a :class:`LoadReport`.
- :mod:`.load`: ``model_from_checkpoint`` (behind ``create_model(..., pretrained=...)``) and
  ``load_checkpoint`` into a model built by hand.

Nothing here imports the training engine.
"""
from .adapters import LoadReport, checkpoint_filter, init_joint_from_spatial, split_pos_table
from .formats import TRAIN_FORMAT, Checkpoint, parse, read_checkpoint
from .infer import backbone_kwargs, infer_config
from .io import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_config_dir, read_file, save_pretrained
from .load import load_checkpoint, load_into, model_from_checkpoint

load_state_dict_file = read_file   # the name under which earlier releases exported it

__all__ = ["Checkpoint", "CheckpointError", "LoadReport", "TRAIN_FORMAT", "CONFIG_NAME", "WEIGHTS_NAME",
           "backbone_kwargs", "checkpoint_filter", "infer_config", "init_joint_from_spatial", "load_checkpoint",
           "load_into", "load_state_dict_file", "model_from_checkpoint", "parse", "read_checkpoint",
           "read_config_dir", "read_file", "save_pretrained", "split_pos_table"]
