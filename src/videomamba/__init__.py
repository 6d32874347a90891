"""VideoMamba: video understanding with bidirectional selective state-space models.

``import videomamba`` stays light: the video decoding and training stacks load on first use.
"""
__version__ = "0.1.0"

from . import runtime as _runtime  # noqa: E402 -- no torch in it: the `videomamba` command makes
_runtime.cli_process_defaults()     # OpenMP's threads wait passively, which must be decided before torch loads

from .models import VideoMamba, VideoMambaConfig, create_model, get_config, list_models  # noqa: E402


def __getattr__(name):  # lazy: checkpoint helpers pull in safetensors only when used
    if name in ("load_checkpoint", "save_pretrained", "checkpoint_filter", "load_state_dict_file"):
        from . import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(f"module 'videomamba' has no attribute {name!r}")


__all__ = ["VideoMamba", "VideoMambaConfig", "create_model", "get_config", "list_models",
           "load_checkpoint", "save_pretrained", "checkpoint_filter", "__version__"]
