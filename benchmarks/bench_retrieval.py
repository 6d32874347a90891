"""Video-text benchmarks on CPU, in one run (so that the ratios compare like with like):

- video embedding throughput (clips/s) of the m16-sized video-text model, 8 frames of 224 px;
- text embedding throughput (captions/s) of its bert-base text tower, 32 tokens;
- retrieval evaluation on 1,000 videos x 1,000 captions with re-ranking of the top k: blockwise
  contrastive similarities + micro-batched matching scores, with the peak memory of the process.
  The features are random (timing does not depend on the weights); the fusion layers are the
  m16 model's (bert-base width, 3 fusion layers) over a video memory of ``--memory-tokens`` tokens.

    python benchmarks/bench_retrieval.py                 # writes benchmarks/results/retrieval_bench.json
    python benchmarks/bench_retrieval.py --quick         # fewer repeats, k=4

Models are randomly initialised (speed and memory do not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file
from harness.machine import cpu_name  # noqa: E402
from harness.paths import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--k", type=int, default=16, help="candidates re-ranked per query (the release: 128)")
    ap.add_argument("--memory-tokens", type=int, default=196,
                    help="video memory tokens per clip in the re-ranking benchmark (m16 at 8x224^2: 1568)")
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "retrieval_bench.json"))
    args = ap.parse_args(argv)

    import torch

    from videomamba.engine.retrieval import blockwise_similarity, rerank, retrieval_metrics
    from videomamba.models.text import TextTokenizer, train_wordpiece
    from videomamba.models.video_text import VideoTextConfig, VideoTextModel

    torch.manual_seed(0)
    reps = 1 if args.quick else 3
    k = 4 if args.quick else args.k
    res = {"cpu": cpu_name(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "command": "python benchmarks/bench_retrieval.py " + " ".join(argv if argv is not None else sys.argv[1:])}

    # m16 video-text model: videomamba_middle (576 x 32) + bert-base (12 layers, fusion at 9), 8 x 224^2
    import tempfile
    vocab = train_wordpiece(["a man is cooking food in a kitchen"] * 4, Path(tempfile.mkdtemp()) / "vocab.txt", 100)
    tok = TextTokenizer(vocab, 32)
    cfg = VideoTextConfig()                                                      # the release's m16 defaults
    model = VideoTextModel(cfg, tok).eval()
    res["model"] = {"vision": "embed 576, depth 32, 8 frames, 224 px (m16)", "text": "bert-base, fusion_layer 9",
                    "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}

    with torch.no_grad():
        B = 2
        x = torch.randn(B, 3, 8, 224, 224)
        model.encode_video(x[:1])                                                # warm-up (kernel load)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model.encode_video(x)
            times.append(time.perf_counter() - t)
        res["video_embedding"] = {"batch": B, "clips_per_s": round(B / min(times), 3), "s_per_clip": round(min(times) / B, 3)}

        caps = [f"a person is doing thing number {i} in a kitchen with some tools" for i in range(64)]
        model.encode_text(caps[:4])
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model.encode_text(caps)
            times.append(time.perf_counter() - t)
        res["text_embedding"] = {"batch": 64, "max_txt_l": 32, "captions_per_s": round(64 / min(times), 1)}

        # retrieval evaluation, 1000 x 1000, random features through the m16 fusion layers
        Nv, Nt, M = args.videos, args.texts, args.memory_tokens
        v_emb = torch.nn.functional.normalize(torch.randn(Nv, cfg.embed_dim), dim=-1)
        t_emb = torch.nn.functional.normalize(torch.randn(Nt, cfg.embed_dim), dim=-1)
        t_emb[: min(Nv, Nt)] += 0.5 * v_emb[: min(Nv, Nt)]                          # some signal to rank
        v_tok = torch.randn(Nv, 1, M, cfg.vision.embed_dim) * 0.5
        t_tok = torch.randn(Nt, 32, cfg.text.hidden_size) * 0.5
        t_mask = torch.ones(Nt, 32, dtype=torch.long)
        rss0 = peak_rss_mb()
        t = time.perf_counter()
        sim = blockwise_similarity(v_emb, t_emb, block=256)
        t_sim = time.perf_counter() - t
        t = time.perf_counter()
        v2t, t2v = rerank(model, sim, v_tok, t_tok, t_mask, k_test=k, micro_batch=args.micro_batch)
        t_rr = time.perf_counter() - t
        gt = list(range(Nt))
        t = time.perf_counter()
        retrieval_metrics(v2t, t2v, [i % Nv for i in gt], [[j for j in gt if j % Nv == i] for i in range(Nv)])
        t_metrics = time.perf_counter() - t
    res["retrieval_eval"] = {
        "videos": Nv, "texts": Nt, "k_test": k, "memory_tokens": M, "micro_batch": args.micro_batch,
        "similarity_s": round(t_sim, 3), "rerank_s": round(t_rr, 1), "metrics_s": round(t_metrics, 2),
        "total_s": round(t_sim + t_rr + t_metrics, 1), "fusion_pairs": (Nv + Nt) * k,
        "ms_per_fusion_pair": round(1000 * t_rr / ((Nv + Nt) * k), 2),
        "features_mb": round((v_tok.numel() + t_tok.numel()) * 4 / 2**20, 1),
        "peak_rss_mb_before": round(rss0, 1), "peak_rss_mb_after": round(peak_rss_mb(), 1)}
    res["ratios"] = {
        "text_captions_per_video_clip": round(res["text_embedding"]["captions_per_s"]
                                              / res["video_embedding"]["clips_per_s"], 1),
        "rerank_over_similarity_time": round(t_rr / max(t_sim, 1e-9), 1)}
    print(json.dumps(res, indent=2))
    print(f"wrote {write_result(args.out, res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
