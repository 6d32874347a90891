"""The patch embedding on CPU: conv3d in fp32, conv3d under bf16 autocast, and the unfolded patches'
matrix product that ``PatchEmbed`` runs under bf16 autocast.

    python benchmarks/bench_patch_embed.py [--dims 192 384 576] [--frames 8 16 32 64] [--rounds 7]
                                           [--out benchmarks/results/patch_embed.json]

One process, 16 x 16 patches of 224 x 224 frames, batch 1, inference mode; per configuration the
median of ``--rounds`` runs after one warm-up, the three ways interleaved round by round. Writes
the JSON (the CPU, the command, each configuration's medians and every round) and prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.runner import describe_machine  # noqa: E402
from harness.suite import save_results  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", nargs="+", type=int, default=[192, 384, 576], help="embedding widths (Ti, S, M)")
    p.add_argument("--frames", nargs="+", type=int, default=[8, 16, 32, 64])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=str(HERE / "results" / "patch_embed.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import torch

    from videomamba.layers.embed import PatchEmbed

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    rows = []
    for D in args.dims:
        m = PatchEmbed(16, 1, 3, D).eval()
        for T in args.frames:
            x = torch.randn(1, 3, T, 224, 224)
            ways = {"conv3d fp32": (m.proj, False), "conv3d bf16 autocast": (m.proj, True),
                    "PatchEmbed bf16 autocast (matmul)": (m, True)}

            def run(fn, bf16):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    fn(x)

            times = {k: [] for k in ways}
            for fn, bf16 in ways.values():
                run(fn, bf16)
            for _ in range(args.rounds):
                for k, (fn, bf16) in ways.items():
                    s = time.perf_counter()
                    run(fn, bf16)
                    times[k].append(time.perf_counter() - s)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"dim": D, "frames": T, "median_s": med, "rounds_s": times,
                         "matmul_speedup_vs_bf16_conv": med["conv3d bf16 autocast"]
                         / med["PatchEmbed bf16 autocast (matmul)"]})
            print(f"D {D:4d} T {T:3d}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in med.items())
                  + f"; matmul path {rows[-1]['matmul_speedup_vs_bf16_conv']:.2f}x the bf16 conv's speed",
                  flush=True)
    data = {"script": "benchmarks/bench_patch_embed.py",
            "command": "python benchmarks/bench_patch_embed.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": time.time() - t0,
            "machine": describe_machine(), "torch_threads": torch.get_num_threads(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_results(out, data)
    print(f"results: {out}")
    return data


if __name__ == "__main__":
    main()
