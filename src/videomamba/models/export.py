"""Export a model as a ``torch.export`` program (``.pt2``) or an ONNX file, checked against eager.

Glossary: B batch, C channels, T frames, H x W pixels.

- ``pt2``: ``torch.export.export`` of the model in eval mode. The compiled kernels appear as the
  custom ops ``videomamba::selective_scan_fwd`` / ``causal_conv1d_fwd`` (``ops/library.py``), so
  loading the program needs ``import videomamba`` first (which registers them); it runs where
  the kernels do (CPU; the scan also on CUDA with mamba_ssm).
- ``onnx``: ``torch.onnx.export`` (the torch.export-based exporter) traced under
  ``use_backend("torch")``: the scan is the pure-torch scan in its exported form (log2 L
  vectorised steps, ``scan_torch._log_depth``), plain tensor ops that any ONNX runtime executes.
  The file holds its weights (no external data file).

Every export is written atomically, loaded back from disk and run on the example input; the
largest absolute difference from the eager model's logits is reported.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..fileio import atomic_path

FORMATS = ("pt2", "onnx")
INPUT_NAME, OUTPUT_NAME = "video", "logits"


@dataclass
class ExportResult:
    path: str
    format: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    max_abs_diff: float            # exported file vs eager, on the example input
    seconds: float                 # tracing + writing
    checked_batches: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def input_shape(model: nn.Module, frames: int | None = None, img_size: int | None = None,
                batch: int = 1) -> tuple[int, ...]:
    """(B, C, T, H, W) for a video model, (B, C, H, W) for an image model; the model's config
    gives T and H = W unless ``frames`` / ``img_size`` say otherwise."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "img_size"):
        raise ValueError(f"cannot export a {type(model).__name__}: expected a VideoMamba model "
                         "(with a .cfg holding num_frames and img_size)")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    size = int(img_size or cfg.img_size)
    if getattr(cfg, "image", False):
        if frames not in (None, 1):
            raise ValueError(f"an image model takes (B, {cfg.in_chans}, H, W) input, not {frames} frames")
        return (batch, cfg.in_chans, size, size)
    T = int(frames or cfg.num_frames)
    if T < 1 or T % cfg.tubelet_size:
        raise ValueError(f"frames must be a positive multiple of the tubelet size "
                         f"{cfg.tubelet_size}, got {T}")
    return (batch, cfg.in_chans, T, size, size)


def example_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A fixed standard-normal input of ``shape`` (normalised pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def _dynamic_shapes(dynamic_batch: bool):
    if not dynamic_batch:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=1024)},)


def export_program(model: nn.Module, x: torch.Tensor, dynamic_batch: bool = False):
    """``torch.export.export`` of ``model`` (eval mode, no autograd) on ``x``."""
    model.eval()
    with torch.no_grad():
        return torch.export.export(model, (x,), dynamic_shapes=_dynamic_shapes(dynamic_batch))


def export_onnx(model: nn.Module, x: torch.Tensor, path: str | Path, dynamic_batch: bool = False,
                opset: int | None = None) -> None:
    """Write ``model`` as a self-contained ONNX file traced through the pure-torch scan."""
    from ..ops import use_backend

    model.eval()
    kw = {} if opset is None else {"opset_version": opset}
    with use_backend("torch"), torch.no_grad():
        prog = torch.onnx.export(model, (x,), dynamo=True, input_names=[INPUT_NAME],
                                 output_names=[OUTPUT_NAME],
                                 dynamic_shapes=_dynamic_shapes(dynamic_batch), verbose=False,
                                 **kw)
    with atomic_path(path) as tmp:
        prog.save(str(tmp), external_data=False)


def run_exported(path: str | Path, x: torch.Tensor, fmt: str | None = None) -> torch.Tensor:
    """Load an exported file from disk and run it on ``x`` (CPU) -> the output tensor."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "pt2":
        from .. import ops  # noqa: F401 - registers the custom ops the program calls
        prog = torch.export.load(str(path))
        with torch.no_grad():
            return prog.module()(x)
    if fmt == "onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    raise ValueError(f"unknown export format {fmt!r} for {path}; expected one of {', '.join(FORMATS)}")


def export_model(model: nn.Module, path: str | Path, fmt: str = "pt2",
                 x: torch.Tensor | None = None, dynamic_batch: bool = False) -> ExportResult:
    """Export ``model`` to ``path`` in ``fmt`` (``pt2`` or ``onnx``) and check the written file
    against the eager model on ``x`` (default: the config's input, batch 1). With
    ``dynamic_batch`` the file is also checked on a batch of another size."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        for mod, pkg in (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime")):
            try:
                __import__(mod)
            except ImportError as e:
                raise RuntimeError(f"ONNX export needs the {pkg!r} package ({e}); install the "
                                   "[export] extra: pip install -e \".[export]\"") from e
    model = model.eval().cpu()
    x = example_input(input_shape(model)) if x is None else x
    path = Path(path)
    # A batch of 1 would be specialised (a size-1 dimension is never symbolic): trace on 2.
    xt = example_input((2, *x.shape[1:]), seed=1) if dynamic_batch and x.shape[0] == 1 else x
    t0 = time.perf_counter()
    if fmt == "pt2":
        prog = export_program(model, xt, dynamic_batch)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.export.save(prog, f)
    else:
        export_onnx(model, xt, path, dynamic_batch)
    seconds = time.perf_counter() - t0
    batches = [x.shape[0]] + ([x.shape[0] + 1] if dynamic_batch else [])
    diff = 0.0
    for b in batches:
        xb = x if b == x.shape[0] else example_input((b, *x.shape[1:]), seed=1)
        with torch.no_grad():
            ref = model(xb)
        got = run_exported(path, xb, fmt)
        if got.shape != ref.shape:
            raise RuntimeError(f"{path}: output shape {tuple(got.shape)} differs from eager "
                               f"{tuple(ref.shape)} at batch {b}")
        diff = max(diff, (got.float() - ref.float()).abs().max().item())
    return ExportResult(str(path), fmt, tuple(x.shape), dynamic_batch, diff, seconds, tuple(batches))
