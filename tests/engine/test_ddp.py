"""torchrun with 2 CPU processes (gloo): sharded data, synced gradients, identical replicas."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from .test_resume import SCRIPT, _overrides


def test_ddp_two_processes_identical_weights(tmp_path):
    out = tmp_path / "run"
    ov = _overrides(out, **{"train.ema": False, "optim.epochs": 1, "train.checkpoint_every": 2,
                             "train.threads": 1, "model.drop_path_rate": 0.1})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), json.dumps(ov), "--save-rank-weights", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replica_max_abs_diff"] == 0.0
    # 24 videos over 2 ranks, batch 2 x accum 2 -> 3 optimizer steps per epoch
    assert summary["step"] == 3
    # only rank 0 wrote: one set of checkpoints, one log; the lr rule saw the total batch (2 x 2 ranks x 2)
    assert sorted(x.name for x in (out / "checkpoints").iterdir()) == ["best.pt", "step_00000002.pt", "step_00000003.pt"]
    st = torch.load(out / "checkpoints" / "step_00000003.pt", weights_only=True)
    assert len(st["rng"]) == 2 and not torch.equal(st["rng"][0]["torch"], st["rng"][1]["torch"])
    # the last step changed the weights (training really ran on both ranks)
    before = torch.load(out / "checkpoints" / "step_00000002.pt", weights_only=True)["model"]
    assert any(not torch.equal(before[k], w0[k]) for k in w0)
