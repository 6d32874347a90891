"""Video-text training in the engine: ``task.type: retrieval`` (pre-training and fine-tuning).

The trainer (``engine/trainer.py``) keeps its loop, resume, DDP, bf16 and progress; for this task it
asks this module for the data (:func:`setup_data`: caption datasets instead of labelled videos),
the model (:func:`setup_model`: a :class:`~videomamba.models.video_text.VideoTextModel` with its
tokenizer), the task (:class:`VideoTextTask`: batch -> VTC + VTM + MLM [+ UTA] loss), validation
(:func:`validate`: retrieval metrics) and the export (``model/`` + ``vocab.txt``).

Config: ``model:`` names the vision tower (a preset + VideoMamba fields), ``video_text:`` the rest
(see :class:`~videomamba.engine.config.VideoTextSection`). Batch keys: ``video`` (B, 3, T, H, W),
``caption`` (B strings), ``idx`` (B,) video ids (captions of one video are positives).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import tempfile
import time
from pathlib import Path

import torch

from .config import ConfigError


# ------------------------------------------------------------------------------ caption symmetries
def load_caption_map(annotations: "str | Path | None", name: str = "reverse") -> dict[str, str] | None:
    """``meta.json`` beside the annotation file -> ``caption_maps[name]`` (phrase -> phrase), or None."""
    return _meta_entry(annotations, "caption_maps", name)


def load_caption_groups(annotations: "str | Path | None") -> list[list[str]] | None:
    """``meta.json`` beside the annotation file -> its ``caption_groups`` (name -> interchangeable
    phrases, e.g. the shape names) as a list of groups, or None."""
    groups = _meta_entry(annotations, "caption_groups")
    return [list(g) for g in groups.values()] if isinstance(groups, dict) else None


def _meta_entry(annotations, key: str, name: str | None = None):
    if not annotations:
        return None
    meta = Path(annotations).parent / "meta.json"
    if not meta.is_file():
        return None
    try:
        entry = json.loads(meta.read_text()).get(key) or {}
    except (json.JSONDecodeError, AttributeError):
        return None
    return entry.get(name) if name is not None else entry


def map_caption(caption: str, mapping: dict[str, str]) -> str:
    """Replace every phrase of ``mapping`` (longest first, whole words, one pass)."""
    keys = sorted(mapping, key=len, reverse=True)
    pat = re.compile(r"\b(" + "|".join(re.escape(k) for k in keys) + r")\b")
    return pat.sub(lambda m: mapping[m.group(1)], caption)


def swap_word(caption: str, groups: "list[list[str]]", rng) -> str | None:
    """``caption`` with one phrase of one of ``groups`` (interchangeable phrases, e.g. shape names)
    replaced by another phrase of its group, both drawn with ``rng`` (a ``random.Random``); None when
    the caption holds no phrase of any group. Whole words, longest phrase first."""
    hits = []
    for g, group in enumerate(groups):
        if len(group) < 2:                                      # nothing to swap to
            continue
        for phrase in sorted(group, key=len, reverse=True):
            m = re.search(r"\b" + re.escape(phrase) + r"\b", caption)
            if m:
                hits.append((g, phrase, m))
                break
    if not hits:
        return None
    g, phrase, m = hits[rng.randrange(len(hits))]
    other = rng.choice([p for p in groups[g] if p != phrase])
    return caption[:m.start()] + other + caption[m.end():]


def caption_id(caption: str) -> int:
    """A 56-bit id of the caption's text, equal on every rank (``positives: caption``)."""
    return int.from_bytes(hashlib.blake2b(caption.encode("utf-8"), digest_size=7).digest(), "little")


# ------------------------------------------------------------------------------ task
class VideoTextTask:
    """Batch -> the video-text losses (through the model's forward, so DDP syncs gradients).

    ``reverse_map``: add every clip played backwards with its caption mapped (e.g. "left" <->
    "right"), as a separate video id: each batch then holds pairs that only the direction of
    motion tells apart. ``positives``: "video" (clips of one video are positives, as the release)
    or "caption" (also clips with the same caption: for data whose captions repeat, where they
    would otherwise be negatives of each other). ``video_mask``: (kind, ratio) for masked video
    input; ``teacher``: the frozen teacher of the alignment loss (needs a mask).
    ``negative_captions``: per clip, that many copies of its caption with one phrase of
    ``swap_groups`` replaced by another of its group ("a red kite" -> "a red oval") join the
    contrastive loss as captions of no video: negatives that differ from a positive in one word.
    """

    kind = "retrieval"
    higher_is_better = True

    def __init__(self, weights: dict, mlm_prob: float = 0.5, reverse_map: dict | None = None,
                 id_offset: int = 0, video_mask: tuple[str, float] | None = None, teacher=None,
                 main_metric: str = "r_mean", positives: str = "video", negative_captions: int = 0,
                 swap_groups: "list[list[str]] | None" = None):
        if positives not in ("video", "caption"):
            raise ValueError(f"positives must be 'video' or 'caption', got {positives!r}")
        if negative_captions < 0:
            raise ValueError(f"negative_captions must be >= 0, got {negative_captions}")
        if negative_captions and not swap_groups:
            raise ValueError("negative_captions needs swap_groups (lists of interchangeable phrases)")
        self.negative_captions = int(negative_captions)
        self.swap_groups = [list(g) for g in swap_groups or []]
        self.positives = positives
        self.weights = dict(weights)
        self.mlm_prob = mlm_prob
        self.reverse_map = reverse_map
        self.id_offset = int(id_offset)
        self.video_mask = video_mask
        self.teacher = teacher
        self.main_metric = main_metric
        self.num_classes = 0

    def train_step(self, model, batch: dict, device: torch.device) -> dict:
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        video = batch["video"].to(device, non_blocking=True)
        if video.dim() == 6:                               # repeated augmentation: (B, V, ...) -> one view
            video = video[:, 0]
        captions = list(batch["caption"])
        idx = torch.as_tensor(batch["idx"]).to(device).long()
        if self.reverse_map:
            video = torch.cat([video, video.flip(2)])
            captions = captions + [map_caption(c, self.reverse_map) for c in captions]
            idx = torch.cat([idx, idx + self.id_offset])
        if self.positives == "caption":
            idx = torch.tensor([caption_id(c) for c in captions], device=device)
        ids, mask = inner.tokenize(captions)
        negative_text = None
        if self.negative_captions:
            # drawn from the batch's ids: the same batch gets the same negatives (resume, replays)
            rng = random.Random(caption_id(" ".join(map(str, idx.tolist()))))
            negs = [n for c in captions for n in (swap_word(c, self.swap_groups, rng)
                                                  for _ in range(self.negative_captions)) if n is not None]
            if negs:
                negative_text = tuple(t.to(device) for t in inner.tokenize(negs))
        mask_t = uta = None
        if self.video_mask is not None:
            from ..models.masking import make_mask

            kind, ratio = self.video_mask
            vc = inner.cfg.vision
            grid = (video.shape[2] // vc.tubelet_size, video.shape[3] // vc.patch_size, video.shape[4] // vc.patch_size)
            tout = None
            if self.teacher is not None:
                with torch.no_grad():
                    tout = self.teacher(video, grid, need_attention=kind == "attention")
            mask_t = make_mask(kind, video.shape[0], grid, ratio, attention=None if tout is None else tout.attention,
                               device=video.device)
            if tout is not None:
                from ..models.masking import visible_positions
                vis = visible_positions(mask_t)                                     # (B, P)
                tok = torch.gather(tout.tokens, 1, vis[..., None].expand(-1, -1, tout.tokens.shape[-1]))
                cls = tout.cls if tout.cls is not None else tout.tokens.mean(1)
                uta = torch.cat([cls[:, None].to(tok.dtype), tok], 1)              # (B, 1 + P, C)
        out = model(video, ids, mask, idx, weights=self.weights, video_mask=mask_t, mlm_prob=self.mlm_prob,
                    uta_targets=uta, negative_text=negative_text)
        return {"loss": out["loss"], "count": int(video.shape[0]),
                **{k: float(v.detach()) for k, v in out.items() if k != "loss"}}

    @torch.no_grad()
    def predict(self, model, video):                       # the embedding: what retrieval compares
        return model.encode_video(video)


# ------------------------------------------------------------------------------ trainer hooks
def _dataset(cfg, path, train: bool):
    from ..data.captions import VideoTextDataset, dataset_preset

    vt, d, a = cfg.video_text, cfg.data, cfg.augment
    paragraph, _ = dataset_preset(vt.dataset)
    if vt.paragraph is not None:
        paragraph = vt.paragraph
    # the clip-level augmentations of the config (symmetries relabel classes: not for captions)
    aug = dataclasses.replace(a, symmetries=()) if train else None
    return VideoTextDataset(path, d.root, train=train, paragraph=paragraph, num_frames=d.num_frames,
                            img_size=d.img_size, num_clips=1 if train else d.test_clips, sampling=d.sampling,
                            sample_stride=d.sample_stride, augment=aug, flip=a.flip, skip_missing=vt.skip_missing,
                            cache=d.cache)


def setup_data(tr) -> None:
    """Trainer hook: caption datasets and loaders (sets the trainer's data attributes)."""
    from .data import make_loader

    cfg, d = tr.cfg, tr.cfg.data
    if tr.train_dataset is None:
        if not d.train:
            raise ConfigError("data.train is not set: give a video-text annotation file (the release's JSON "
                              "layout or a path,caption CSV) with data.train=PATH")
        tr.train_dataset = _dataset(cfg, d.train, train=True)
    if tr.val_dataset is None and d.val:
        tr.val_dataset = _dataset(cfg, d.val, train=False)
    if getattr(tr.train_dataset, "missing", None):
        tr.say(f"skipped {len(tr.train_dataset.missing)} missing training video(s)")
    tr.classes, tr.num_classes = None, 0
    bs = d.batch_size
    tr.train_loader, tr.train_sampler = make_loader(tr.train_dataset, bs, tr.info, train=True, seed=cfg.train.seed,
                                                    num_workers=d.num_workers, pin_memory=tr.device.type == "cuda")
    tr.val_loader = None
    if tr.val_dataset is not None:        # retrieval evaluates whole sets: the dataset itself, not a sharded loader
        tr.val_loader = tr.val_dataset
    per_rank = tr.train_sampler.num_samples
    tr.steps_per_epoch = (per_rank // bs) // cfg.optim.accum_steps
    if tr.steps_per_epoch < 1:
        raise ConfigError(f"data.batch_size x optim.accum_steps = {bs} x {cfg.optim.accum_steps} is larger than the "
                          f"{per_rank} training captions per process; lower data.batch_size")


def build_tokenizer(cfg, train_dataset, out_dir: Path, is_main: bool, say=print):
    """The release's tokenizer from a local ``bert-base-uncased`` (``video_text.tokenizer``), or a
    WordPiece vocabulary trained on the training captions (written to ``out_dir/vocab.txt``)."""
    from ..models.text import TextTokenizer, find_vocab, train_wordpiece

    vt = cfg.video_text
    max_len = max_txt_len(cfg)
    vocab = find_vocab(vt.tokenizer)
    if vocab is not None:
        return TextTokenizer(vocab, max_len)
    texts = list(getattr(train_dataset, "texts", []))
    target = out_dir / "vocab.txt" if is_main else Path(tempfile.mkdtemp()) / "vocab.txt"
    if not target.is_file():
        train_wordpiece(texts, target, vocab_size=vt.vocab_size)
        say(f"no video_text.tokenizer: trained a {len(target.read_text().splitlines())}-token WordPiece vocabulary "
            f"on {len(texts)} training captions -> {target}")
    return TextTokenizer(target, max_len)


def max_txt_len(cfg) -> int:
    from ..data.captions import dataset_preset

    vt = cfg.video_text
    if vt.max_txt_l:
        return vt.max_txt_l
    _, preset = dataset_preset(vt.dataset)
    return preset or 32


def setup_model(tr) -> None:
    """Trainer hook: the video-text model (from ``model.pretrained`` when set), frozen parts that no
    active loss reaches (so that DDP sees no unused parameters), DDP wrapper."""
    from ..models.registry import get_config
    from ..models.text import TextConfig
    from ..models.video_text import VideoTextConfig, VideoTextModel, load_video_text

    cfg, d, vt = tr.cfg, tr.cfg.data, tr.cfg.video_text
    tr.method = None
    tr.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.model.pretrained:
        model = load_video_text(cfg.model.pretrained)
        tr.say(f"fine-tuning from {cfg.model.pretrained}: {getattr(model, 'load_report', '')}")
        over = {k: v for k, v in cfg.model.params.items() if k in ("drop_path_rate", "grad_checkpointing")}
        if over:
            model.cfg.vision = model.cfg.vision.replace(**over)
            model.vision_encoder.drop_path_rate = model.cfg.vision.drop_path_rate
        if model.tokenizer is None:
            if vt.tokenizer is None:
                raise ConfigError(f"{cfg.model.pretrained} holds no vocabulary: set video_text.tokenizer to the folder "
                                  f"of the tokenizer it was trained with (a local bert-base-uncased for the "
                                  f"released files)")
            model.set_tokenizer(build_tokenizer(cfg, tr.train_dataset, tr.out_dir, tr.info.is_main, tr.say))
        if vt.max_txt_l:
            model.max_txt_l = model.cfg.max_txt_l = vt.max_txt_l
            model.tokenizer.max_length = vt.max_txt_l
    else:
        tok = build_tokenizer(cfg, tr.train_dataset, tr.out_dir, tr.info.is_main, tr.say)
        vision = get_config(cfg.model.name, **{"num_frames": d.num_frames, "img_size": d.img_size,
                                               **cfg.model.params, "num_classes": 0})
        text = dict(vt.text)
        if vt.tokenizer is None:
            text["vocab_size"] = tok.vocab_size
        text.setdefault("max_position_embeddings", max(512 if vt.tokenizer else 64, max_txt_len(cfg)))
        try:
            mcfg = VideoTextConfig(vision=vision, text=TextConfig.from_dict(text), embed_dim=vt.embed_dim,
                                   temp=vt.temp, max_txt_l=max_txt_len(cfg), uta=vt.uta > 0, uta_dim=vt.uta_dim,
                                   pool_type=vt.pool_type, keep_temporal=vt.keep_temporal)
        except ValueError as e:
            raise ConfigError(f"video_text: {e}") from None
        model = VideoTextModel(mcfg, tok)
        if vt.vision_pretrained:
            from ..checkpoint import load_checkpoint
            rep = load_checkpoint(model.vision_encoder, vt.vision_pretrained)
            tr.say(f"vision tower from {vt.vision_pretrained}: {rep}")
        if vt.text_pretrained:
            rep = load_bert_weights(model, vt.text_pretrained)
            tr.say(f"text tower from {vt.text_pretrained}: {rep}")
    if tok_len := getattr(model.tokenizer, "vocab_size", None):
        if tok_len > model.cfg.text.vocab_size:
            raise ConfigError(f"the tokenizer has {tok_len} tokens but the text tower's vocab_size is "
                              f"{model.cfg.text.vocab_size}")
    freeze_unused(model, {"vtc": vt.vtc, "vtm": vt.vtm, "mlm": vt.mlm, "uta": vt.uta})
    if not vt.learn_temp:
        model.temp.requires_grad_(False)
    tr.place_model(model)


def freeze_unused(model, weights: dict) -> list[str]:
    """Parameters no active loss reaches get ``requires_grad=False``; returns their names."""
    dead = set()
    if not weights.get("mlm"):
        dead |= {n for n, _ in model.mlm_head.named_parameters(prefix="mlm_head")
                 if not n.startswith("mlm_head.decoder.weight")}
    if not weights.get("vtm") and not weights.get("mlm"):
        dead |= {n for n, _ in model.itm_head.named_parameters(prefix="itm_head")}
        fl = model.cfg.text.fusion_layer
        dead |= {n for n, _ in model.text_encoder.named_parameters(prefix="text_encoder")
                 if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", n)) and int(m.group(1)) >= fl}
    elif not weights.get("vtm"):
        dead |= {n for n, _ in model.itm_head.named_parameters(prefix="itm_head")}
    if not weights.get("vtc") and not weights.get("vtm"):
        dead |= {n for n, _ in model.named_parameters() if n.startswith(("vision_proj.", "text_proj.", "temp"))}
    for n, p in model.named_parameters():
        if n in dead:
            p.requires_grad_(False)
    return sorted(dead)


def load_bert_weights(model, folder: "str | Path") -> str:
    """Initialise the text tower and MLM head from a local BERT (``BertForMaskedLM`` weights, e.g.
    ``bert-base-uncased``), as the release does; cross-attention stays at its init."""
    from transformers import BertForMaskedLM

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video_text.text_pretrained {folder}: expected a local BERT folder "
                                f"(config.json + weights)")
    bert = BertForMaskedLM.from_pretrained(str(folder), local_files_only=True)
    src = bert.state_dict()
    sd = {}
    for k, v in src.items():
        if k.startswith("bert.") and not k.startswith("bert.pooler."):
            sd["text_encoder." + k[len("bert."):]] = v
        elif k.startswith("cls.predictions."):
            sd["mlm_head." + k[len("cls.predictions."):]] = v
    target = model.state_dict()
    bad = [k for k, v in sd.items() if k in target and target[k].shape != v.shape]
    if bad:
        raise ValueError(f"{folder}: shapes differ from the text tower for {bad[:5]} (text config and BERT disagree)")
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=False)
    text_missing = [k for k in missing if k.startswith("text_encoder.") and ".crossattention." not in k]
    return (f"{len(sd)} tensors loaded; cross-attention initialised fresh"
            + (f"; missing {text_missing[:5]}" if text_missing else ""))


def build_task(tr) -> VideoTextTask:
    """Trainer hook: the task (loss weights, caption reversal, masked input, teacher)."""
    vt = tr.cfg.video_text
    reverse_map = None
    if vt.reverse_pairs:
        reverse_map = load_caption_map(tr.cfg.data.train)
        if reverse_map is None:
            raise ConfigError(f"video_text.reverse_pairs needs caption_maps.reverse in the meta.json beside "
                              f"{tr.cfg.data.train} (what playing a clip backwards does to its caption)")
    teacher = None
    if vt.uta > 0:
        if not vt.teacher or not vt.video_mask_type:
            raise ConfigError("video_text.uta > 0 needs video_text.teacher and video_text.video_mask_type")
        from ..models.teachers import load_teacher
        teacher = load_teacher(vt.teacher, vt.teacher_model).to(tr.device)
    swap_groups = None
    if vt.negative_captions:
        swap_groups = vt.swap_groups or load_caption_groups(tr.cfg.data.train)
        if not swap_groups:
            raise ConfigError(f"video_text.negative_captions needs video_text.swap_groups (lists of interchangeable "
                              f"phrases) or caption_groups in the meta.json beside {tr.cfg.data.train}")
    mask = (vt.video_mask_type, vt.video_mask_ratio) if vt.video_mask_type else None
    n_videos = getattr(tr.train_dataset, "num_videos", None) or (1 << 30)
    return VideoTextTask({"vtc": vt.vtc, "vtm": vt.vtm, "mlm": vt.mlm, "uta": vt.uta}, vt.mlm_prob, reverse_map,
                         n_videos, mask, teacher, main_metric=vt.main_metric, positives=vt.positives,
                         negative_captions=vt.negative_captions, swap_groups=swap_groups)


def validate(tr, epoch: int) -> dict:
    """Trainer hook: retrieval on ``data.val`` (every rank computes it; rank 0 logs)."""
    from .retrieval import evaluate_retrieval

    t0 = time.time()
    vt = tr.cfg.video_text
    res = evaluate_retrieval(tr.eval_model(), tr.val_dataset, k_test=vt.k_test, micro_batch=vt.rerank_micro_batch,
                             batch_size=tr.cfg.data.eval_batch_size or tr.cfg.data.batch_size,
                             rerank_scores=vt.val_rerank, device=tr.device, amp_dtype=tr.amp_dtype,
                             progress=tr.progress_mode == "bar")
    tr.ddp_model.train()
    main = res["test/"] if "test/" in res else res["test_emb/"]
    metrics = {**main, **{f"emb_{k}": v for k, v in res["test_emb/"].items()}}
    key = tr.task.main_metric
    if key not in metrics:
        raise ConfigError(f"video_text.main_metric={key!r} is not a retrieval metric; choose from {sorted(metrics)}")
    value = metrics[key]
    if tr.best["value"] is None or value > tr.best["value"]:
        tr.best = {"metric": key, "value": value, "step": tr.step, "epoch": epoch + 1}
    tr.metrics_log.log({"kind": "val", "step": tr.step, "epoch": epoch + 1, **metrics, "time_s": time.time() - t0})
    tr.say(f"val epoch {epoch + 1}: t2v R@1 {metrics['img_r1']:.1f} v2t R@1 {metrics['txt_r1']:.1f} "
           f"{key} {value:.4g} (best {tr.best['value']:.4g} at epoch {tr.best['epoch']})")
    tr._last_val_full = metrics
    return metrics


def export_extras(model, export_dir: Path) -> None:
    """Trainer hook after ``save_pretrained``: the tokenizer's ``vocab.txt`` beside the weights."""
    if getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save(export_dir)


def final_test(tr, weights: str) -> dict | None:
    """Trainer hook: the exported weights on ``data.test`` (when set) -> ``test_metrics.json``."""
    from .metrics import write_json
    from .retrieval import evaluate_retrieval

    cfg, vt = tr.cfg, tr.cfg.video_text
    if not cfg.train.final_test or not cfg.data.test:
        return None
    ds = _dataset(cfg, cfg.data.test, train=False)
    res = evaluate_retrieval(tr.eval_model(), ds, k_test=vt.k_test, micro_batch=vt.rerank_micro_batch,
                             batch_size=cfg.data.eval_batch_size or cfg.data.batch_size, device=tr.device,
                             amp_dtype=tr.amp_dtype, progress=tr.progress_mode == "bar")
    result = {"weights": weights, "annotations": cfg.data.test,
              **{k: v for k, v in res.items() if not isinstance(v, torch.Tensor)}}
    if tr.info.is_main:
        write_json(tr.out_dir / "test_metrics.json", result)
        m = res.get("test/") or res["test_emb/"]
        tr.say(f"test ({weights}): t2v R@1 {m['img_r1']:.1f} v2t R@1 {m['txt_r1']:.1f} r_mean {m['r_mean']:.2f}")
    return result
