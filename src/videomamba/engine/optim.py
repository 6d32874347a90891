"""AdamW parameter groups (weight-decay exclusions, layer-wise lr decay), the lr-scaling rule and
the per-step cosine schedule with linear warm-up.

Layer-wise decay, two modes (``layer_decay_mode``):

- ``"per_block"`` (the working decay): parameter ``p`` with ``layer_id(p) = i`` out of ``num_layers``
  gets ``lr_scale = layer_decay ** (num_layers - 1 - i)`` (embeddings 0, block j -> j + 1, norm/head
  last); the ids come from the model itself (``model.layer_id``).
- ``"release"``: the assignment the released fine-tuning code actually made. Its id function
  (``get_num_layer_for_vit`` in ``video_sm/optim_factory.py``) was written for ViT names: only
  ``cls_token``, ``mask_token``, ``pos_embed`` and ``patch_embed.*`` got id 0; every other name,
  the ``layers.*`` blocks and ``temporal_pos_embedding`` included, fell through to the last id. With
  ``depth + 2`` ids that gives ``layer_decay ** (depth + 1)`` to the patch embedding, cls token and
  spatial position table and 1 to everything else: the blocks train at full learning rate (the
  release README: fine-tuned "without layer decay"). The release's configs use this.
"""
from __future__ import annotations

import math

import torch


def scaled_lr(base_lr: float, batch_size: int, world_size: int = 1, accum_steps: int = 1,
              repeat_aug: int = 1) -> float:
    """The release's rule: lr = base x (total batch x clips per video) / 256."""
    return base_lr * batch_size * world_size * accum_steps * repeat_aug / 256.0


LAYER_DECAY_MODES = ("release", "per_block")
_RELEASE_ID0_NAMES = ("cls_token", "mask_token", "pos_embed")


def release_layer_id(name: str, depth: int) -> int:
    """The release's layer id of a parameter name, out of ``depth + 2`` ids (see the module docstring)."""
    if name in _RELEASE_ID0_NAMES or name.startswith("patch_embed"):
        return 0
    return depth + 1


def param_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float = 1.0,
                 no_weight_decay: set[str] | None = None, layer_decay_mode: str = "per_block") -> list[dict]:
    """Groups keyed by (layer id, decay / no decay), each with ``lr_scale`` and ``weight_decay``.

    Exclusions come from ``model.no_weight_decay()`` (tables, cls token, A_log, D, norms, biases);
    models without ``layer_id`` get a single layer. ``layer_decay_mode``: ``"per_block"`` or
    ``"release"`` (module docstring).
    """
    if layer_decay_mode not in LAYER_DECAY_MODES:
        raise ValueError(f"layer_decay_mode must be one of {LAYER_DECAY_MODES}, got {layer_decay_mode!r}")
    if no_weight_decay is None:
        no_weight_decay = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    depth = getattr(getattr(model, "cfg", None), "depth", None)
    if layer_decay_mode == "release" and depth is not None:
        num_layers = depth + 2
        get_id = lambda name: release_layer_id(name, depth)        # noqa: E731
    elif hasattr(model, "layer_id") and hasattr(model, "num_layers"):
        num_layers, get_id = model.num_layers, model.layer_id
    else:
        num_layers, get_id = 1, (lambda name: 0)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = name in no_weight_decay or p.ndim <= 1 or getattr(p, "_no_weight_decay", False)
        lid = get_id(name)
        key = (lid, no_wd)
        if key not in groups:
            groups[key] = {"params": [], "param_names": [], "layer_id": lid,
                           "weight_decay": 0.0 if no_wd else weight_decay,
                           "lr_scale": layer_decay ** (num_layers - 1 - lid)}
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.05,
                    layer_decay: float = 1.0, betas=(0.9, 0.999), eps: float = 1e-8,
                    layer_decay_mode: str = "per_block") -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay, layer_decay, layer_decay_mode=layer_decay_mode)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    # The fused kernel (CPU and CUDA) updates each element on its own, as the single-tensor path does,
    # so a resumed run and every rank stay bitwise equal; on CPU it takes a fifth of the
    # single-tensor time for a model of many small tensors. Elsewhere: the single-tensor path.
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, foreach=False, fused=fused or None)


class CosineSchedule:
    """Per-step lr: linear warm-up from ``warmup_lr`` to ``lr`` over ``warmup_steps``, then a
    half cosine down to ``min_lr`` at ``total_steps``. Each group's lr is ``lr(step) * lr_scale``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, total_steps: int,
                 warmup_steps: int = 0, min_lr: float = 0.0, warmup_lr: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.optimizer = optimizer
        self.lr, self.min_lr, self.warmup_lr = lr, min_lr, warmup_lr
        self.total_steps = total_steps
        self.warmup_steps = min(warmup_steps, total_steps)
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "lr": self.lr, "min_lr": self.min_lr,
                "warmup_lr": self.warmup_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
