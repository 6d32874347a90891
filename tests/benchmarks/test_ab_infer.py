"""benchmarks/ab_infer.py: how two revisions' interleaved measurements become its rows."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import ab_infer  # noqa: E402
from harness import workloads  # noqa: E402
from harness.suite import _m  # noqa: E402

# ceilings of a made-up machine: 200 GFLOP/s fp32 and 800 bf16 matmuls, 50 GB/s copies
MICRO = {"status": "ok", "matmul_fp32_flops": 200e9, "matmul_bf16_flops": 800e9,
         "copy_bytes_per_s_by_size": {str(2 ** 20): 50e9}}


def _rec(t, status="ok"):
    return {"status": status, "median_s": t if status == "ok" else None, "cpu_share": 0.95,
            "peak_rss_mb": 400.0, "error": None if status == "ok" else "passed the time budget"}


def test_rows_take_the_median_over_rounds_and_the_ratio_of_medians():
    spec = _m("videomamba_tiny", 8)
    sid = workloads.spec_id(spec)
    runs = {sid: {"base": [_rec(3.0), _rec(1.0), _rec(2.0)],
                  "new": [_rec(0.5), _rec(0.7, "timeout"), _rec(1.5)]}}
    (row,) = ab_infer.summarize([spec], runs, MICRO)
    assert row["id"] == sid
    assert row["base"]["median_s"] == 2.0 and row["base"]["per_round_s"] == [3.0, 1.0, 2.0]
    # the round that timed out is left out of the median and kept as an error
    assert row["new"]["median_s"] == pytest.approx(1.0) and row["new"]["errors"] == ["passed the time budget"]
    assert row["speedup"] == pytest.approx(2.0)
    # Ti at 8 frames, 224 px: tens of GFLOPs at 200 GFLOP/s, so a roofline of a few tenths of a second
    assert 0.05 < row["roofline_s"] < 0.5
    assert row["new"]["over_roofline"] == pytest.approx(1.0 / row["roofline_s"])
    assert row["base"]["over_roofline"] == pytest.approx(2.0 / row["roofline_s"])


def test_bf16_rows_use_the_bf16_matmul_rate_and_a_failed_side_has_no_ratio():
    fp32, bf16 = _m("videomamba_tiny", 8), _m("videomamba_tiny", 8, dtype="bf16")
    runs = {workloads.spec_id(s): {"base": [_rec(1.0)], "new": [_rec(1.0, "oom")]} for s in (fp32, bf16)}
    r32, r16 = ab_infer.summarize([fp32, bf16], runs, MICRO)
    assert r16["roofline_s"] < r32["roofline_s"]
    assert r16["new"]["median_s"] is None and r16["speedup"] is None and r16["new"]["over_roofline"] is None


def test_variants_parse_into_spec_fields_and_ids():
    assert ab_infer.parse_variant("default") == {"grad_ckpt": False, "overrides": None}
    v = ab_infer.parse_variant("ckpt,mixer_recompute=never")
    assert v == {"grad_ckpt": True, "overrides": {"mixer_recompute": "never"}}
    assert ab_infer.parse_variant("depth=4")["overrides"] == {"depth": 4}        # numbers as numbers
    spec = _m("videomamba_tiny", 64, mode="train", **v)
    assert workloads.spec_id(spec) == "train/videomamba_tiny+ckpt+mixer_recompute=never/T64/B1/fp32/cpu"
    with pytest.raises(ValueError, match="a variant is 'default', 'ckpt' or FIELD=VALUE"):
        ab_infer.parse_variant("never")


def test_training_rows_have_no_roofline_and_a_median_peak():
    spec = _m("videomamba_tiny", 64, mode="train")
    runs = {workloads.spec_id(spec): {"base": [_rec(7.0), _rec(6.0)], "new": [_rec(5.0), _rec(6.0)]}}
    runs[workloads.spec_id(spec)]["new"][0]["peak_rss_mb"] = 300.0
    (row,) = ab_infer.summarize([spec], runs, MICRO)
    assert row["roofline_s"] is None and row["new"]["over_roofline"] is None
    assert row["speedup"] == pytest.approx(6.5 / 5.5)
    assert row["new"]["median_peak_rss_mb"] == pytest.approx(350.0) and row["base"]["median_peak_rss_mb"] == 400.0


def test_each_side_has_its_own_tree_and_kernel_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDEOMAMBA_EXT_DIR", "/somewhere/shared")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    base, new = ab_infer.side_env(tmp_path / "base" / "src"), ab_infer.side_env(tmp_path / "new" / "src")
    assert base["PYTHONPATH"] == str(tmp_path / "base" / "src")
    assert base["VIDEOMAMBA_EXT_DIR"] == str(tmp_path / "base" / ".ext")
    assert new["VIDEOMAMBA_EXT_DIR"] == str(tmp_path / "new" / ".ext")
