"""Subprocess entry for engine tests: train on ToyVideos, optionally SIGKILL itself at a step.

    python run_script.py OVERRIDES_JSON [--kill-at STEP [--signal SIG]] [--n N] [--resume] [--save-rank-weights DIR]
Works under torchrun too (each rank can save its final weights for comparison).
"""
import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/: the shared toy dataset

import torch  # noqa: E402

from toy import ToyVideos  # noqa: E402
from videomamba.engine import TrainingInterrupted, train  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("overrides")
    ap.add_argument("--kill-at", type=int, default=0)
    ap.add_argument("--signal", default="SIGKILL", help="signal to send at --kill-at")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--n", type=int, default=24, help="training videos (clip shape: from the overrides)")
    ap.add_argument("--save-rank-weights", default=None)
    a = ap.parse_args()

    def killer(state):  # a callback after optimizer step --kill-at: a deterministic kill point, no timer
        if a.kill_at and state["step"] == a.kill_at:
            os.kill(os.getpid(), getattr(signal, a.signal))   # SIGKILL: no cleanup, no flush, a real crash

    overrides = json.loads(a.overrides)
    shape = {"frames": overrides.get("data.num_frames", 4), "size": overrides.get("data.img_size", 32)}
    try:
        res = train(None, overrides, resume=True if a.resume else None, train_dataset=ToyVideos(a.n, **shape),
                    val_dataset=ToyVideos(8, train=False, **shape), callbacks=[killer])
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
    if a.save_rank_weights:
        rank = int(os.environ.get("RANK", 0))
        torch.save(res.model.state_dict(), Path(a.save_rank_weights) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
