"""benchmarks/breakdown.py and the harness child's time split: every part accounted, floors by hand."""
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import breakdown  # noqa: E402
from _requirements import require_cpu_kernel  # noqa: E402
from harness.child import time_split  # noqa: E402
from harness.runner import run_spec  # noqa: E402
from harness.suite import _m  # noqa: E402


def test_time_split_puts_each_kind_of_work_in_its_part():
    a = torch.randn(192, 192)


    def step():
        torch.mm(a, a)
        torch.sigmoid(a)
        time.sleep(0.03)                 # neither an operator nor a kernel: the rest

    r = time_split(step, 3)
    p = r["parts_s"]
    assert r["passes"] == 3 and set(p) == {"scan_kernel", "conv_kernel", "norm_kernel", "matmul", "other_ops", "rest"}
    assert p["matmul"] > 0 and p["other_ops"] > 0
    assert p["scan_kernel"] == p["conv_kernel"] == p["norm_kernel"] == 0.0
    assert 0.03 <= p["rest"] <= r["wall_s"]
    assert {o["op"] for o in r["top_ops"]} >= {"aten::mm", "aten::sigmoid"}


def test_time_split_counts_a_patch_embedding_under_autocast_as_a_matrix_product():
    conv = torch.nn.Conv3d(3, 8, (1, 4, 4), stride=(1, 4, 4))
    clip = torch.randn(1, 3, 2, 32, 32)

    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            conv(clip)

    r = time_split(step, 2)
    assert r["parts_s"]["matmul"] > 0
    assert any(o["op"] == "aten::conv3d" for o in r["top_ops"])


def test_split_of_a_toy_model_times_the_compiled_kernels():
    require_cpu_kernel()
    spec = {**_m("toy_videomamba", 2, img=32), "repeats": 1, "warmup": 1, "split": 2}
    rec = run_spec(spec, timeout_s=300)
    assert rec["status"] == "ok", rec.get("error")
    split = rec["split"]
    assert split["kernels_loaded"] and split["parts_s"]["scan_kernel"] > 0 and split["parts_s"]["conv_kernel"] > 0
    assert split["parts_s"]["matmul"] > 0


def test_split_times_kernel_calls_in_process_and_restores_the_entry_points():
    cpu_kernel = require_cpu_kernel()
    mod = cpu_kernel.load()
    orig = mod.conv_fwd
    x, w = torch.randn(1, 64, 4096), torch.randn(64, 4)

    def step():
        cpu_kernel.causal_conv1d_cpu(x, w, activation="silu")

    r = time_split(step, 2)
    assert r["parts_s"]["conv_kernel"] > 0 and r["parts_s"]["scan_kernel"] == 0.0
    assert any(o["op"] == "kernel conv_fwd" for o in r["top_ops"])
    assert mod.conv_fwd is orig


def test_row_sets_parts_against_the_floors_computed_by_hand():
    spec = {**_m("videomamba_tiny", 8, dtype="fp32"), "repeats": 1, "split": 1}
    micro = {"matmul_fp32_flops": 200e9, "matmul_bf16_flops": 800e9}
    rec = {"status": "ok", "median_s": 0.3,
           "split": {"wall_s": 0.4, "parts_s": {"scan_kernel": 0.1, "matmul": 0.12, "conv_kernel": 0.01,
                                                "norm_kernel": 0.0, "other_ops": 0.05, "rest": 0.12}}}
    row = breakdown.row_for(spec, rec, micro)
    # VideoMamba-Ti at 8 frames: 8 * 196 + 1 tokens, 384 channels, state 16, 24 layers, 2 directions
    elems = (8 * 196 + 1) * 384 * 16 * 24 * 2
    scan_floor = 4 * elems / 100e9                     # 4 operations at the fp32 multiply-add rate
    assert row["part_over_floor"]["scan_kernel"] == pytest.approx(0.1 / scan_floor, rel=1e-3)
    assert row["part_over_floor"]["matmul"] == pytest.approx(0.12 / row["roofline"]["linear_s"])
    assert row["over_roofline"] == pytest.approx(0.3 / row["roofline"]["roofline_s"])
    md = breakdown.page({"command": "python benchmarks/breakdown.py", "machine": {"cpu": "x"}, "date": "d",
                         "wall_s": 60, "micro": micro, "passes": 1, "rows": [row]})
    assert "| videomamba_tiny | 8 | 1 | fp32 | 0.300 |" in md and f"({0.1 / scan_floor:.1f}×)" in md
