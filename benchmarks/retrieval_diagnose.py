#!/usr/bin/env python
"""What the retrieval demo's model gets wrong, and whether its video tower can see it.

Run after ``python benchmarks/retrieval_demo.py`` (its data and model). On the held-out clips whose
captions are all distinct (the demo's test set):

1. **Wrong attributes**: text->video R@1 (contrastive), and for each wrong top-1 hit which of the
   caption's colour, shape and motion the retrieved clip does not share.
2. **Attribute-blind ceilings**: the R@1 of a model that matches two attributes perfectly and cannot
   see the third, guessing among the clips that agree on the two (the mean of 1 / that count). A
   model whose R@1 sits near the shape-blind ceiling has learned little shape.
3. **Linear probes**: for each attribute, a logistic regression on the pooled video features
   (before the projection; frames averaged) fitted on training clips, scored on the held-out clips.
4. ``--supervised-secs N`` (optional): the demo's vision tower trained from scratch for N seconds on
   the attribute labels directly (cross-entropy, same optimiser settings and batch as the demo),
   scored on the held-out clips: how fast the architecture learns the attribute at all. A tower with a
   convolutional stem is trained again without it (the release's linear patch embedding), for as long.

Writes ``benchmarks/results/retrieval_diagnose.json`` (repo-relative paths, the CPU model name).

    python benchmarks/retrieval_diagnose.py [--demo videomamba-retrieval-demo] [--supervised-secs 240]
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file
from harness.machine import cpu_name  # noqa: E402
from harness.paths import print_result  # noqa: E402
from retrieval_demo import distinct_caption_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("colour", "shape", "motion")


def blind_ceilings(parts: list[dict]) -> dict:
    """Per attribute: mean over queries of 1 / #(clips agreeing with the query on the other two)."""
    out = {}
    for blind in ATTRIBUTES:
        keep = [a for a in ATTRIBUTES if a != blind]
        key = lambda p: tuple(p[a] for a in keep)  # noqa: E731
        counts = collections.Counter(key(p) for p in parts)
        out[f"{blind}_blind_r1"] = round(100 * sum(1 / counts[key(p)] for p in parts) / len(parts), 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="videomamba-retrieval-demo", help="the retrieval demo's work folder")
    ap.add_argument("--probe-clips", type=int, default=3000, help="training clips the linear probes fit on")
    ap.add_argument("--supervised-secs", type=float, default=0.0, help="also train the vision tower on labels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "retrieval_diagnose.json"))
    ap.add_argument("--no-result", action="store_true", help="print only")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from videomamba.data.captions import VideoCaptions, VideoTextDataset
    from videomamba.data.synthetic import caption_parts
    from videomamba.engine.config import load_config
    from videomamba.models.video_text import load_video_text
    from videomamba.models.videomamba import VideoMamba

    demo = Path(args.demo)
    data, model_dir = demo / "data", demo / "run" / "model"
    for p in (data / "captions_train.json", data / "captions_val.json", model_dir):
        if not p.exists():
            raise SystemExit(f"{p} does not exist: run python benchmarks/retrieval_demo.py first")
    model = load_video_text(model_dir).eval()
    cfg = load_config("demo_retrieval")
    T, S = cfg.data.num_frames, cfg.data.img_size

    def clips(items, dtype=torch.float32):
        ds = VideoTextDataset([VideoCaptions(data / it["video"], [it["caption"]]) for it in items], train=False,
                              num_frames=T, img_size=S)
        return torch.stack([ds[i]["video"].reshape(3, T, S, S).to(dtype) for i in range(len(ds))])

    def labels(items, attr, names):
        return torch.tensor([names.index(caption_parts(it["caption"])[attr]) for it in items])

    val = json.loads((data / "captions_val.json").read_text())
    test = distinct_caption_set(val)
    train = json.loads((data / "captions_train.json").read_text())
    random.Random(args.seed).shuffle(train)
    train = train[: args.probe_clips]
    t0 = time.time()
    x_test, x_val, x_train = clips(test), clips(val), clips(train)

    # 1. retrieval and the attributes of the wrong top-1 hits
    with torch.no_grad():
        v = torch.cat([model.encode_video(x_test[i:i + 64]) for i in range(0, len(x_test), 64)])
        caps = [it["caption"] for it in test]
        t = model.encode_text(caps)
    top = (t @ v.T).argmax(1)
    parts = [caption_parts(c) for c in caps]
    wrong = collections.Counter()
    for q, k in enumerate(top.tolist()):
        if k != q:
            wrong.update(a for a in ATTRIBUTES if parts[q][a] != parts[k][a])

    # 3. linear probes on the pooled video features
    def pooled(x):
        with torch.no_grad():
            out = [model.encode_vision(x[i:i + 64])[1] for i in range(0, len(x), 64)]
        f = torch.cat(out)
        return f.mean(1) if f.dim() == 3 else f

    f_train, f_val = pooled(x_train), pooled(x_val)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_val = (f_train - mu) / sd, (f_val - mu) / sd
    probes, names_of = {}, {}
    for attr in ATTRIBUTES:
        names = sorted({caption_parts(it["caption"])[attr] for it in train + val})
        names_of[attr] = names
        y_tr, y_va = labels(train, attr, names), labels(val, attr, names)
        W = torch.zeros(f_train.shape[1], len(names), requires_grad=True)
        b = torch.zeros(len(names), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=300)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(f_train @ W + b, y_tr) + 1e-3 * W.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float(((f_val @ W + b).argmax(1) == y_va).float().mean())
        probes[attr] = {"classes": len(names), "val_acc": round(100 * acc, 1), "chance": round(100 / len(names), 1)}

    # 4. the vision tower trained on one attribute's labels directly
    supervised = None
    if args.supervised_secs > 0:
        attr = "shape"
        names = names_of[attr]
        all_train = json.loads((data / "captions_train.json").read_text())
        xs, ys = clips(all_train, torch.float16), labels(all_train, attr, names)     # half: 3 GB, not 6
        y_va = labels(val, attr, names)
        bs = 2 * cfg.data.batch_size              # the demo's clips per step (with the reversed ones)
        vcfg = model.cfg.vision.replace(num_classes=len(names))
        towers = {"demo": vcfg}
        if vcfg.conv_stem:                        # and the same tower with the release's linear patches
            towers["linear_patch_embedding"] = vcfg.replace(conv_stem=())
        supervised = {"attribute": attr, "seconds": args.supervised_secs, "batch": bs,
                      "chance": round(100 / len(names), 1), "threads": torch.get_num_threads()}
        for name, tower_cfg in towers.items():
            torch.manual_seed(args.seed)
            net = VideoMamba(tower_cfg)
            opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
            g = torch.Generator().manual_seed(args.seed)
            start, steps = time.time(), 0
            while time.time() - start < args.supervised_secs:
                idx = torch.randint(len(xs), (bs,), generator=g)
                loss = F.cross_entropy(net(xs[idx].float()), ys[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.clip_grad)
                opt.step()
                steps += 1
            net.eval()
            with torch.no_grad():
                pred = torch.cat([net(x_val[i:i + 64]).argmax(1) for i in range(0, len(x_val), 64)])
            supervised[name] = {"conv_stem": list(tower_cfg.conv_stem), "steps": steps,
                                "val_acc": round(100 * float((pred == y_va).float().mean()), 1)}

    result = {
        "task": "what the retrieval demo's model gets wrong (held-out clips with distinct captions)",
        "command": "python benchmarks/retrieval_diagnose.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "the retrieval demo's model (benchmarks/retrieval_demo.py)", "cpu": cpu_name(),
        "candidates": len(test), "t2v_r1": round(100 * float((top == torch.arange(len(test))).float().mean()), 2),
        "wrong_top1": len(test) - int((top == torch.arange(len(test))).sum()),
        "wrong_top1_attributes": {a: wrong[a] for a in ATTRIBUTES},
        "attribute_blind_r1": blind_ceilings(parts),
        "linear_probe_clips": {"train": len(train), "val": len(val)},
        "linear_probes": probes, "supervised_vision_tower": supervised,
        "time_s": round(time.time() - t0, 1),
    }
    print_result(result, args.result, write=not args.no_result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
