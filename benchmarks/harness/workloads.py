"""What is measured: the models (ours and the peers), their inputs, and their analytic FLOPs.

A configuration ("spec") is a plain dict so that it crosses the process boundary as JSON:

    {"kind": "model", "model": "videomamba_tiny", "attn": None, "frames": 64, "img": 224,
     "batch": 1, "dtype": "fp32", "mode": "infer", "grad_ckpt": False, "device": "cpu"}

Models (``MODELS``): our presets by name, and peers built from HF ``transformers`` configs with
random weights (offline, no hub):
- ``vit_ti_joint``: joint space-time attention ViT-Ti (VideoMAE config: hidden 192, 12 layers,
  3 heads, MLP 768, patch 16, tubelet 1) -- the paper's comparator, L = T*196 tokens, no cls.
- ``videomae_s``: VideoMAE-S (hidden 384, 12 layers, 6 heads, MLP 1536, tubelet 2).
- ``timesformer_b``: TimeSformer-B (hidden 768, 12 layers, divided space-time attention).
  transformers has no sdpa path for it: eager only.
``grad_ckpt`` is gradient checkpointing for every model: our per-block checkpointing, and
transformers' ``gradient_checkpointing_enable()`` for the peers.
``toy_*`` models are tiny and exist for the harness's own tests.
"""
from __future__ import annotations

# name -> (family, kwargs). Families: "videomamba" (create_model overrides), "videomae", "timesformer".
MODELS: dict[str, tuple[str, dict]] = {
    "videomamba_tiny": ("videomamba", {}),
    "videomamba_small": ("videomamba", {}),
    "videomamba_middle": ("videomamba", {}),
    "vit_ti_joint": ("videomae", dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                                      intermediate_size=768, tubelet_size=1, patch_size=16)),
    "videomae_s": ("videomae", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                    intermediate_size=1536, tubelet_size=2, patch_size=16)),
    "timesformer_b": ("timesformer", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                          intermediate_size=3072, patch_size=16,
                                          attention_type="divided_space_time")),
    # tiny stand-ins for tests of the harness itself
    "toy_videomamba": ("videomamba", dict(base="videomamba_tiny", embed_dim=16, depth=2)),
    "toy_vit": ("videomae", dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, tubelet_size=1, patch_size=16)),
}

LABELS = {
    "videomamba_tiny": "VideoMamba-Ti", "videomamba_small": "VideoMamba-S", "videomamba_middle": "VideoMamba-M",
    "vit_ti_joint": "ViT-Ti joint attn", "videomae_s": "VideoMAE-S", "timesformer_b": "TimeSformer-B",
    "toy_videomamba": "toy VideoMamba", "toy_vit": "toy ViT",
}

NUM_CLASSES = 400
ATTN_IMPLS = ("sdpa", "eager")


def family(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown benchmark model {model!r}; known: {', '.join(MODELS)}")
    return MODELS[model][0]


def is_ours(model: str) -> bool:
    """Whether a benchmark model is a VideoMamba (the rest are transformers' peers)."""
    return family(model) == "videomamba"


def supported_attn(model: str) -> tuple[str, ...]:
    """Attention implementations a peer supports here; () for models without attention."""
    fam = family(model)
    if fam == "videomamba":
        return ()
    if fam == "timesformer":
        return ("eager",)
    return ATTN_IMPLS


def spec_label(spec: dict) -> str:
    """Human name of the model variant of a spec: 'ViT-Ti joint attn (sdpa)', 'VideoMamba-Ti +ckpt'."""
    s = LABELS.get(spec["model"], spec["model"])
    if spec.get("attn"):
        s += f" ({spec['attn']})"
    if spec.get("grad_ckpt"):
        s += " +ckpt"
    for k, v in sorted((spec.get("overrides") or {}).items()):
        s += f" {k}={v}"
    for k, v in sorted((spec.get("env") or {}).items()):
        s += f" [{ENV_LABELS.get((k, str(v)), f'{k}={v}')}]"
    return s


# how a per-configuration environment reads on the page
ENV_LABELS = {
    ("VIDEOMAMBA_SCAN_BACKEND", "ref"): "release-equivalent: sequential reference scan",
    ("VIDEOMAMBA_MALLOC_TUNE", "1"): "malloc tuned: mmap threshold 1 MiB",
}


def spec_id(spec: dict) -> str:
    """Stable key of a configuration, used to resume a run and to look results up."""
    if spec.get("kind", "model") != "model":
        return f"{spec['kind']}/{spec.get('name', '')}/{spec.get('device', 'cpu')}"
    m = spec["model"] + ("+ckpt" if spec.get("grad_ckpt") else "")
    m += "".join(f"+{k}={v}" for k, v in sorted((spec.get("overrides") or {}).items()))
    m += "".join(f"+env:{k}={v}" for k, v in sorted((spec.get("env") or {}).items()))
    if spec.get("attn"):
        m += f"/{spec['attn']}"
    extra = "" if spec.get("img", 224) == 224 else f"/img{spec['img']}"
    return f"{spec['mode']}/{m}/T{spec['frames']}/B{spec['batch']}/{spec['dtype']}/{spec.get('device', 'cpu')}{extra}"


def videomamba_config(spec: dict):
    from videomamba.models import get_config

    kw = dict(MODELS[spec["model"]][1])
    base = kw.pop("base", spec["model"])
    kw.update(spec.get("overrides") or {})       # any VideoMambaConfig field, e.g. mixer_recompute
    return get_config(base, num_frames=spec["frames"], img_size=spec.get("img", 224),
                      num_classes=NUM_CLASSES, grad_checkpointing=bool(spec.get("grad_ckpt")), **kw)


def build_model(spec: dict):
    """The model of a spec, with random weights, on the spec's device (train or eval mode set by caller)."""
    fam = family(spec["model"])
    if fam == "videomamba":
        from videomamba.models import create_model
        return create_model(videomamba_config(spec))
    import transformers

    kw = dict(MODELS[spec["model"]][1])
    attn = spec.get("attn") or "sdpa"
    if attn not in supported_attn(spec["model"]):
        raise ValueError(f"{spec['model']} does not support attention {attn!r} in transformers "
                         f"{transformers.__version__}")
    if fam == "videomae":
        cfg = transformers.VideoMAEConfig(num_frames=spec["frames"], image_size=spec.get("img", 224),
                                          num_labels=NUM_CLASSES, use_mean_pooling=True, **kw)
        cls = transformers.VideoMAEForVideoClassification
    else:
        cfg = transformers.TimesformerConfig(num_frames=spec["frames"], image_size=spec.get("img", 224),
                                             num_labels=NUM_CLASSES, **kw)
        cls = transformers.TimesformerForVideoClassification
    if spec.get("overrides"):
        raise ValueError("config overrides apply to VideoMamba only")
    model = cls._from_config(cfg, attn_implementation=attn)
    if spec.get("grad_ckpt"):
        # what a user of transformers switches on: every layer's forward runs again in backward
        # (``gradient_checkpointing_enable``, renamed ``activation_checkpointing_enable`` in transformers 5)
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model


def checkpointing_on(model) -> bool:
    """Whether a transformers model recomputes its layers in backward."""
    flag = getattr(type(model), "is_activation_checkpointing", None)
    return bool(model.is_activation_checkpointing if flag is not None else model.is_gradient_checkpointing)


def input_elems(spec: dict) -> int:
    """Elements of one batch's input clip."""
    S = spec.get("img", 224)
    return spec["batch"] * 3 * spec["frames"] * S * S


def make_input(spec: dict, device=None):
    """Random clip in the layout the model expects: ours (B, 3, T, H, W), HF peers (B, T, 3, H, W)."""
    import torch

    B, T, S = spec["batch"], spec["frames"], spec.get("img", 224)
    if is_ours(spec["model"]):
        return torch.randn(B, 3, T, S, S, device=device)
    return torch.randn(B, T, 3, S, S, device=device)


def forward(model, spec: dict, x):
    """Logits for one batch, whatever the model's call convention."""
    if is_ours(spec["model"]):
        return model(x)
    return model(pixel_values=x).logits


def gflops(spec: dict) -> dict:
    """Analytic forward GFLOPs (multiply-adds, the papers' unit) of one batch.

    Ours: :func:`videomamba.models.flops.count_flops` (both conventions). Peers: torch's
    FlopCounterMode on the meta device (no memory, no time), halved to multiply-adds.
    """
    B = spec["batch"]
    if is_ours(spec["model"]):
        from videomamba.models.flops import count_flops
        c = count_flops(videomamba_config(spec))
        scan = c.breakdown["scan"]
        return {"params": c.params, "tokens": c.tokens, "gmacs_full": B * c.full / 1e9,
                "gmacs_papers": B * c.papers / 1e9, "gmacs_linear": B * (c.full - scan) / 1e9,
                "gmacs_scan": B * scan / 1e9, "scan_elems": B * scan / 9.0,   # the full count: 9 per element
                "input_elems": input_elems(spec)}
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(spec).eval()
        x = make_input(spec)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            forward(model, spec, x)
    params = sum(p.numel() for p in model.parameters())
    total = fc.get_total_flops() / 2
    per_op = {str(k): v / 2 for k, v in fc.get_flop_counts().get("Global", {}).items()}
    attn = sum(v for k, v in per_op.items() if "attention" in k or k.endswith("bmm"))
    k, p = MODELS[spec["model"]][1].get("tubelet_size", 1), MODELS[spec["model"]][1]["patch_size"]
    tokens = (spec["frames"] // k) * (spec.get("img", 224) // p) ** 2
    return {"params": params, "tokens": tokens, "gmacs_full": total / 1e9, "gmacs_papers": total / 1e9,
            "gmacs_linear": (total - attn) / 1e9, "gmacs_attention": attn / 1e9}
