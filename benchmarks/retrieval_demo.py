"""Video-text retrieval demo: does a small model learn to match captions to clips, direction included?

1. ``make_synthetic(captions=True)``: clips of 8 motions (4 forward/backward pairs) with captions
   "a <colour> <shape> <motion>"; a backward clip is exactly its forward partner played in reverse;
2. trains ``configs/demo_retrieval.yaml`` from scratch on CPU through the engine (timed);
3. evaluates text->video and video->text retrieval on held-out clips whose captions are all distinct
   (ITC, and ITC re-ranked with matching scores when the config trains the matching head), then again with every clip's frames shuffled: the
   direction words can then no longer be matched, so R@1 should fall.

Writes ``benchmarks/results/retrieval_demo.json`` (repo-relative paths, the CPU model name).

    python benchmarks/retrieval_demo.py                    # the measured run (data + training + eval)
    python benchmarks/retrieval_demo.py --max-steps 300    # a short probe
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file
from harness.machine import cpu_name  # noqa: E402
from harness.paths import print_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def distinct_caption_set(items: list[dict], limit: int | None = None) -> list[dict]:
    """Held-out clips with pairwise distinct captions: the first clip of each caption, in file order."""
    seen, out = set(), []
    for it in items:
        if it["caption"] not in seen:
            seen.add(it["caption"])
            out.append(it)
    return out[:limit] if limit else out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="videomamba-retrieval-demo", help="work folder (data/, run/)")
    ap.add_argument("--per-class", type=int, default=2000, help="synthetic clips per motion class")
    ap.add_argument("--val-per-class", type=int, default=25, help="held-out clips per motion class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop training early (probes)")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "retrieval_demo.json"))
    ap.add_argument("--no-result", action="store_true", help="print only (probes)")
    ap.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = ap.parse_args(argv)
    t_start = time.time()                       # end to end: imports, data, training, evaluation

    import torch

    from videomamba.data.captions import VideoTextDataset, read_video_text
    from videomamba.data.synthetic import make_synthetic
    from videomamba.engine.config import load_config
    from videomamba.engine.retrieval import evaluate_retrieval
    from videomamba.engine.tasks import shuffle_frames
    from videomamba.engine.trainer import train
    from videomamba.models.video_text import load_video_text

    out = Path(args.out)
    data = out / "data"
    t0 = time.time()
    meta = json.loads((data / "meta.json").read_text()) if (data / "meta.json").is_file() else {}
    if meta.get("per_class") != args.per_class or "caption_groups" not in meta:      # missing, other size, older
        make_synthetic(data, per_class=args.per_class, frames=8, size=64, seed=args.seed,
                       val_fraction=args.val_per_class / args.per_class, captions=True, progress=True, workers=None)
    t_data = time.time() - t0
    val_items = json.loads((data / "captions_val.json").read_text())
    test_items = distinct_caption_set(val_items)
    (data / "captions_test.json").write_text(json.dumps(test_items, indent=1) + "\n")

    overrides = [f"data.train={data / 'captions_train.json'}", f"train.out_dir={out / 'run'}",
                 f"train.seed={args.seed}", "train.final_test=false"]
    if args.max_steps:
        overrides.append(f"train.max_steps={args.max_steps}")
    overrides += args.overrides
    res = train("demo_retrieval", overrides)
    train_s = res.wall_time_s

    model = load_video_text(res.export_dir).eval()
    ds = VideoTextDataset(read_video_text(data / "captions_test.json"), train=False, num_frames=8, img_size=64)
    vt = load_config("demo_retrieval", overrides).video_text
    rerank = vt.vtm > 0                 # re-ranking needs a trained matching head
    g = torch.Generator().manual_seed(1234)
    normal = evaluate_retrieval(model, ds, k_test=vt.k_test, batch_size=32, rerank_scores=rerank)
    shuffled = evaluate_retrieval(model, ds, k_test=vt.k_test, batch_size=32, rerank_scores=rerank,
                                  frame_transform=lambda v: shuffle_frames(v, g))

    def pick(r):
        keys = ("img_r1", "img_r5", "img_r10", "txt_r1", "txt_r5", "txt_r10", "img_medr", "txt_medr")
        splits = (("test_emb/", "itc"), ("test/", "reranked")) if rerank else (("test_emb/", "itc"),)
        return {name: {k: r[split][k] for k in keys} for split, name in splits}

    n, s = pick(normal), pick(shuffled)
    total_s = time.time() - t_start
    result = {
        "task": "text->video and video->text retrieval on held-out synthetic clips with distinct captions",
        "command": "python benchmarks/retrieval_demo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": "src/videomamba/configs/demo_retrieval.yaml", "overrides": args.overrides,
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
        "train_clips": len(json.loads((data / "captions_train.json").read_text())),
        "candidates": len(test_items), "chance_r1": 100.0 / len(test_items),
        "total_time_s": round(total_s, 1), "total_time_min": round(total_s / 60, 2),
        "train_time_s": round(train_s, 1), "train_time_min": round(train_s / 60, 2), "data_time_s": round(t_data, 1),
        "steps": res.step, "k_test": vt.k_test if rerank else None,
        "metrics": n, "shuffled_frames": s,
        "shuffled_over_normal_t2v_r1": {k: (round(s[k]["img_r1"] / n[k]["img_r1"], 3) if n[k]["img_r1"] else None)
                                        for k in n},
        "example_captions": [it["caption"] for it in test_items[:6]],
    }
    print_result(result, args.result, write=not args.no_result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
