"""Model configs, presets and the VideoMamba backbone."""
from .config import VideoMambaConfig
from .registry import create_model, get_config, list_models, register_model
from .videomamba import VideoMamba, build_scan_orders

__all__ = ["VideoMambaConfig", "VideoMamba", "create_model", "get_config", "list_models",
           "register_model", "build_scan_orders"]
