#!/usr/bin/env python
"""Training-step time of a small VideoMamba under glibc's mmap threshold settings.

    python benchmarks/bench_malloc.py            # default, 1 MiB (what videomamba sets), 64 KiB

Each setting runs in its own process (the threshold is process-wide and fixed at start through
``MALLOC_MMAP_THRESHOLD_``); the model is the demo's (D=64, depth 4, 8 frames of 64 px, batch 8),
one thread, median of 40 steps. Prints one JSON line per setting.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, statistics, time, torch, videomamba
torch.set_num_threads(1)
m = videomamba.create_model("videomamba_tiny", embed_dim=64, depth=4, num_classes=8, num_frames=8,
                            img_size=64, patch_size=16)
opt = torch.optim.AdamW(m.parameters())
x = torch.randn(8, 3, 8, 64, 64)
times = []
for _ in range(45):
    t = time.perf_counter()
    m(x).logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
print(json.dumps({"median_step_s": statistics.median(times[5:])}))
"""


def main() -> None:
    for label, value in (("glibc default", None), ("1 MiB", "1048576"), ("64 KiB", "65536")):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
        env["VIDEOMAMBA_NO_MALLOC_TUNE"] = "1"
        if value:
            env["MALLOC_MMAP_THRESHOLD_"] = value
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
        print(json.dumps({"mmap_threshold": label, **json.loads(out.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    main()
