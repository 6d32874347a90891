#!/usr/bin/env python
"""Probe for the retrieval demo recipe: trains a small video-text model on captioned synthetic clips
held in memory, with a plain loop (independent of the engine), to compare recipes quickly.

    python benchmarks/retrieval_probe.py root=DATA_DIR [secs=180 steps=0 ev=0 lr=2e-3 warm=100 bs=16
        D=64 depth=4 ps=16 pstride=PS tub=1 stem=C1,C2,... size=64 pool=cls+avg kt=1 emb=64 tD=64 tl=3 fusion=2 heads=4 temp=0.07 vtc=1 vtm=0 mlm=0
        rev=1 wd=0.05 cappos=0 seed=0 tag=NAME]

DATA_DIR is a ``make_synthetic(captions=True)`` output (``captions_train.json`` / ``captions_val.json``,
8 frames of 64 px, as ``benchmarks/retrieval_demo.py`` writes). Training stops after ``secs`` seconds
or ``steps`` steps (linear warm-up over ``warm`` steps, then a cosine over the run's length: over the
steps, or over the seconds when only ``secs`` is given). ``rev=1`` adds every clip played backwards with its
caption mapped (meta.json caption_maps), as ``video_text.reverse_pairs`` does; ``cappos=1`` makes clips
with equal captions positives (``video_text.positives: caption``). Prints text->video and
video->text R@1/5 (contrastive similarities) on the held-out clips with distinct captions, which
attribute (colour, shape, motion) the wrong top-1 hits get wrong, and R@1 with frames shuffled.
``stem=16,32,64`` gives the vision tower a convolutional stem of those widths (``model.conv_stem``).
NT=threads (default: torch's). The first run caches the decoded clips in DATA_DIR/retrieval_probe_cache.pt.
"""
import json
import math
import random
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from videomamba.data.synthetic import _HUES, SHAPE_NAMES, caption_parts
from videomamba.data.video import open_video
from videomamba.engine.video_text import caption_id, map_caption, swap_word
from videomamba.models.registry import get_config
from videomamba.models.text import TextConfig, TextTokenizer, train_wordpiece
from videomamba.models.video_text import VideoTextConfig, VideoTextModel

sys.path.insert(0, str(Path(__file__).resolve().parent))   # retrieval_demo next to this file
from retrieval_demo import distinct_caption_set  # noqa: E402

if "NT" in os.environ:
    torch.set_num_threads(int(os.environ["NT"]))
args = dict(a.split("=", 1) for a in sys.argv[1:])
root = Path(args["root"])
get = lambda k, d, f=float: f(args.get(k, d))  # noqa: E731
secs, steps, ev = get("secs", 180), get("steps", 0, int), get("ev", 0, int)
lr, warm, bs, wd, seed = get("lr", 2e-3), get("warm", 100, int), get("bs", 16, int), get("wd", 0.05), get("seed", 0, int)
D, depth, ps = get("D", 64, int), get("depth", 4, int), get("ps", 16, int)
weights = {"vtc": get("vtc", 1.0), "vtm": get("vtm", 0.0), "mlm": get("mlm", 0.0), "uta": 0.0}
rev, cappos = bool(get("rev", 1, int)), bool(get("cappos", 0, int))
negcap, neggroups = get("negcap", 0, int), args.get("neggroups", "shape")

# ------------------------------------------------------------------ data
cache = root / "retrieval_probe_cache.pt"
if cache.is_file():
    data = torch.load(cache)
else:
    data = {}
    for split in ("train", "val"):
        items = json.loads((root / f"captions_{split}.json").read_text())
        xs = []
        for it in items:
            with open_video(root / it["video"]) as r:
                xs.append(r.get_frames(list(range(r.info.num_frames))).permute(3, 0, 1, 2))   # (C, T, H, W) uint8
        data[split] = (torch.stack(xs), [it["caption"] for it in items])
    torch.save(data, cache)
Xtr, Ctr = data["train"]
Xva, Cva = data["val"]
keep = [it["i"] for it in distinct_caption_set([{"caption": c, "i": i} for i, c in enumerate(Cva)])]
Xva, Cva = Xva[keep], [Cva[i] for i in keep]
reverse_map = json.loads((root / "meta.json").read_text())["caption_maps"]["reverse"]
T = Xtr.shape[2]
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1) * 255
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1) * 255


size = get("size", Xtr.shape[-1], int)


def norm(x):
    x = (x.float() - mean) / std
    if size != x.shape[-1]:
        B, C, T_, H, W = x.shape
        x = F.interpolate(x.transpose(1, 2).reshape(B * T_, C, H, W), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False).reshape(B, T_, C, size, size).transpose(1, 2)
    return x


# ------------------------------------------------------------------ model
torch.manual_seed(seed)
vocab = train_wordpiece(Ctr, root / "retrieval_probe_vocab.txt", vocab_size=200)
tok = TextTokenizer(vocab, 12)
vision = get_config("videomamba_tiny", embed_dim=D, depth=depth, patch_size=ps, num_frames=T, img_size=size,
                    tubelet_size=get("tub", 1, int), patch_stride=int(args["pstride"]) if "pstride" in args else None,
                    num_classes=0, init=args.get("init", "fan_in"), pos_init_std=get("pos", 0.3), drop_path_rate=0.0,
                    conv_stem=tuple(int(c) for c in args["stem"].split(",")) if args.get("stem") else ())
text = TextConfig(vocab_size=tok.vocab_size, hidden_size=get("tD", 64, int), num_hidden_layers=get("tl", 3, int),
                  fusion_layer=get("fusion", 2, int), num_attention_heads=get("heads", 4, int),
                  intermediate_size=2 * get("tD", 64, int), initializer_range=get("tinit", 0.125),
                  max_position_embeddings=64)
cfg = VideoTextConfig(vision=vision, text=text, embed_dim=get("emb", 64, int), temp=get("temp", 0.07), max_txt_l=12,
                      pool_type=args.get("pool", "cls+avg"), keep_temporal=bool(get("kt", 1, int)))
model = VideoTextModel(cfg, tok)
if not get("learn_temp", 0, int):
    model.temp.requires_grad_(False)
for name, loss_on in (("itm_head", weights["vtm"]), ("mlm_head", weights["mlm"])):
    if not loss_on:
        for p in getattr(model, name).parameters():
            p.requires_grad_(False)
nwd = model.no_weight_decay()
params = [p for n, p in model.named_parameters() if p.requires_grad]
decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in nwd]
no_decay = [p for n, p in model.named_parameters() if p.requires_grad and n in nwd]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
print(f"model: {sum(p.numel() for p in params) / 1e6:.2f}M trainable; train {len(Ctr)} clips, "
      f"held-out {len(Cva)} distinct captions; threads {torch.get_num_threads()}", flush=True)


@torch.no_grad()
def evaluate(shuffle: bool = False) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(1)
    embs = []
    for i in range(0, len(Xva), 64):
        x = norm(Xva[i:i + 64])
        if shuffle:
            x = x[:, :, torch.randperm(T, generator=g)]
        embs.append(model.encode_video(x))
    v = torch.cat(embs)
    t = model.encode_text(Cva)
    sim = t @ v.T                                                    # (texts, videos); text i <-> video i
    order = sim.argsort(1, descending=True)
    rank_t2v = (order == torch.arange(len(Cva))[:, None]).float().argmax(1)
    order_v = sim.T.argsort(1, descending=True)
    rank_v2t = (order_v == torch.arange(len(Cva))[:, None]).float().argmax(1)
    wrong = {"colour": 0, "shape": 0, "motion": 0}
    for q, top in enumerate(order[:, 0].tolist()):
        if top != q:
            a, b = caption_parts(Cva[q]), caption_parts(Cva[top])
            for k in wrong:
                wrong[k] += a[k] != b[k]
    model.train()
    return {"t2v_r1": 100 * float((rank_t2v == 0).float().mean()), "t2v_r5": 100 * float((rank_t2v < 5).float().mean()),
            "v2t_r1": 100 * float((rank_v2t == 0).float().mean()), "v2t_r5": 100 * float((rank_v2t < 5).float().mean()),
            "t2v_top1_wrong_attribute": wrong}


# ------------------------------------------------------------------ train
g = torch.Generator().manual_seed(seed)
swap_rng = random.Random(seed)
swap_groups = []
if "shape" in neggroups:
    swap_groups.append(list(SHAPE_NAMES.values()))
if "colour" in neggroups:
    swap_groups.append([("an " if c[0] in "aeiou" else "a ") + c for c in sorted({n for _, n in _HUES})])
model.train()
t0, step = time.time(), 0
while True:
    done = min(1.0, step / steps if steps else (time.time() - t0) / secs)     # fraction of the run
    cur = lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * done))
    for grp in opt.param_groups:
        grp["lr"] = cur
    idx = torch.randint(len(Ctr), (bs,), generator=g)
    video = norm(Xtr[idx])
    caps = [Ctr[i] for i in idx.tolist()]
    ids_ = idx.clone()
    if rev:
        video = torch.cat([video, video.flip(2)])
        caps = caps + [map_caption(c, reverse_map) for c in caps]
        ids_ = torch.cat([ids_, ids_ + len(Ctr)])
    if cappos:                                                        # as video_text.positives: caption
        ids_ = torch.tensor([caption_id(c) for c in caps])
    ids, mask = model.tokenize(caps)
    neg = None
    if negcap:
        negs = [n for c in caps for n in (swap_word(c, swap_groups, swap_rng) for _ in range(negcap)) if n]
        neg = model.tokenize(negs)
    out = model(video, ids, mask, ids_, weights=weights, negative_text=neg)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    step += 1
    el = time.time() - t0
    if step % 100 == 0:
        print(f"step {step} {el:.0f}s loss {float(out['loss']):.3f} vtc {float(out['loss_vtc']):.3f} "
              f"vtm {float(out['loss_vtm']):.3f} lr {cur:.2e}", flush=True)
    if ev and step % ev == 0:
        print(f"  eval step {step}: {json.dumps(evaluate())}", flush=True)
    if (steps and step >= steps) or (not steps and el >= secs):
        break
res = {"tag": args.get("tag", ""), "args": args, "steps": step, "train_s": round(time.time() - t0, 1),
       "normal": evaluate(), "shuffled": evaluate(shuffle=True)}
print("RESULT " + json.dumps(res), flush=True)
