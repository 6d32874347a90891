"""Delta (step size) maps, KAIST paper §5.6.

Glossary: B batch, E inner width, L sequence length, T frames, k tubelet, t = T/k, h x w token
grid, H x W pixels.

delta = softplus(dt_proj(...) + bias), (B, E, L) per layer and per direction; a large delta lets
the current token overwrite the state, a small one keeps the context. The model returns both
directions already un-permuted to canonical token positions (``VideoMamba.forward_deltas``), so
a map is:

    mean over E and over the two directions -> drop the cls token -> (t, h, w)
    -> each tubelet covers its k frames -> upsampled to pixels -> heat map over the frame.

Colour scale: each layer is scaled over the whole clip (all frames together), so a layer's frames
are comparable with each other; layers are not comparable with each other (their delta ranges
differ by orders of magnitude). The scale runs from the layer's 2nd to its 98th percentile token
rather than min..max: the first tokens of a scan direction (the clip's first and last tokens)
often take extreme values that would otherwise flatten everything else to one colour.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..constants import IMAGENET_MEAN, IMAGENET_STD


def delta_maps(deltas, grid: tuple[int, int, int], cls_index: int | None) -> torch.Tensor:
    """Per-layer ``(delta_fwd, delta_bwd)``, each (B, E, L) in canonical order -> (layers, B, t, h, w)."""
    t, h, w = grid
    out = []
    for i, pair in enumerate(deltas):
        if pair is None:
            raise ValueError(f"layer {i} recorded no delta (run the model under record_deltas())")
        d_f, d_b = pair
        m = 0.5 * (d_f.float().mean(1) + d_b.float().mean(1))                   # (B, L)
        if cls_index is not None:
            m = torch.cat([m[:, :cls_index], m[:, cls_index + 1:]], dim=1)       # (B, t*S)
        if m.shape[1] != t * h * w:
            raise ValueError(f"layer {i}: {m.shape[1]} patch tokens do not fit the grid {grid}")
        out.append(m.reshape(-1, t, h, w))
    return torch.stack(out)


@torch.no_grad()
def compute_delta_maps(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` on ``x`` (B, 3, T, H, W) -> (maps (layers, B, t, h, w), logits (B, K))."""
    cfg = model.cfg
    if x.dim() == 4:
        x = x.unsqueeze(2)
    logits, deltas = model.forward_deltas(x)
    T, H, W = x.shape[2:]
    grid = (T // cfg.tubelet_size, H // cfg.patch_size, W // cfg.patch_size)
    ci = model.cls_index(grid[0] * grid[1] * grid[2])
    return delta_maps(deltas, grid, ci), logits


def upsample_maps(maps: torch.Tensor, tubelet: int, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(..., t, h, w) -> (..., t*k, H, W): a tubelet's value covers its k frames; space is
    interpolated to pixels."""
    lead, (t, h, w) = maps.shape[:-3], maps.shape[-3:]
    m = maps.reshape(-1, t, h, w).float().repeat_interleave(tubelet, dim=1)    # (n, T, h, w)
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    m = F.interpolate(m, size=tuple(size), mode=mode, **kw)
    return m.reshape(*lead, t * tubelet, *size)


def normalise_per_layer(maps: torch.Tensor, q: float = 0.0) -> torch.Tensor:
    """(layers, ...) -> [0, 1] per layer: the layer's q-quantile maps to 0, its (1-q)-quantile to 1,
    values beyond are clipped (q = 0: min..max)."""
    if not 0.0 <= q < 0.5:
        raise ValueError(f"q must be in [0, 0.5), got {q!r}")
    flat = maps.reshape(maps.shape[0], -1).float()
    lo = torch.quantile(flat, q, dim=1, keepdim=True)
    hi = torch.quantile(flat, 1.0 - q, dim=1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).reshape(maps.shape)


def to_uint8_frames(video: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """A normalised clip (3, T, H, W) -> uint8 frames (T, H, W, 3)."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"expected one clip (3, T, H, W), got {tuple(video.shape)}")
    m = torch.tensor(mean).view(3, 1, 1, 1)
    s = torch.tensor(std).view(3, 1, 1, 1)
    px = (video.detach().float().cpu() * s + m).clamp(0, 1)
    return (px * 255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous()


def overlay(frames: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> torch.Tensor:
    """uint8 frames (T, H, W, 3) + heat in [0, 1] (T, H, W) -> uint8 blended (T, H, W, 3)."""
    from matplotlib import colormaps

    colours = torch.from_numpy(colormaps[cmap](heat.clamp(0, 1).cpu().numpy())[..., :3]).float()
    out = (1 - alpha) * frames.float() / 255 + alpha * colours
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def default_layers(depth: int, count: int = 6) -> list[int]:
    """All layers for shallow models, else ``count`` evenly spaced ones including first and last."""
    if depth <= count:
        return list(range(depth))
    return sorted({round(i * (depth - 1) / (count - 1)) for i in range(count)})


def save_grid_png(frames: torch.Tensor, heat: torch.Tensor, layers: list[int], path: str | Path,
                  title: str | None = None, alpha: float = 0.5) -> Path:
    """PNG grid: first row the frames, then one row per layer (heat over each frame)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import atomic_path

    T = frames.shape[0]
    rows = 1 + len(layers)
    fig, axes = plt.subplots(rows, T, figsize=(1.6 * T + 0.8, 1.6 * rows + 0.4), squeeze=False)
    for j in range(T):
        axes[0, j].imshow(frames[j].numpy())
        axes[0, j].set_title(f"frame {j + 1}", fontsize=8)
    for r, li in enumerate(layers, start=1):
        blended = overlay(frames, heat[r - 1], alpha)
        for j in range(T):
            axes[r, j].imshow(blended[j].numpy())
        axes[r, 0].set_ylabel(f"layer {li}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _strip_frames(frames: torch.Tensor, heat: torch.Tensor, layers: list[int], alpha: float) -> list:
    """One image per video frame: [frame | layer a | layer b | ...] side by side, labelled."""
    from PIL import Image, ImageDraw

    blended = [overlay(frames, heat[i], alpha) for i in range(len(layers))]
    T, H, W, _ = frames.shape
    label_h = 12
    out = []
    for j in range(T):
        panels = [frames[j]] + [b[j] for b in blended]
        strip = torch.cat(panels, dim=1).numpy()                                  # (H, W * n, 3)
        img = Image.new("RGB", (strip.shape[1], H + label_h), "white")
        img.paste(Image.fromarray(strip), (0, label_h))
        draw = ImageDraw.Draw(img)
        names = [f"frame {j + 1}"] + [f"layer {li}" for li in layers]
        for i, n in enumerate(names):
            draw.text((i * W + 2, 0), n, fill="black")
        out.append(img)
    return out


def save_animation(frames: torch.Tensor, heat: torch.Tensor, layers: list[int], path: str | Path,
                   fps: float = 4.0, alpha: float = 0.5) -> Path:
    """Animated ``.gif`` (Pillow) or ``.mp4`` (PyAV): each frame shows the video frame and its
    heat maps for ``layers`` side by side."""
    from ..fileio import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = _strip_frames(frames, heat, layers, alpha)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        with atomic_path(path) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(1000 / fps), loop=0)
        return path
    if suffix == ".mp4":
        import numpy as np

        from ..data.video import write_video
        return write_video(path, (np.asarray(img.convert("RGB")) for img in images), fps=fps)
    raise ValueError(f"animation path must end in .gif or .mp4, got {path.name!r}")


def visualise_clip(model, clip: torch.Tensor, out_dir: str | Path, layers: list[int] | None = None,
                   name: str = "delta", mean=IMAGENET_MEAN, std=IMAGENET_STD, alpha: float = 0.5,
                   animation: str = "gif", class_names: list[str] | None = None,
                   clip_quantile: float = 0.02) -> dict:
    """Delta maps of one normalised clip (3, T, H, W) -> PNG grid + animation in ``out_dir``.

    Returns ``{"png": path, "animation": path, "layers": [...], "prediction": ...}``.
    """
    cfg = model.cfg
    layers = default_layers(cfg.depth) if layers is None else list(layers)
    bad = [i for i in layers if not 0 <= i < cfg.depth]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has layers 0..{cfg.depth - 1}")
    model.eval()
    maps, logits = compute_delta_maps(model, clip.unsqueeze(0))                  # (layers, 1, t, h, w)
    T, H, W = clip.shape[1:]
    tokens = normalise_per_layer(maps[layers, 0], q=clip_quantile)               # (n, t, h, w) in [0, 1]
    heat = upsample_maps(tokens, cfg.tubelet_size, (H, W))                       # (n, T, H, W)
    frames = to_uint8_frames(clip, mean, std)
    pred = None
    title = None
    if logits.shape[-1] > 0:
        k = int(logits[0].argmax())
        p = float(torch.softmax(logits[0].float(), -1)[k])
        label = class_names[k] if class_names and k < len(class_names) else str(k)
        pred = {"class": k, "label": label, "prob": p}
        title = f"predicted: {label} (p={p:.2f})"
    out_dir = Path(out_dir)
    png = save_grid_png(frames, heat, layers, out_dir / f"{name}_grid.png", title=title, alpha=alpha)
    anim = save_animation(frames, heat, layers, out_dir / f"{name}.{animation}", alpha=alpha)
    return {"png": str(png), "animation": str(anim), "layers": layers, "prediction": pred}
