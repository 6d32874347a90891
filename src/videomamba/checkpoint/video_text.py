"""The video-text layout (``videomamba_m16_{5M,17M,25M}_f8_res224.pth``) onto :class:`VideoTextModel`.

Key map, release -> model (every other key must match by name):

| release | model |
|---|---|
| ``vision_encoder.{backbone keys}`` (``norm`` = final norm) | ``vision_encoder.*`` through the backbone filter |
| ``vision_encoder.pool_norm.*`` | ``pool_norm.*`` |
| ``vision_encoder.clip_decoder.*`` | ``clip_decoder.*`` (teacher alignment; skipped when off) |
| ``text_encoder.bert.*`` (or ``text_encoder.*``, as the retrieval loader strips ``bert.``) | ``text_encoder.*`` |
| ``text_encoder.cls.predictions.*`` | ``mlm_head.*`` |
| ``clip_teacher.*``, ``*.position_ids`` | skipped |

The text tower's size comes from its tensors (width, vocabulary, positions, depth, the first layer
with cross-attention = ``fusion_layer``); the head count, which no tensor tells, from the BERT
json embedded in the file's config, else from ``text_config``, else BERT's 64-wide heads.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .adapters import LoadReport, checkpoint_filter
from .formats import Checkpoint
from .infer import backbone_kwargs
from .io import CheckpointError

_TIED = ("mlm_head.decoder.weight", "mlm_head.decoder.bias")
_SKIP = ("clip_teacher.",)


_RENAMES = (("vision_encoder.pool_norm.", "pool_norm."), ("vision_encoder.clip_decoder.", "clip_decoder."),
            ("text_encoder.bert.", "text_encoder."), ("text_encoder.cls.predictions.", "mlm_head."))


def _release_key(k: str) -> tuple[str | None, str | None]:
    """Release key -> (model key or None to skip, the rename rule applied or None)."""
    if k.startswith(_SKIP) or k.endswith("embeddings.position_ids"):
        return None, None
    for old, new in _RENAMES:
        if k.startswith(old):
            return new + k[len(old):], f"{old}* -> {new}*"
    return k, None


def _text_from_tensors(sd: dict) -> dict:
    """TextConfig fields that the text tower's tensors tell (keys in model naming)."""
    out = {}
    emb = "text_encoder.embeddings."
    if emb + "word_embeddings.weight" in sd:
        out["vocab_size"], out["hidden_size"] = (int(s) for s in sd[emb + "word_embeddings.weight"].shape)
    if emb + "position_embeddings.weight" in sd:
        out["max_position_embeddings"] = int(sd[emb + "position_embeddings.weight"].shape[0])
    if emb + "token_type_embeddings.weight" in sd:
        out["type_vocab_size"] = int(sd[emb + "token_type_embeddings.weight"].shape[0])
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k))}
    if layers:
        out["num_hidden_layers"] = max(layers) + 1
        cross = sorted({int(m.group(1)) for k in sd
                        if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.crossattention\.", k))})
        if not cross:
            raise CheckpointError("the text tower has no cross-attention (fusion) layers: this is a text-only "
                                  "checkpoint, the video-text model needs its fusion layers")
        out["fusion_layer"] = cross[0]
        w = sd.get("text_encoder.encoder.layer.0.intermediate.dense.weight")
        if w is not None:
            out["intermediate_size"] = int(w.shape[0])
    return out


def _read_text_config(spec) -> dict:
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    p = Path(spec)
    if p.is_dir():
        p = p / "config.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"text_config {spec}: not a readable BERT json ({e})") from None


def video_text_config(ckpt: Checkpoint, text_config=None, report: LoadReport | None = None):
    """The :class:`VideoTextConfig` a video-text checkpoint was saved from."""
    from ..models.config import VideoMambaConfig
    from ..models.video_text import VideoTextConfig, video_text_config_from_release

    if ckpt.config is not None:
        return VideoTextConfig.from_dict({k: v for k, v in ckpt.config.items() if k != "architecture"})
    sd = {_release_key(k)[0] or k: v for k, v in ckpt.state_dict.items()}
    rc = dict(ckpt.release_config)
    bert = dict(rc.get("bert_config") or {})
    bert.update(_read_text_config(text_config))
    vision_sd = {k[len("vision_encoder."):]: v for k, v in ckpt.state_dict.items() if k.startswith("vision_encoder.")}
    inputs = rc.get("inputs") or {}
    vision = VideoMambaConfig(**backbone_kwargs(vision_sd, {"num_frames": rc.get("num_frames"),
                                                            "input_size": inputs.get("image_res")}))
    told = _text_from_tensors(sd)
    if "num_attention_heads" not in bert:
        heads = max(1, told.get("hidden_size", 768) // 64)
        bert["num_attention_heads"] = heads
        if report is not None:
            report.config["text.num_attention_heads"] = (f"{heads} (no BERT json in the file: BERT's 64-wide heads "
                                                         "assumed; pass text_config= to set it)")
    for k, v in told.items():
        if k in bert and bert[k] != v and report is not None:
            report.config[f"text.{k}"] = f"{v} (from the tensors; the file's BERT json says {bert[k]})"
    bert.update(told)
    rc = {**rc, "bert_config": bert}
    model = dict(rc.get("model") or {})
    if "vision_proj.weight" in sd:
        model["embed_dim"] = int(sd["vision_proj.weight"].shape[0])
    rc["model"] = model
    cfg = video_text_config_from_release(rc)
    return cfg.replace(vision=vision.to_dict(), uta=any(k.startswith("clip_decoder.") for k in sd) and cfg.uta)


def video_text_state_dict(ckpt: Checkpoint, model, report: LoadReport, **filter_kwargs) -> dict:
    """Map a video-text checkpoint onto ``model`` (pure); fills ``report``."""
    target = model.state_dict()
    if ckpt.config is not None:               # our own files: names already match
        sd = dict(ckpt.state_dict)
    else:
        sd = {}
        vision = {}
        for k, v in ckpt.state_dict.items():
            new, rule = _release_key(k)
            if k.startswith("vision_encoder.") and rule is None:
                vision[k[len("vision_encoder."):]] = v
                continue
            if new is None:
                report.skipped.append(k)
                continue
            if rule is not None:
                report.adapted[rule.split(" -> ")[1]] = "renamed from " + rule.split(" -> ")[0]
            sd[new] = v
        vr = LoadReport(source=report.source)
        vsd, vr = checkpoint_filter(vision, model.vision_encoder, report=vr, **filter_kwargs)
        sd.update({f"vision_encoder.{k}": v for k, v in vsd.items()})
        report.adapted.update({f"vision_encoder.{k}": v for k, v in vr.adapted.items()})
        report.skipped += [f"vision_encoder.{k}" for k in vr.skipped]
        report.unexpected += [f"vision_encoder.{k}" for k in vr.unexpected]
    out = {}
    for k, v in sd.items():
        if k not in target:
            if k.startswith("clip_decoder.") or k in _TIED:
                report.skipped.append(k)
            else:
                report.unexpected.append(k)
            continue
        if v.shape != target[k].shape:
            raise CheckpointError(f"{ckpt.source}: {k} has shape {tuple(v.shape)} in the checkpoint, the model "
                                  f"expects {tuple(target[k].shape)}")
        out[k] = v
    report.missing = [k for k in target if k not in out and k not in _TIED]
    return out


def video_text_from_checkpoint(ckpt: Checkpoint, strict: bool | None = None, text_config=None,
                               tokenizer=None, **overrides):
    """Build the video-text model a checkpoint was saved from and load it."""
    from ..models.text import TextTokenizer
    from ..models.video_text import VideoTextModel
    from .load import load_into

    report = LoadReport()
    cfg = video_text_config(ckpt, text_config, report)
    if overrides:
        cfg = cfg.replace(**overrides)
        for k in overrides:
            report.config[k] = f"{overrides[k]} (override)"
    if tokenizer is None and Path(ckpt.source).is_dir() and (Path(ckpt.source) / "vocab.txt").is_file():
        tokenizer = TextTokenizer(Path(ckpt.source) / "vocab.txt", cfg.max_txt_l)
    model = VideoTextModel(cfg, tokenizer)
    if strict is None:
        strict = ckpt.config is not None and not overrides
    load_into(model, ckpt, strict=strict, report=report)
    model.load_report = report
    return model
