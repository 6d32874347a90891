"""The training loop: ``train(config)`` -> :class:`TrainResult`.

One code path for a single process and for ``torchrun`` (DDP, gloo on CPU / nccl on CUDA). The
unit of progress is the optimizer step (``optim.accum_steps`` micro-batches). Checkpoints are
written every ``train.checkpoint_every`` steps and at each epoch end; ``resume`` restores
everything, including the position inside the epoch, so an interrupted run finishes with the same
weights as an uninterrupted one when ``train.deterministic`` is on.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import distributed as D
from ..runtime import resolve_amp
from .config import ConfigError, TrainConfig, dump_yaml, load_config
from ..data.clip_config import class_names
from .data import build_dataset, build_mixup, make_loader
from .ema import ModelEMA
from .validation import run_eval
from .metrics import MetricsLog, plot_confusion, plot_curves, write_json
from .optim import CosineSchedule, build_optimizer, scaled_lr
from .threads import ThreadTuner
from .state import (capture_rng, load_training_checkpoint, resolve_resume, restore_rng, save_best,
                    save_training_checkpoint)
from .tasks import build_task
from .methods import MaskedPretraining, build_method


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped without writing the poisoned state."""

    def __init__(self, value: float, step: int, epoch: int, batch: int, last_checkpoint: Path | None):
        self.value, self.step, self.epoch, self.batch, self.last_checkpoint = value, step, epoch, batch, last_checkpoint
        where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
        super().__init__(f"non-finite loss ({value}) at step {step} (epoch {epoch + 1}, batch {batch + 1}); "
                         f"training stopped, {where}. Lower optim.lr / optim.base_lr, set optim.clip_grad, "
                         f"or use train.amp=none, then resume or restart.")


class TrainingInterrupted(RuntimeError):
    """SIGINT / SIGTERM: the run saved a checkpoint at the end of the current step and stopped."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"interrupted: stopped after step {step} and saved {checkpoint}; "
                         f"continue with --resume (Python: train(..., resume=True))")


@dataclass
class TrainResult:
    out_dir: Path
    model: torch.nn.Module                 # the exported weights (best or last: train.export; EMA when train.ema
                                           # and train.ema_eval)
    metrics: dict                          # last validation metrics ({} without a val set)
    best: dict                             # {"metric", "value", "step", "epoch"}
    step: int
    checkpoint: Path | None                # newest step checkpoint
    best_checkpoint: Path | None
    export_dir: Path | None                # save_pretrained directory (model.safetensors + config.json)
    plots: list[Path] = field(default_factory=list)
    classes: list[str] | None = None
    wall_time_s: float = 0.0
    test: dict | None = None               # final test of the exported weights (test_metrics.json)
    exported_weights: str = ""             # "best (epoch E, step S, ...)" or "last (step S)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, say: Callable[[str], None] = print):
    """Deterministic algorithms for the duration of a run (restored afterwards).

    The compiled CPU scan (``ops/csrc``) hands work items to threads dynamically and sums
    per-thread parameter gradients, so its backward is not bitwise reproducible. Unless the scan
    backend was chosen explicitly (``VIDEOMAMBA_SCAN_BACKEND``), deterministic runs use the
    pure-torch scan, which is.
    """
    if not enabled:
        yield
        return
    from ..ops.backend import ENV_VAR

    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, os.environ.get(ENV_VAR))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a missing deterministic kernel warns instead of killing a long job.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    if prev[4] is None:
        os.environ[ENV_VAR] = "torch"
        say(f"deterministic mode: using the pure-torch selective scan ({ENV_VAR} overrides)")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]
        if prev[4] is None:
            os.environ.pop(ENV_VAR, None)


def train(config: "str | Path | dict | TrainConfig | None" = None, overrides: "dict | list[str] | None" = None, *,
          resume: "str | Path | bool | None" = None, train_dataset=None, val_dataset=None,
          callbacks: "list[Callable[[dict], None]] | tuple" = (), log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or fine-tune, with ``model.pretrained``) from a YAML config / name / dict plus overrides.

    ``resume``: ``True`` / ``"auto"`` (newest checkpoint in ``train.out_dir``, or a fresh start if
    there is none), or a checkpoint file / run directory. ``train_dataset`` / ``val_dataset``
    replace the annotation files (any map-style dataset yielding the data pipeline's dicts).
    ``callbacks`` are called after every optimizer step with a dict (step, epoch, loss, lr, ...).
    Under ``torchrun`` every process calls this; only rank 0 writes files.
    """
    cfg = config if isinstance(config, TrainConfig) and not overrides else load_config(config, overrides)
    owns_group = D.launched_by_torchrun() and not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info, device = D.init_distributed(cfg.train.device)
    try:
        trainer = _Trainer(cfg, info, device, train_dataset, val_dataset, callbacks, log)
        with deterministic_mode(cfg.train.deterministic, trainer.say):
            return trainer.fit(resume)
    finally:
        if owns_group:
            D.cleanup_distributed()


class _Trainer:
    def __init__(self, cfg: TrainConfig, info: D.DistInfo, device: torch.device, train_dataset, val_dataset,
                 callbacks, log):
        self.cfg, self.info, self.device = cfg, info, device
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.callbacks = list(callbacks)
        self._log = log or (lambda s: print(s, flush=True))
        self.out_dir = Path(cfg.train.out_dir)
        self.bar = None
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None

    # ------------------------------------------------------------------ helpers
    def say(self, msg: str) -> None:
        if not self.info.is_main or self.cfg.train.progress == "none":
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            self._log(msg)

    def _state(self, epoch: int, step_in_epoch: int) -> dict | None:
        rngs = D.all_gather_objects(capture_rng(), self.info)     # collective: every rank calls
        if not self.info.is_main:
            return None
        return {"model": self.model.state_dict(), "model_config": self.model.cfg.to_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "step": self.step, "epoch": epoch, "step_in_epoch": step_in_epoch,
                "rng": rngs, "world_size": self.info.world_size, "train_config": self.cfg.to_dict(),
                "best": dict(self.best), "classes": self.classes}

    def _checkpoint(self, epoch: int, step_in_epoch: int, val: dict | None = None) -> None:
        self._saved_step = self.step
        state = self._state(epoch, step_in_epoch)
        if state is not None:
            self.last_checkpoint = save_training_checkpoint(state, self.out_dir, self.cfg.train.keep_last)
            if val is not None and self.best.get("step") == self.step:
                self.best_checkpoint = save_best(state, self.out_dir)
        D.barrier(self.info)

    # ------------------------------------------------------------------ setup
    def _setup_data(self):
        cfg, d = self.cfg, self.cfg.data
        if cfg.task.type == "retrieval":            # video-text: engine/video_text.py
            from . import video_text
            return video_text.setup_data(self)
        classes = class_names(d.classes) if d.classes is not None else None
        if self.train_dataset is None:
            if not d.train:
                raise ConfigError("data.train is not set: give a training annotation file "
                                  "(data.train=PATH, with data.root for relative paths)")
            self.train_dataset = build_dataset(cfg, d.train, train=True, classes=classes)
        if self.val_dataset is None and d.val:
            self.val_dataset = build_dataset(cfg, d.val, train=False,
                                             classes=getattr(self.train_dataset, "classes", None) or classes,
                                             views=(d.val_clips or d.test_clips, d.val_crops or d.test_crops))
        self.classes = list(getattr(self.train_dataset, "classes", None) or classes or []) or None
        if cfg.task.type == "regression":
            self.num_classes = 1
        elif cfg.pretrain.teacher and not getattr(self.train_dataset, "num_classes", None):
            self.num_classes = 1               # label-free pretraining lists: no head is trained
        else:
            self.num_classes = getattr(self.train_dataset, "num_classes", None) or (len(self.classes) if self.classes else None)
            if not self.num_classes:
                raise ConfigError("cannot tell the number of classes: set data.classes or model.num_classes")
        bs = d.batch_size
        self.train_loader, self.train_sampler = make_loader(self.train_dataset, bs, self.info, train=True,
                                                            seed=cfg.train.seed, num_workers=d.num_workers,
                                                            pin_memory=self.device.type == "cuda")
        self.val_loader = None
        if self.val_dataset is not None:
            self.val_loader, _ = make_loader(self.val_dataset, d.eval_batch_size or bs, self.info, train=False,
                                             seed=cfg.train.seed, num_workers=d.num_workers,
                                             pin_memory=self.device.type == "cuda")
        per_rank = self.train_sampler.num_samples
        self.steps_per_epoch = (per_rank // bs) // cfg.optim.accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(f"data.batch_size x optim.accum_steps = {bs} x {cfg.optim.accum_steps} is larger than "
                              f"the {per_rank} training videos per process ({len(self.train_dataset)} in all, "
                              f"{self.info.world_size} process(es)); lower data.batch_size")

    def _setup_model(self):
        from ..models import create_model

        cfg, d = self.cfg, self.cfg.data
        if cfg.task.type == "retrieval":            # video-text: engine/video_text.py
            from . import video_text
            return video_text.setup_model(self)
        params = {"num_frames": d.num_frames, "img_size": d.img_size, "num_classes": self.num_classes,
                  **cfg.model.params}
        if params["num_classes"] != self.num_classes and cfg.task.type == "classification":
            raise ConfigError(f"model.num_classes={params['num_classes']} but the data has {self.num_classes} classes")
        extra = dict(params.pop("extra", {}) or {})
        extra.update({"task": cfg.task.type, "classes": self.classes,
                      "data": {"num_frames": d.num_frames, "img_size": d.img_size, "short_side": d.short_side,
                               "sampling": d.sampling, "sample_stride": d.sample_stride,
                               "test_clips": d.test_clips, "test_crops": d.test_crops,
                               "window": d.window, "window_stride": d.window_stride,
                               "window_scheme": d.window_scheme, "view_batch": d.view_batch}})
        model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, extra=extra, **params)
        if cfg.model.pretrained:
            rep = getattr(model, "load_report", None)
            self.say(f"fine-tuning from {cfg.model.pretrained}" + (f": {rep}" if rep is not None else ""))
        # self-distillation / masked pretraining (engine/methods.py) adapt model, task and export
        self.method = build_method(cfg)
        if self.method is not None:
            self.say(self.method.describe())
            model = self.method.prepare_model(model)
            if isinstance(self.method, MaskedPretraining) and self.val_loader is not None:
                self.say("pretraining has no validation (no predictions): data.val is ignored")
                self.val_loader = None
        self.place_model(model)

    def place_model(self, model) -> None:
        """Gradient checkpointing as configured, the model on this rank's device, wrapped for DDP."""
        if self.cfg.train.grad_checkpointing:
            model.set_grad_checkpointing(True)
        self.model = model.to(self.device)
        self.ddp_model = self.model
        if self.info.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _setup_optim(self):
        cfg, o, d = self.cfg, self.cfg.optim, self.cfg.data
        factor = (scaled_lr(1.0, d.batch_size, self.info.world_size, o.accum_steps, d.repeat_aug)
                  if o.scale_lr and o.lr is None else 1.0)
        self.lr = o.lr if o.lr is not None else o.base_lr * factor
        min_lr, warmup_lr = (o.min_lr * factor, o.warmup_lr * factor)
        self.optimizer = build_optimizer(self.model, self.lr, o.weight_decay, o.layer_decay, o.betas, o.eps,
                                         layer_decay_mode=o.layer_decay_mode)
        self.total_steps = o.epochs * self.steps_per_epoch
        warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_epochs * self.steps_per_epoch)
        self.schedule = CosineSchedule(self.optimizer, self.lr, self.total_steps, warmup, min_lr, warmup_lr)
        try:
            self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        except ValueError as e:
            raise ConfigError(f"train.{e}") from None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.ema = ModelEMA(self.model, cfg.train.ema_decay) if cfg.train.ema else None
        mixup = build_mixup(cfg, self.num_classes)
        self.task = build_task(cfg.task.type, self.num_classes, cfg.augment.label_smoothing, mixup)
        if self.method is not None:
            self.task = self.method.prepare_task(self.task, self.device)
        if cfg.task.type == "retrieval":            # video-text: engine/video_text.py
            from . import video_text
            self.task = video_text.build_task(self)

    # ------------------------------------------------------------------ main
    def fit(self, resume) -> TrainResult:
        cfg, info = self.cfg, self.info
        t_start = time.time()
        self.threads = None
        if cfg.train.threads == "auto":
            # deterministic runs keep one thread count: results can depend on it
            if self.device.type == "cpu" and torch.get_num_threads() > 1 and not cfg.train.deterministic:
                self.threads = ThreadTuner(torch.get_num_threads())
        elif cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self._setup_data()
        self._setup_model()                  # same seed on every rank: identical initial weights
        seed_everything(cfg.train.seed + 1_000_003 * info.rank)
        self._setup_optim()

        self.step, start_epoch, start_in_epoch = 0, 0, 0
        self.best: dict = {"metric": self.task.main_metric, "value": None, "step": None, "epoch": None}
        ckpt_path = resolve_resume(resume, self.out_dir)
        if ckpt_path is not None:
            start_epoch, start_in_epoch = self._restore(ckpt_path)
        elif resume not in (None, False, True, "auto"):
            raise FileNotFoundError(f"nothing to resume at {resume}")
        self.metrics_log = MetricsLog(self.out_dir, enabled=info.is_main, tensorboard=cfg.train.tensorboard,
                                      resume_step=self.step if ckpt_path is not None else None)
        if info.is_main:
            from ..fileio import atomic_write_text
            atomic_write_text(self.out_dir / "config.yaml", dump_yaml(cfg))
        n_params = sum(p.numel() for p in self.model.parameters())
        self.say(f"videomamba train: {cfg.model.name} ({n_params / 1e6:.2f}M params, "
                 f"{self.model.cfg.num_tokens()} tokens/clip) on {self.device}"
                 f"{f' x{info.world_size} ({info.backend})' if info.enabled else ''}, "
                 f"{len(self.train_dataset)} train / {len(self.val_dataset) if self.val_dataset is not None else 0} val videos, "
                 f"{self.steps_per_epoch} steps/epoch x {cfg.optim.epochs} epochs, lr {self.lr:.3g}, "
                 f"amp {self.amp_dtype or 'fp32'}; writing to {self.out_dir}")
        if ckpt_path is not None:
            self.say(f"resumed from {ckpt_path} at step {self.step} (epoch {start_epoch + 1}, "
                     f"step {start_in_epoch} of {self.steps_per_epoch})")

        self._make_bar()
        val_metrics: dict = {}
        last_eval_step = -1
        stopped = False
        self._saved_step = self.step if ckpt_path is not None else -1
        restore_signals = self._install_signal_handlers()
        try:
            for epoch in range(start_epoch, cfg.optim.epochs):
                skip = start_in_epoch if epoch == start_epoch else 0
                stopped = self._train_epoch(epoch, skip)
                if stopped:
                    break
                last = epoch == cfg.optim.epochs - 1
                if self.val_loader is not None and (last or (cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0)):
                    val_metrics = self._validate(epoch)
                    last_eval_step = self.step
                self._checkpoint(epoch + 1, 0, val_metrics if last_eval_step == self.step else None)
            if stopped:
                if self.val_loader is not None and last_eval_step != self.step:
                    val_metrics = self._validate(self._epoch)
                self._checkpoint(self._epoch, self._in_epoch, val_metrics or None)
            elif not val_metrics and self.val_loader is not None:    # resumed a run that had finished
                val_metrics = self._validate(cfg.optim.epochs - 1)
        finally:
            restore_signals()
            if self.threads is not None:        # the tuner may have left one thread: give back the pool
                torch.set_num_threads(self.threads.many)
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self.metrics_log.close()
        return self._finish(val_metrics, time.time() - t_start)

    def _restore(self, path: Path) -> tuple[int, int]:
        st = load_training_checkpoint(path, map_location="cpu")
        if st["world_size"] != self.info.world_size:
            self.say(f"warning: {path} was written by {st['world_size']} process(es), this run has "
                     f"{self.info.world_size}; the data order will not match the original run exactly")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.schedule.load_state_dict(st["scheduler"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.load_state_dict(st["ema"])
        self.step = int(st["step"])
        self.best = st.get("best") or self.best
        rngs = st.get("rng") or []
        if self.info.rank < len(rngs):
            restore_rng(rngs[self.info.rank])
        self.last_checkpoint = path
        return int(st["epoch"]), int(st["step_in_epoch"])

    def _make_bar(self):
        mode = self.cfg.train.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.progress_mode = mode
        if mode == "bar" and self.info.is_main:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=min(self.total_steps, self.cfg.train.max_steps or self.total_steps),
                            initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_epoch(self, epoch: int, skip_steps: int) -> bool:
        """Run the rest of one epoch from optimizer step ``skip_steps``; True if max_steps stopped it."""
        cfg, info = self.cfg, self.info
        accum, bs = cfg.optim.accum_steps, cfg.data.batch_size
        self._epoch, self._in_epoch = epoch, skip_steps
        self.train_sampler.set_epoch(epoch)
        self.train_sampler.set_start(skip_steps * accum * bs)
        n_micro = (self.steps_per_epoch - skip_steps) * accum
        if n_micro <= 0:
            return False
        self.ddp_model.train()
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{cfg.optim.epochs}")
        win = {"loss": 0.0, "n": 0, "correct": 0.0, "counted": 0, "clips": 0, "t": time.time(), "steps": 0}
        params = [p for p in self.model.parameters() if p.requires_grad]
        micro = 0
        for batch in self.train_loader:
            if micro >= n_micro:
                break
            last_micro = (micro + 1) % accum == 0
            if self.threads is not None and micro % accum == 0:
                self.threads.before_step()
            sync_ctx = (self.ddp_model.no_sync() if info.enabled and not last_micro else contextlib.nullcontext())
            with sync_ctx:
                with self._autocast():
                    out = self.task.train_step(self.ddp_model, batch, self.device)
                loss = out["loss"]
                self._check_finite(loss, epoch, skip_steps * accum + micro)
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_value = float(loss.detach())
            win["loss"] += loss_value * out["count"]
            win["n"] += out["count"]
            win["clips"] += out["count"]
            if "correct" in out:
                win["correct"] += float(out["correct"])
                win["counted"] += out["count"]
            micro += 1
            if not last_micro:
                continue
            grad_norm = None
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            if cfg.optim.clip_grad:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            lr = self.schedule.get_last_lr()                  # the lr this step used
            self.schedule.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            self._in_epoch += 1
            win["steps"] += 1
            if self.threads is not None:
                msg = self.threads.after_step()
                if msg:
                    self.say(f"step {self.step}: {msg}")
            last_in_epoch = self._in_epoch == self.steps_per_epoch
            if self.step % cfg.train.log_every == 0 or last_in_epoch:
                self._log_train(epoch, lr, win, grad_norm)
            elif self.bar is not None:
                self.bar.set_postfix_str(f"loss {loss_value:.4f} lr {lr:.2e}", refresh=False)
            if self.bar is not None:
                self.bar.update(1)
            if cfg.train.checkpoint_every and self.step % cfg.train.checkpoint_every == 0 and not last_in_epoch:
                self._checkpoint(epoch, self._in_epoch)
            for cb in self.callbacks:
                cb({"step": self.step, "epoch": epoch, "step_in_epoch": self._in_epoch, "loss": loss_value,
                    "lr": lr, "out_dir": self.out_dir, "rank": info.rank, "last_checkpoint": self.last_checkpoint})
            if self._stop_agreed:
                if self._saved_step != self.step:
                    self._checkpoint(epoch, self._in_epoch)
                raise TrainingInterrupted(self.step, self.last_checkpoint)
            if cfg.train.max_steps and self.step >= cfg.train.max_steps:
                return True
        return False

    def _check_finite(self, loss: torch.Tensor, epoch: int, batch: int) -> None:
        """Collective in DDP (with the stop request folded in), so that every rank stops at the
        same step instead of hanging."""
        flags = torch.tensor([0.0 if bool(torch.isfinite(loss.detach())) else 1.0, float(self._stop_requested)],
                             device=self.device)
        if self.info.enabled:
            torch.distributed.all_reduce(flags)
        bad, stop = flags.tolist()
        if bad > 0:
            raise NonFiniteLossError(float(loss.detach()), self.step + 1, epoch, batch, self.last_checkpoint)
        self._stop_agreed = stop > 0

    def _install_signal_handlers(self):
        """SIGINT / SIGTERM ask for a clean stop at the end of the current step (checkpoint first);
        a second SIGINT interrupts at once."""
        import signal
        import threading

        self._stop_requested = self._stop_agreed = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.say(f"{signal.Signals(signum).name}: stopping after the current step (checkpoint first); "
                     f"press Ctrl-C again to stop at once")

        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore():
            for sig, h in old.items():
                signal.signal(sig, h)
        return restore

    def _log_train(self, epoch: int, lr: float, win: dict, grad_norm: float | None) -> None:
        sums = D.all_reduce_sum([win["loss"], win["n"], win["correct"], win["counted"], win["clips"]],
                                self.info, self.device)
        now = time.time()
        dt = max(now - win["t"], 1e-9)
        rec = {"kind": "train", "step": self.step, "epoch": epoch + self._in_epoch / self.steps_per_epoch,
               "loss": sums[0] / max(sums[1], 1), "lr": lr, "clips_per_s": sums[4] / dt,
               "step_time_s": dt / max(win["steps"], 1)}
        if sums[3]:
            rec["train_acc"] = 100.0 * sums[2] / sums[3]
        if grad_norm is not None:
            rec["grad_norm"] = grad_norm
        self.metrics_log.log(rec)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {rec['loss']:.4f} lr {lr:.2e} {rec['clips_per_s']:.1f} clips/s")
        elif self.progress_mode == "log":
            total = min(self.total_steps, self.cfg.train.max_steps or self.total_steps)
            eta = (total - self.step) * rec["step_time_s"]
            self.say(f"epoch {epoch + 1}/{self.cfg.optim.epochs} step {self.step}/{total} loss {rec['loss']:.4f} "
                     f"lr {lr:.2e} {rec['clips_per_s']:.1f} clips/s eta {_fmt_time(eta)}")
        win.update(loss=0.0, n=0, correct=0.0, counted=0, clips=0, t=now, steps=0)

    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if (self.ema is not None and self.cfg.train.ema_eval) else self.model

    def _validate(self, epoch: int) -> dict:
        if self.cfg.task.type == "retrieval":       # video-text: engine/video_text.py
            from . import video_text
            return video_text.validate(self, epoch)
        t0 = time.time()
        metrics, _ = run_eval(self.eval_model(), self.val_loader, self.task, self.device, self.amp_dtype, self.info,
                              classes=self.classes, progress=self.progress_mode == "bar", desc="validation",
                              view_batch=self.cfg.data.view_batch)
        self.ddp_model.train()
        key = self.task.main_metric
        value = metrics[key]
        better = (self.best["value"] is None or
                  (value > self.best["value"] if self.task.higher_is_better else value < self.best["value"]))
        if better:
            self.best = {"metric": key, "value": value, "step": self.step, "epoch": epoch + 1}
        rec = {"kind": "val", "step": self.step, "epoch": epoch + 1,
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}, "time_s": time.time() - t0}
        self.metrics_log.log(rec)
        extra = f" top5 {metrics['top5']:.1f}" if "top5" in metrics else ""
        self.say(f"val epoch {epoch + 1}: {key} {value:.4g}{extra} loss {metrics['loss']:.4f} "
                 f"(best {self.best['value']:.4g} at epoch {self.best['epoch']})")
        self._last_val_full = metrics
        return metrics

    def _load_best(self) -> str:
        """Export ``train.export``: with ``best`` and a best checkpoint, load its weights (training is
        over). Returns which weights the model now holds, in words."""
        from .state import checkpoint_dir

        best = checkpoint_dir(self.out_dir) / "best.pt"
        if self.cfg.train.export == "best" and self.best.get("step") is not None and best.is_file():
            D.barrier(self.info)
            st = load_training_checkpoint(best, map_location="cpu")
            self.model.load_state_dict(st["model"])
            if self.ema is not None and st.get("ema") is not None:
                self.ema.load_state_dict(st["ema"])
            return (f"best (epoch {self.best['epoch']}, step {self.best['step']}, validation "
                    f"{self.best['metric']} {self.best['value']:.4g})")
        return f"last (step {self.step})"

    def _final_test(self, weights: str) -> dict | None:
        """``train.final_test``: the exported weights on ``data.test`` (or ``data.val``) with all test
        views (``data.test_clips`` x ``data.test_crops``); writes ``test_metrics.json``."""
        cfg, d = self.cfg, self.cfg.data
        source = d.test or d.val
        if cfg.task.type == "retrieval":            # video-text: engine/video_text.py
            from . import video_text
            return video_text.final_test(self, weights)
        if not cfg.train.final_test or isinstance(self.method, MaskedPretraining):
            return None
        views = (d.test_clips, d.test_crops)
        same = (source == d.val and (d.val_clips or d.test_clips, d.val_crops or d.test_crops) == views)
        if same and self.val_loader is not None:
            loader = self.val_loader
        elif source:
            ds = build_dataset(cfg, source, train=False, classes=self.classes, views=views)
            loader, _ = make_loader(ds, d.eval_batch_size or d.batch_size, self.info, train=False,
                                    seed=cfg.train.seed, num_workers=d.num_workers,
                                    pin_memory=self.device.type == "cuda")
        elif self.val_loader is not None:           # a val_dataset given in Python, no file
            loader = self.val_loader
        else:
            return None
        t0 = time.time()
        metrics, _ = run_eval(self.eval_model(), loader, self.task, self.device, self.amp_dtype, self.info,
                              classes=self.classes, progress=self.progress_mode == "bar", desc="test",
                              view_batch=d.view_batch)
        ds = getattr(loader.dataset, "dataset", loader.dataset)
        # views: those of the dataset built from data.test_clips / test_crops (None: a Python dataset's own)
        views_used = ({"clips": ds.num_clips, "crops": ds.num_crops} if hasattr(ds, "num_clips") else None)
        result = {"weights": weights, "annotations": source, "views": views_used,
                  **{k: v for k, v in metrics.items() if k not in ("confusion",)},
                  "time_s": time.time() - t0}
        if self.info.is_main:
            write_json(self.out_dir / "test_metrics.json", result)
            key = self.task.main_metric
            v = result["views"]
            self.say(f"test ({weights}" + (f"; {v['clips']} clip(s) x {v['crops']} crop(s)" if v else "") + "): "
                     f"{key} {metrics[key]:.4g}" + (f" top5 {metrics['top5']:.2f}" if "top5" in metrics else ""))
        return result

    def _finish(self, val_metrics: dict, wall: float) -> TrainResult:
        info = self.info
        weights = self._load_best() if self.val_loader is not None else f"last (step {self.step})"
        test = self._final_test(weights)
        model = self.eval_model()
        replica_diff = D.replica_max_abs_diff(self.model, info) if info.enabled else None
        export_dir, plots = None, []
        if info.is_main:
            from ..checkpoint import save_pretrained

            export_dir = self.out_dir / "model"
            save_pretrained(self.method.export_model(model) if self.method is not None else model, export_dir)
            if self.cfg.task.type == "retrieval":    # video-text: the tokenizer beside the weights
                from . import video_text
                video_text.export_extras(model, export_dir)
            if self.cfg.train.plots:
                p = plot_curves(self.metrics_log.records, self.out_dir / "curves.png", self.task.main_metric)
                plots += [p] if p else []
                if val_metrics.get("confusion") is not None:
                    p = plot_confusion(val_metrics["confusion"], val_metrics["classes"], self.out_dir / "confusion.png",
                                       title=f"validation, step {self.step}")
                    plots += [p] if p else []
            summary = {"step": self.step, "epochs": self.cfg.optim.epochs, "wall_time_s": wall,
                       "val": {k: v for k, v in val_metrics.items() if k not in ("confusion", "classes")},
                       "best": self.best, "lr": self.lr, "world_size": info.world_size,
                       "exported_weights": weights, "test": test,
                       "checkpoint": self.last_checkpoint, "best_checkpoint": self.best_checkpoint,
                       "model_dir": export_dir, "plots": plots}
            if replica_diff is not None:
                summary["replica_max_abs_diff"] = replica_diff
            write_json(self.out_dir / "summary.json", summary)
            self.say(f"done in {_fmt_time(wall)}: step {self.step}"
                     + (f", val {self.task.main_metric} {val_metrics[self.task.main_metric]:.4g}" if val_metrics else "")
                     + f"\n  checkpoint: {self.last_checkpoint}\n  model:      {export_dir} ({weights} weights)"
                     + f"\n  metrics:    {self.out_dir / 'metrics.jsonl'} (+ .csv)"
                     + "".join(f"\n  plot:       {p}" for p in plots))
        D.barrier(info)
        return TrainResult(out_dir=self.out_dir, model=model, metrics=val_metrics, best=self.best, step=self.step,
                           checkpoint=self.last_checkpoint, best_checkpoint=self.best_checkpoint,
                           export_dir=export_dir, plots=plots, classes=self.classes, wall_time_s=wall,
                           test=test, exported_weights=weights)


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
