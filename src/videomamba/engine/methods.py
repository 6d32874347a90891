"""Training methods on top of the plain task: self-distillation and masked pretraining.

A *method* adapts three things of a training run, and the trainer asks it at three points:

- ``prepare_model(model)``: the classifier built from the config becomes the trained network
  (:class:`~videomamba.models.distill.DistillStudent` with a distill head, or
  :class:`~videomamba.models.pretrain.VideoMambaPretrain` with the alignment decoder), keeping any
  weights it was initialised with (``model.pretrained``);
- ``prepare_task(task, device)``: the task's loss gains the method's term (the teacher is loaded,
  frozen and moved to the device here);
- ``export_model(model)``: what ``model/`` (``save_pretrained``) holds at the end: a plain
  VideoMamba (the distill head dropped; for pretraining the encoder without decoder, ready to be
  fine-tuned with ``model.pretrained=run/model``). Training checkpoints keep everything, so runs
  resume exactly.

Config sections (``distill:`` and ``pretrain:``, see :mod:`.config`) select the method; with
neither set the trainer runs the task alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .tasks import flatten_views


# ------------------------------------------------------------------------------ teachers
def _is_hf_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file()):
        return False
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False
    return "model_type" in meta or "architectures" in meta


def load_videomamba_teacher(spec: str, model_name: str | None = None):
    """A frozen VideoMamba from a saved directory, a training checkpoint of this engine, or an
    original checkpoint file with ``model_name`` (a preset)."""
    from ..models.distill import freeze
    from ..models import create_model

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist")
    try:
        model = create_model(model_name, pretrained=path)
    except ValueError as e:
        raise ValueError(f"teacher: {e}".replace("--model NAME", "--teacher-model NAME")) from None
    return freeze(model)


# ------------------------------------------------------------------------------ distillation
class DistillTask:
    """Wraps a task: loss = task loss + weight * mean (2 - 2 cos) against the teacher's tokens.

    The teacher sees exactly the student's input, after mixup / cutmix. Logged extras:
    ``loss_task`` and ``loss_distill``. Prediction is the wrapped task's (logits only).
    """

    def __init__(self, base, teacher, weight: float = 1.0):
        from ..models.distill import DistillLoss

        if not weight >= 0:
            raise ValueError(f"distill.weight must be >= 0, got {weight!r}")
        self.base = base
        self.weight = float(weight)
        self.loss_fn = DistillLoss(teacher)

    def __getattr__(self, name):           # kind, main_metric, higher_is_better, num_classes, ...
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def train_step(self, model, batch: dict, device: torch.device) -> dict:
        captured = {}

        def student(x):
            logits, feats = model(x, distill=True)       # through DDP's forward when wrapped
            captured["distill"] = self.loss_fn(feats, x)
            return logits

        out = self.base.train_step(student, batch, device)
        d = captured["distill"]
        out["loss_task"] = out["loss"].detach()
        out["loss_distill"] = d.detach()
        out["loss"] = out["loss"] + self.weight * d
        return out

    def predict(self, model, video, **kwargs):
        return self.base.predict(model, video, **kwargs)


class SelfDistillation:
    """Method for ``distill.teacher``: a frozen trained VideoMamba teaches the student's tokens."""

    def __init__(self, teacher: str, teacher_model: str | None = None, weight: float = 1.0):
        self.teacher_spec, self.teacher_model, self.weight = teacher, teacher_model, weight
        self.teacher = load_videomamba_teacher(teacher, teacher_model)

    def describe(self) -> str:
        c = self.teacher.cfg
        return (f"self-distillation from {self.teacher_spec} (D={c.embed_dim}, depth {c.depth}), "
                f"weight {self.weight}")

    def prepare_model(self, model):
        from ..models.distill import DistillStudent, check_compatible

        check_compatible(model, self.teacher)
        return DistillStudent.from_classifier(model, self.teacher.embed_dim)

    def prepare_task(self, task, device):
        self.teacher.to(device)
        return DistillTask(task, self.teacher, self.weight)

    def export_model(self, model):
        return model.to_classifier() if hasattr(model, "to_classifier") else model


# ------------------------------------------------------------------------------ masked pretraining
class MaskedPretrainTask:
    """batch -> masked alignment loss (no labels used). There is no prediction: evaluation of a
    pretrained encoder is fine-tuning."""

    kind = "masked_pretrain"
    main_metric = "loss"
    higher_is_better = False

    def __init__(self, teacher, mask_type: str = "tube", mask_ratio: float = 0.8, sampling: str = "multinomial",
                 num_classes: int = 0, loss: str = "cosine", loss_weight: float = 1.0):
        from ..models.masking import canonical_mask_type

        self.teacher = teacher
        self.loss, self.loss_weight = loss, loss_weight
        self.mask_type = canonical_mask_type(mask_type)
        self.mask_ratio = mask_ratio
        self.sampling = sampling
        self.num_classes = num_classes

    def train_step(self, model, batch: dict, device: torch.device) -> dict:
        from ..models.pretrain import masked_alignment_step

        x, _ = flatten_views(batch["video"].to(device, non_blocking=True))
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        out = masked_alignment_step(inner, self.teacher, x, self.mask_type, self.mask_ratio, self.sampling,
                                    model_call=model, loss=self.loss, loss_weight=self.loss_weight)
        return {"loss": out["loss"], "count": x.shape[0]}

    def predict(self, model, video, **kwargs):
        raise RuntimeError("a masked-pretraining run has no predictions: fine-tune the exported encoder "
                           "(videomamba train --pretrained RUN/model) and evaluate that")


def load_pretrain_teacher(spec: str, teacher_model: str | None = None, options: dict | None = None):
    """A transformers image model directory or an OpenAI-layout CLIP state-dict file -> per-frame
    teacher (``options``: final_norm, input_norm, return_layers, interval); anything else -> VideoMamba."""
    from ..models.teachers import HFImageTeacher, OpenAICLIPTeacher, VideoMambaTeacher, _is_openai_clip

    options = dict(options or {})
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"teacher {path} does not exist")
    if _is_hf_dir(path):
        return HFImageTeacher.from_pretrained(path, **options)
    if _is_openai_clip(path):
        return OpenAICLIPTeacher.from_file(path, **options)
    if options.get("return_layers", 1) != 1:
        raise ValueError("pretrain.return_layers > 1 needs a CLIP / ViT teacher (a VideoMamba teacher gives its "
                         "final tokens only)")
    return VideoMambaTeacher(load_videomamba_teacher(spec, teacher_model))


class MaskedPretraining:
    """Method for ``pretrain.teacher``: align the visible tokens' features to a frozen teacher."""

    def __init__(self, teacher: str, teacher_model: str | None = None, mask_type: str = "tube",
                 mask_ratio: float = 0.8, sampling: str = "multinomial", loss: str = "cosine",
                 loss_weight: float = 1.0, return_layers: int = 1, student_interval: int = 1,
                 teacher_interval: int = 1, teacher_final_norm: bool = True, teacher_input: str = "renormalise"):
        from ..models.masking import canonical_mask_type

        self.teacher_spec = teacher
        self.mask_type = canonical_mask_type(mask_type)
        self.mask_ratio, self.sampling = mask_ratio, sampling
        self.loss, self.loss_weight = loss, loss_weight
        self.return_layers, self.student_interval = return_layers, student_interval
        self.teacher = load_pretrain_teacher(teacher, teacher_model, {
            "final_norm": teacher_final_norm, "input_norm": teacher_input, "return_layers": return_layers,
            "interval": teacher_interval})
        if self.mask_type == "attention" and not self.teacher.has_attention:
            raise ValueError("pretrain.mask_type=attention needs a teacher with attention (a transformers "
                             f"ViT/CLIP directory); {teacher} is a VideoMamba")

    def describe(self) -> str:
        return (f"masked pretraining: {self.mask_type} masks at ratio {self.mask_ratio}, teacher {self.teacher_spec} "
                f"({type(self.teacher).__name__}, {self.teacher.dim}-d targets), {self.loss} loss x {self.loss_weight}, "
                f"{self.return_layers} aligned layer(s)")

    def prepare_model(self, model):
        from ..models.pretrain import VideoMambaPretrain

        pre = VideoMambaPretrain(model.cfg, self.teacher.dim, self.return_layers, self.student_interval)
        sd = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
        pre.load_state_dict(sd, strict=False)          # keep an initialisation from model.pretrained
        return pre

    def prepare_task(self, task, device):
        self.teacher.to(device)
        return MaskedPretrainTask(self.teacher, self.mask_type, self.mask_ratio, self.sampling,
                                  getattr(task, "num_classes", 0), self.loss, self.loss_weight)

    def export_model(self, model):
        from ..models.videomamba import VideoMamba

        enc = VideoMamba(model.cfg).to(model.norm_f.weight.device)
        enc.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("clip_decoder.")})
        return enc


def build_method(cfg):
    """The method a :class:`~.config.TrainConfig` asks for, or None for plain training."""
    dist = getattr(cfg, "distill", None)
    pre = getattr(cfg, "pretrain", None)
    # both set is refused once, by the config's validation (engine/config.py)
    if dist is not None and dist.teacher:
        return SelfDistillation(dist.teacher, dist.teacher_model, dist.weight)
    if pre is not None and pre.teacher:
        return MaskedPretraining(pre.teacher, pre.teacher_model, pre.mask_type, pre.mask_ratio, pre.mask_sampling,
                                 pre.loss, pre.loss_weight, pre.return_layers, pre.student_interval,
                                 pre.teacher_interval, pre.teacher_final_norm, pre.teacher_input)
    return None
