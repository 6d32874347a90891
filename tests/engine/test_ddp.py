"""torchrun with 2 CPU processes (gloo): sharded data, synced gradients, identical replicas."""
import json

import pytest
import torch
from _torchrun import run_torchrun

from .test_resume import SCRIPT, _overrides


@pytest.mark.parametrize("recompute", ["auto", "always"])
def test_ddp_two_processes_identical_weights(tmp_path, recompute):
    """``always``: every block takes the memory-light backward, whose parameter gradients arrive from
    a backward run inside the block's own (DDP must still see and sync every one of them)."""
    out = tmp_path / "run"
    ov = _overrides(out, **{"train.ema": False, "optim.epochs": 1, "train.checkpoint_every": 2,
                             "train.threads": 1, "model.drop_path_rate": 0.1, "model.mixer_recompute": recompute})
    p = run_torchrun([str(SCRIPT), json.dumps(ov), "--save-rank-weights", str(tmp_path)])
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


def test_collective_timeout_from_the_environment(monkeypatch):
    from datetime import timedelta

    from videomamba.engine.distributed import TIMEOUT_ENV, collective_timeout

    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert collective_timeout() is None                       # torch's default
    monkeypatch.setenv(TIMEOUT_ENV, "90")
    assert collective_timeout() == timedelta(seconds=90)
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"{TIMEOUT_ENV}='{bad}': expected a positive number of seconds"):
            collective_timeout()
