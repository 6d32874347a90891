"""Building blocks: the bidirectional mixer, the residual block, patch and position embeddings."""
from .block import Block, DropPath, RMSNorm, drop_path
from .embed import PatchEmbed, resample_joint_pos, resample_spatial_pos, resample_temporal_pos, sincos_table
from .mixer import FULL_FLIP, BiMambaMixer, ScanOrder, init_linear
from .workspace import Workspace, inference_workspace
from .workspace import for_pass as workspace_for_pass

__all__ = ["Block", "DropPath", "RMSNorm", "drop_path", "PatchEmbed", "BiMambaMixer", "ScanOrder",
           "FULL_FLIP", "init_linear", "resample_spatial_pos", "resample_temporal_pos", "resample_joint_pos",
           "sincos_table", "Workspace", "inference_workspace", "workspace_for_pass"]
