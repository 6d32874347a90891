"""Typed model configuration. Variants are data: presets are configs with a name."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from ..layers.embed import stem_pool

SCAN_ORDERS = ("spatial_first", "temporal_first", "spatiotemporal_v1", "spatiotemporal_v2")
BACKWARD_ORDERS = ("full_flip", "spatial_reversal", "temporal_reversal")
POS_EMBEDS = ("factorised", "joint", "sinusoidal", "none")
JOINT_POS_INITS = ("expand", "interpolate_spatial", "interpolate_dim", "random")
CLS_POSITIONS = ("head", "middle", "none")
MERGES = ("sum", "mean")
RECOMPUTE = ("auto", "always", "never")
INITS = ("release", "fan_in")

_ALIASES = {  # accepted spellings -> canonical
    "spatial-first": "spatial_first", "temporal-first": "temporal_first",
    "spatiotemporal-v1": "spatiotemporal_v1", "spatiotemporal-v2": "spatiotemporal_v2",
    "st_v1": "spatiotemporal_v1", "st_v2": "spatiotemporal_v2",
    "full-flip": "full_flip", "flip": "full_flip", "spatiotemporal_reversal": "full_flip",
    "spatio-temporal": "full_flip", "spatial-reversal": "spatial_reversal",
    "temporal-reversal": "temporal_reversal", "factorized": "factorised", "learned": "joint",
    "sincos": "sinusoidal", "interpolate-spatial": "interpolate_spatial",
    "interpolate-dim": "interpolate_dim", "interp_spatial": "interpolate_spatial",
    "interp_dim": "interpolate_dim", "mean_pool": "none", "avg": "mean",
}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    v = _ALIASES.get(str(value).lower(), str(value).lower())
    if v not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(allowed)}")
    return v


@dataclass
class VideoMambaConfig:
    """Everything that defines a VideoMamba backbone + classifier.

    ``num_frames`` and ``img_size`` fix the size of the learned position tables; the model
    accepts other frame counts and resolutions at run time by resampling them.
    """

    embed_dim: int = 192
    depth: int = 24
    num_classes: int = 400
    num_frames: int = 8
    img_size: int = 224
    patch_size: int = 16
    patch_stride: int | None = None       # None: non-overlapping patches (stride = patch_size); Vim's stride8 files: 8
    tubelet_size: int = 1
    # Widths of a convolutional stem before the patch projection (layers.PatchEmbed); () = the release's
    # linear patch embedding. Small models from scratch on small objects learn shapes far sooner with it.
    conv_stem: tuple[int, ...] = ()
    in_chans: int = 3
    image: bool = False                   # True: (B, 3, H, W) input, no temporal table
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None            # None: ceil(embed_dim / 16)
    scan_order: str = "spatial_first"
    backward_order: str = "full_flip"
    pos_embed: str = "factorised"
    joint_pos_init: str = "expand"        # how an image table initialises a joint one (checkpoint filter)
    cls_position: str = "head"            # "none": no cls token, mean pooling
    merge: str = "sum"
    drop_rate: float = 0.0                # dropout before the head
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-5
    zero_dt_bias: bool = False            # reproduce the release's re-zeroed dt bias at init
    # Init of in_proj / x_proj / head weights: "release" trunc_normal(0.02), or "fan_in" N(0, 1/fan_in).
    # 0.02 suits the released widths (192+); at small widths it starves the scan's token mixing (B and C
    # come out tiny), and training from scratch sits on a long plateau at chance.
    init: str = "release"
    # std of the position tables and the cls token at init. None: the release's (0.02 for the spatial
    # table and cls, zeros for the temporal table). Next to 0.02 the patch features (std ~0.6) drown
    # where a patch is, which is what the synthetic demo's classes hinge on.
    pos_init_std: float | None = None
    grad_checkpointing: bool = False     # recompute every block's norm + mixer in backward (least memory)
    mixer_recompute: str = "auto"        # recompute mixer intermediates in backward: auto|always|never
    extra: dict = field(default_factory=dict)  # free-form metadata (class names, source, ...)

    def __post_init__(self):
        self.scan_order = _choice("scan_order", self.scan_order, SCAN_ORDERS)
        self.backward_order = _choice("backward_order", self.backward_order, BACKWARD_ORDERS)
        self.pos_embed = _choice("pos_embed", self.pos_embed, POS_EMBEDS)
        self.joint_pos_init = _choice("joint_pos_init", self.joint_pos_init, JOINT_POS_INITS)
        self.cls_position = _choice("cls_position", self.cls_position, CLS_POSITIONS)
        self.merge = _choice("merge", self.merge, MERGES)
        self.mixer_recompute = _choice("mixer_recompute", self.mixer_recompute, RECOMPUTE)
        self.init = _choice("init", self.init, INITS)
        if self.pos_init_std is not None and not (
                isinstance(self.pos_init_std, (int, float)) and 0 <= self.pos_init_std < math.inf):
            raise ValueError(f"pos_init_std must be null or a finite number >= 0, got {self.pos_init_std!r}")
        for k in ("embed_dim", "depth", "num_frames", "img_size", "patch_size", "tubelet_size",
                  "in_chans", "d_state", "d_conv", "expand"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if isinstance(self.conv_stem, (str, int)) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in self.conv_stem):
            raise ValueError(f"conv_stem must be a list of positive channel counts, got {self.conv_stem!r}")
        self.conv_stem = tuple(self.conv_stem)
        if self.conv_stem:
            stem_pool(self.patch_size, self.patch_stride, self.conv_stem)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no head), got {self.num_classes}")
        if self.patch_stride is not None and (not isinstance(self.patch_stride, int) or isinstance(self.patch_stride, bool)
                                              or not 1 <= self.patch_stride <= self.patch_size):
            raise ValueError(f"patch_stride must be null or an integer in [1, patch_size={self.patch_size}], "
                             f"got {self.patch_stride!r}")
        if self.img_size < self.patch_size or (self.img_size - self.patch_size) % self.stride:
            raise ValueError(f"img_size={self.img_size} does not tile into patches of {self.patch_size} px at stride "
                             f"{self.stride} (need img_size = patch_size + n * stride)")
        if self.image:
            self.num_frames, self.tubelet_size = 1, 1
        if self.num_frames % self.tubelet_size:
            raise ValueError(f"num_frames={self.num_frames} is not a multiple of tubelet_size={self.tubelet_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    # derived sizes
    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.embed_dim / 16)

    @property
    def stride(self) -> int:
        return self.patch_stride or self.patch_size

    def grid_side(self, img_size: int | None = None) -> int:
        """Patches along one side of a square frame: (H - p) // stride + 1."""
        return ((img_size or self.img_size) - self.patch_size) // self.stride + 1

    @property
    def grid(self) -> tuple[int, int, int]:
        g = self.grid_side()
        return self.num_frames // self.tubelet_size, g, g

    @property
    def num_cls(self) -> int:
        return 0 if self.cls_position == "none" else 1

    def num_tokens(self, num_frames: int | None = None, img_size: int | None = None) -> int:
        t = (num_frames or self.num_frames) // self.tubelet_size
        g = self.grid_side(img_size)
        return self.num_cls + t * g * g

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "VideoMambaConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **overrides) -> "VideoMambaConfig":
        return self.from_dict({**self.to_dict(), **overrides})
