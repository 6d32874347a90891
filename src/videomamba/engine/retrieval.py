"""Video-text retrieval: features, contrastive similarities, re-ranking with matching scores, metrics.

Glossary: Nv videos, Nt captions, V clips per video, M video memory tokens, L text length,
d joint size, k re-ranked candidates per query.

As the release (``tasks/retrieval_utils.evaluation``):

1. text features (B, L, Dt) + masks, video memories (Nv, V, M, Dv) and embeddings (Nv, d);
2. ITC similarity ``sim_v2t = video_emb @ text_emb.T`` (mean of per-frame cosines; clips averaged),
   computed in blocks of rows so that memory stays bounded;
3. for every query, its top-k candidates by ITC get their ITM logit (class 1 of ``itm_head``
   over the fusion layers; averaged over clips); every other entry is -100; the final ranking
   uses these scores only. ``k = min(k_test, #candidates)``; the fusion runs in micro-batches;
4. R@1/5/10 in both directions (``txt_r*``: video->text, ``img_r*``: text->video), their means,
   median and mean rank (1-based), for the re-ranked scores (``"test/"``) and ITC (``"test_emb/"``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch


# ------------------------------------------------------------------------------ metrics
def _ranks(scores: np.ndarray, gt) -> np.ndarray:
    ranks = np.zeros(scores.shape[0])
    for i, row in enumerate(scores):
        order = np.argsort(row)[::-1]
        g = gt[i]
        ids = [g] if isinstance(g, (int, np.integer)) else list(g)
        ranks[i] = min(np.where(order == j)[0][0] for j in ids)
    return ranks


def retrieval_metrics(scores_v2t, scores_t2v, txt2img, img2txt, ndigits: int | None = 2) -> dict:
    """The release's ``itm_eval`` (same ranking, same rounding), plus median / mean rank (1-based).

    ``txt2img[t]``: the video (or list of videos) of caption t; ``img2txt[v]``: the captions of video v.
    """
    s_v2t = np.asarray(torch.as_tensor(scores_v2t).float().cpu())
    s_t2v = np.asarray(torch.as_tensor(scores_t2v).float().cpu())
    rv = _ranks(s_v2t, img2txt)
    rt = _ranks(s_t2v, txt2img)

    def r(ranks, k):
        return 100.0 * float((ranks < k).sum()) / len(ranks)

    out = {"txt_r1": r(rv, 1), "txt_r5": r(rv, 5), "txt_r10": r(rv, 10)}
    out["txt_r_mean"] = (out["txt_r1"] + out["txt_r5"] + out["txt_r10"]) / 3
    out.update({"img_r1": r(rt, 1), "img_r5": r(rt, 5), "img_r10": r(rt, 10)})
    out["img_r_mean"] = (out["img_r1"] + out["img_r5"] + out["img_r10"]) / 3
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    out.update({"txt_medr": float(np.median(rv + 1)), "txt_meanr": float(np.mean(rv + 1)),
                "img_medr": float(np.median(rt + 1)), "img_meanr": float(np.mean(rt + 1))})
    if ndigits is not None:
        out = {k: round(v, ndigits) for k, v in out.items()}
    return out


# ------------------------------------------------------------------------------ similarities
def blockwise_similarity(video_emb: torch.Tensor, text_emb: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """(Nv, d) x (Nt, d) -> (Nv, Nt) float32, ``block`` video rows at a time."""
    if video_emb.shape[-1] != text_emb.shape[-1]:
        raise ValueError(f"video embeddings have size {video_emb.shape[-1]} but text embeddings {text_emb.shape[-1]}")
    out = torch.empty(video_emb.shape[0], text_emb.shape[0], dtype=torch.float32)
    t = text_emb.float()
    for i in range(0, video_emb.shape[0], block):
        out[i:i + block] = (video_emb[i:i + block].float().to(t.device) @ t.T).cpu()
    return out


@torch.no_grad()
def rerank(model, sim_v2t: torch.Tensor, video_tokens: torch.Tensor, text_tokens: torch.Tensor,
           text_mask: torch.Tensor, k_test: int = 128, micro_batch: int = 32, device=None,
           progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM re-ranking of the top-k ITC candidates in both directions.

    ``video_tokens`` (Nv, V, M, Dv) (or (Nv, M, Dv)), ``text_tokens`` (Nt, L, Dt), ``text_mask`` (Nt, L).
    Returns (scores_v2t (Nv, Nt), scores_t2v (Nt, Nv)), -100 outside each query's top-k.
    """
    if video_tokens.dim() == 3:
        video_tokens = video_tokens[:, None]
    device = device or next(model.parameters()).device
    Nv, V = video_tokens.shape[:2]
    Nt = text_tokens.shape[0]
    if k_test < 1:
        raise ValueError(f"k_test must be >= 1, got {k_test}")
    v2t = torch.full((Nv, Nt), -100.0)
    t2v = torch.full((Nt, Nv), -100.0)

    def score(t_idx: torch.Tensor, v_idx: torch.Tensor) -> torch.Tensor:
        """ITM logit of class 1 for aligned (caption, video) index pairs, clips averaged."""
        out = []
        for j in range(0, len(t_idx), micro_batch):
            ti, vi = t_idx[j:j + micro_batch], v_idx[j:j + micro_batch]
            tt = text_tokens[ti].to(device)
            tm = text_mask[ti].to(device)
            s = 0.0
            for c in range(V):
                s = s + model.itm_logits(tt, tm, video_tokens[vi, c].to(device))[:, 1].float()
            out.append((s / V).cpu())
        return torch.cat(out) if out else torch.empty(0)

    # Every (caption, video) pair that either direction's top-k needs, scored once: the matching
    # score of a pair is the same whichever side asked, and micro-batches span many queries.
    top_v2t = sim_v2t.topk(min(k_test, Nt), dim=1).indices                       # (Nv, k) captions
    top_t2v = sim_v2t.T.topk(min(k_test, Nv), dim=1).indices                     # (Nt, k) videos
    v_of = torch.arange(Nv)[:, None].expand_as(top_v2t)
    t_of = torch.arange(Nt)[:, None].expand_as(top_t2v)
    keys = torch.cat([top_v2t.reshape(-1) * Nv + v_of.reshape(-1), t_of.reshape(-1) * Nv + top_t2v.reshape(-1)])
    uniq, inverse = keys.unique(return_inverse=True)
    t_idx, v_idx = uniq // Nv, uniq % Nv
    scores = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(uniq), desc="re-ranking", unit="pair")
    for j in range(0, len(uniq), micro_batch):
        scores.append(score(t_idx[j:j + micro_batch], v_idx[j:j + micro_batch]))
        if bar is not None:
            bar.update(len(scores[-1]))
    if bar is not None:
        bar.close()
    scores = torch.cat(scores) if scores else torch.empty(0)
    n1 = top_v2t.numel()
    v2t[v_of.reshape(-1), top_v2t.reshape(-1)] = scores[inverse[:n1]]
    t2v[t_of.reshape(-1), top_t2v.reshape(-1)] = scores[inverse[n1:]]
    return v2t, t2v


# ------------------------------------------------------------------------------ features
@torch.no_grad()
def text_features(model, texts: list[str], batch_size: int = 256, device=None) -> dict:
    """Captions -> {"tokens" (Nt, L, Dt), "mask" (Nt, L), "emb" (Nt, d), "truncated" int}."""
    device = device or next(model.parameters()).device
    toks, masks, embs, truncated = [], [], [], 0
    for i in range(0, len(texts), batch_size):
        ids, mask = model.tokenize(texts[i:i + batch_size])
        truncated += model.tokenizer.last_truncated
        ids, mask = ids.to(device), mask.to(device)
        tt = model.encode_text_tokens(ids, mask)
        toks.append(tt.cpu())
        masks.append(mask.cpu())
        embs.append(model.text_embedding(tt).cpu())
    return {"tokens": torch.cat(toks), "mask": torch.cat(masks), "emb": torch.cat(embs), "truncated": truncated}


@torch.no_grad()
def video_features(model, loader, device=None, keep_tokens: bool = True, amp_dtype=None,
                   progress: bool = False) -> dict:
    """Videos from a loader of ``{"video": (B[, V], 3, T, H, W)}`` -> {"emb" (Nv, d) (clips
    averaged), "tokens" (Nv, V, M, Dv) when ``keep_tokens``}."""
    import contextlib

    device = device or next(model.parameters()).device
    embs, toks = [], []
    it = loader
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(loader, desc="video features", unit="batch")
    for batch in it:
        x = batch["video"]
        if x.dim() == 5:
            x = x[:, None]
        B, V = x.shape[:2]
        x = x.reshape(B * V, *x.shape[2:]).to(device)
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with ctx:
            tok, pooled = model.encode_vision(x)
            emb = model.video_embedding(pooled)
        embs.append(emb.float().reshape(B, V, -1).mean(1).cpu())
        if keep_tokens:
            toks.append(tok.float().reshape(B, V, *tok.shape[1:]).cpu())
    out = {"emb": torch.cat(embs)}
    if keep_tokens:
        out["tokens"] = torch.cat(toks)
    return out


@torch.no_grad()
def evaluate_retrieval(model, dataset, *, k_test: int = 128, batch_size: int = 8, num_workers: int = 0,
                       micro_batch: int = 32, rerank_scores: bool = True, device=None, amp_dtype=None,
                       progress: bool = False, frame_transform=None) -> dict:
    """Zero-shot / fine-tuned retrieval on a :class:`~videomamba.data.captions.VideoTextDataset`
    (``train=False``). Returns {"test/": re-ranked metrics, "test_emb/": ITC metrics, "sim_v2t",
    "scores_v2t", "scores_t2v", "num_videos", "num_texts", "k_test", "time_s", ...}.

    ``frame_transform``: applied to every batch's videos (e.g. frame shuffling for the order test).
    """
    t0 = time.time()
    model.eval()
    device = device or next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if frame_transform is not None:
        loader = ({**b, "video": frame_transform(b["video"])} for b in loader)
    vf = video_features(model, loader, device, keep_tokens=rerank_scores, amp_dtype=amp_dtype, progress=progress)
    tf = text_features(model, dataset.texts, device=device)
    t_feat = time.time() - t0
    sim = blockwise_similarity(vf["emb"], tf["emb"])
    res = {"test_emb/": retrieval_metrics(sim, sim.T, dataset.txt2img, dataset.img2txt)}
    out = {"num_videos": len(dataset.img2txt), "num_texts": len(dataset.texts), "k_test": k_test,
           "captions_truncated": tf["truncated"], "missing_videos": list(getattr(dataset, "missing", []))}
    if rerank_scores:
        v2t, t2v = rerank(model, sim, vf["tokens"], tf["tokens"], tf["mask"], k_test, micro_batch, device, progress)
        res["test/"] = retrieval_metrics(v2t, t2v, dataset.txt2img, dataset.img2txt)
        out.update(scores_v2t=v2t, scores_t2v=t2v)
    out.update(res)
    out.update(sim_v2t=sim, feature_time_s=t_feat, time_s=time.time() - t0)
    return out


# ------------------------------------------------------------------------------ reports
_ROWS = [("test/", "ITC + ITM re-ranking"), ("test_emb/", "ITC only")]


def format_retrieval(results: dict) -> str:
    """Markdown table: R@1/5/10, median and mean rank, both directions."""
    lines = [f"Videos: {results.get('num_videos')}, captions: {results.get('num_texts')}, "
             f"re-ranked top-k: {results.get('k_test')}", "",
             "| scores | direction | R@1 | R@5 | R@10 | MdR | MnR |", "|---|---|---|---|---|---|---|"]
    for key, name in _ROWS:
        m = results.get(key)
        if not m:
            continue
        for d, label in (("img", "text→video"), ("txt", "video→text")):
            lines.append(f"| {name} | {label} | {m[f'{d}_r1']:.1f} | {m[f'{d}_r5']:.1f} | {m[f'{d}_r10']:.1f} | "
                         f"{m[f'{d}_medr']:.1f} | {m[f'{d}_meanr']:.1f} |")
    return "\n".join(lines) + "\n"


def write_retrieval(results: dict, out_dir: "str | Path", name: str = "retrieval") -> dict:
    """``<name>.json`` (metrics, no matrices) and ``<name>.md`` (the table) in ``out_dir``."""
    from ..fileio import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in results.items() if not isinstance(v, torch.Tensor)}
    jp, mp = out_dir / f"{name}.json", out_dir / f"{name}.md"
    atomic_write_text(jp, json.dumps(plain, indent=2, sort_keys=True))
    atomic_write_text(mp, format_retrieval(results))
    return {"json": jp, "markdown": mp}


def evaluate_files(checkpoint, annotations, *, root=None, dataset: str | None = None, paragraph: bool | None = None,
                   k_test: int = 128, clips: int = 1, num_frames: int | None = None, img_size: int | None = None,
                   max_txt_l: int | None = None, batch_size: int = 8, num_workers: int = 0, micro_batch: int = 32,
                   rerank_scores: bool = True, skip_missing: bool = False, device: str = "auto",
                   amp: str = "none", shuffle_frames: bool = False, out_dir=None, progress: bool = False,
                   log=print) -> dict:
    """``videomamba eval --retrieval``: a video-text model on a caption annotation file."""
    from ..data.captions import VideoTextDataset, dataset_preset
    from ..models.video_text import load_video_text
    from .distributed import resolve_device
    from .trainer import resolve_amp

    dev = resolve_device(device)
    model = load_video_text(checkpoint).to(dev).eval()
    para, preset_len = dataset_preset(dataset)
    if paragraph is not None:
        para = paragraph
    L = max_txt_l or preset_len
    if L:
        if L > model.cfg.text.max_position_embeddings:
            raise ValueError(f"max text length {L} exceeds the model's max_position_embeddings "
                             f"({model.cfg.text.max_position_embeddings})")
        model.max_txt_l = L
    if model.tokenizer is None:
        raise ValueError(f"{checkpoint} has no tokenizer (vocab.txt); the model cannot read captions")
    ds = VideoTextDataset(annotations, root, train=False, paragraph=para, num_frames=num_frames or model.num_frames,
                          img_size=img_size or model.img_size, num_clips=clips, skip_missing=skip_missing)
    amp_dtype = resolve_amp(amp, dev)
    res = evaluate_retrieval(model, ds, k_test=k_test, batch_size=batch_size, num_workers=num_workers,
                             micro_batch=micro_batch, rerank_scores=rerank_scores, device=dev, amp_dtype=amp_dtype,
                             progress=progress)
    res.update(model=str(checkpoint), annotations=str(annotations), clips=clips, max_txt_l=model.max_txt_l)
    if ds.missing:
        log(f"skipped {len(ds.missing)} missing video file(s)")
    if res["captions_truncated"]:
        log(f"{res['captions_truncated']} caption(s) longer than {model.max_txt_l} tokens were truncated")
    if shuffle_frames:
        from .tasks import shuffle_frames as shuffle

        g = torch.Generator().manual_seed(0)
        sh = evaluate_retrieval(model, ds, k_test=k_test, batch_size=batch_size, num_workers=num_workers,
                                micro_batch=micro_batch, rerank_scores=rerank_scores, device=dev, amp_dtype=amp_dtype,
                                frame_transform=lambda v: shuffle(v, g))
        res["shuffled_frames"] = {k: sh[k] for k in ("test/", "test_emb/") if k in sh}
    if out_dir is not None:
        paths = write_retrieval(res, out_dir)
        log(f"wrote {paths['json']} and {paths['markdown']}")
    log(format_retrieval(res))
    return res
