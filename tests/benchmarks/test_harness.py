"""The benchmark harness (benchmarks/harness): exponent fit, grids, limits, JSON schema, targets, report.

Tiny and fast: subprocesses run toy models at 32 px, or are killed before they import torch.
"""
import json
import math

import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from harness import analysis, report, suite, workloads  # noqa: E402
from harness.analysis import fit_exponent  # noqa: E402
from harness.cli import main as bench_main  # noqa: E402
from harness.runner import run_spec  # noqa: E402

TOY = {"kind": "model", "model": "toy_videomamba", "attn": None, "frames": 2, "img": 32, "batch": 1,
       "dtype": "fp32", "mode": "infer", "grad_ckpt": False, "device": "cpu"}


# ------------------------------------------------------------------------- exponent fit
def test_fit_exponent_exact_power_law():
    xs = [8, 16, 32, 64, 128]
    f = fit_exponent(xs, [0.03 * x ** 1.5 for x in xs])
    assert f["k"] == pytest.approx(1.5) and f["prefactor"] == pytest.approx(0.03) and f["r2"] == pytest.approx(1.0)


def test_fit_exponent_hand_made_series():
    # linear cost plus a constant overhead: the fitted exponent sits just below 1
    xs = [8, 16, 32, 64]
    ys = [0.1 + 0.05 * x for x in xs]                    # 0.5, 0.9, 1.7, 3.3
    k = fit_exponent(xs, ys)["k"]
    by_hand = _slope([math.log(x) for x in xs], [math.log(y) for y in ys])
    assert k == pytest.approx(by_hand) and 0.85 < k < 1.0
    # quadratic attention on top of linear layers: between 1 and 2
    assert 1.2 < fit_exponent(xs, [x + 0.05 * x * x for x in xs])["k"] < 2.0


def _slope(X, Y):
    mx, my = sum(X) / len(X), sum(Y) / len(Y)
    return sum((a - mx) * (b - my) for a, b in zip(X, Y)) / sum((a - mx) ** 2 for a in X)


def test_fit_exponent_needs_two_distinct_points():
    assert fit_exponent([8], [1.0])["k"] is None
    assert fit_exponent([8, 8], [1.0, 2.0])["k"] is None
    assert fit_exponent([8, 16, 32], [1.0, None, 4.0])["k"] == pytest.approx(1.0)   # missing points dropped


# ------------------------------------------------------------------------- grids
def test_full_grid_covers_issue_6():
    ids = {workloads.spec_id(s) for s in suite.full_grid()}
    for need in ("infer/videomamba_tiny/T64/B1/fp32/cpu", "infer/videomamba_small/T128/B8/bf16/cpu",
                 "infer/vit_ti_joint/sdpa/T64/B1/fp32/cpu", "infer/vit_ti_joint/eager/T64/B1/fp32/cpu",
                 "infer/videomae_s/sdpa/T64/B1/fp32/cpu", "infer/timesformer_b/eager/T64/B1/fp32/cpu",
                 "train/videomamba_tiny/T64/B1/fp32/cpu", "train/videomamba_tiny+ckpt/T64/B1/fp32/cpu",
                 "train/vit_ti_joint/sdpa/T64/B1/fp32/cpu", "train/vit_ti_joint/eager/T16/B1/fp32/cpu"):
        assert need in ids, need
    assert len(ids) == len(suite.full_grid())                        # ids are unique keys
    assert all(s["device"] == "cuda" for s in suite.full_grid("cuda"))


def test_series_run_with_frames_ascending():
    grid = suite._sorted_series(list(reversed(suite.quick_grid())))
    last: dict = {}
    for s in grid:
        key = analysis.series_key(s)
        assert s["frames"] > last.get(key, 0)
        last[key] = s["frames"]


def test_videomamba_gflops_reuse_flops_module():
    from videomamba.models.flops import count_flops

    spec = dict(TOY, model="videomamba_tiny", frames=8, img=224, batch=2)
    g = workloads.gflops(spec)
    c = count_flops(workloads.videomamba_config(spec))
    assert g["gmacs_full"] == pytest.approx(2 * c.full / 1e9)
    assert g["gmacs_linear"] + g["gmacs_scan"] == pytest.approx(g["gmacs_full"])
    assert g["tokens"] == 1569


def test_peer_gflops_on_meta_device():
    pytest.importorskip("transformers")
    g8 = workloads.gflops(dict(TOY, model="vit_ti_joint", attn="sdpa", frames=8, img=224))
    g16 = workloads.gflops(dict(TOY, model="vit_ti_joint", attn="sdpa", frames=16, img=224))
    assert g8["tokens"] == 1568 and 15 < g8["gmacs_full"] < 30
    assert g16["gmacs_attention"] == pytest.approx(4 * g8["gmacs_attention"], rel=1e-6)   # quadratic part


# ------------------------------------------------------------------------- limits
def test_timeout_is_recorded_not_hung():
    r = run_spec(TOY, timeout_s=0.3)
    assert r["status"] == "timeout" and r["wall_s"] < 10 and "time budget" in r["error"]


def test_memory_budget_is_recorded_as_oom():
    r = run_spec(TOY, timeout_s=60, mem_limit_mb=30)        # importing torch alone passes 30 MB
    assert r["status"] == "oom" and "memory budget" in r["error"]


# ------------------------------------------------------------------------- end to end
RECORD_KEYS = {"status", "spec", "id", "warmup_s", "times_s", "n", "median_s", "min_s", "peak_rss_mb",
               "ru_maxrss_mb", "baseline_rss_mb", "import_rss_mb", "threads", "scan_backend", "wall_s",
               "load_before", "gflops"}


def test_cli_runs_a_toy_config_and_writes_json_page_and_plots(tmp_path):
    out = tmp_path / "res"
    rc = bench_main(["--toy", "--out", str(out), "--no-micro", "--repeats", "1", "--timeout", "600",
               "--only", "infer/toy_videomamba/T2/*"])
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == suite.SCHEMA and data["machine"]["cores"] >= 1 and data["machine"]["torch"]
    (r,) = data["records"]
    assert r["status"] == "ok", r
    assert RECORD_KEYS <= set(r)
    assert r["id"] == "infer/toy_videomamba/T2/B1/fp32/cpu/img32"
    assert r["n"] >= 1 and min(r["times_s"]) <= r["median_s"] <= max(r["times_s"])
    assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
    page = (out / "RESULTS.md").read_text()
    assert "## Machine" in page and "toy VideoMamba" in page and "## Targets" in page
    pytest.importorskip("matplotlib")
    assert (out / "infer_B1_fp32_cpu.png").stat().st_size > 1000


# ------------------------------------------------------------------------- targets and report
def _fake(model, frames, t, mem, mode="infer", attn=None, status="ok", ckpt=False, base=300.0, batch=1):
    spec = {"kind": "model", "model": model, "attn": attn, "frames": frames, "img": 224, "batch": batch,
            "dtype": "fp32", "mode": mode, "grad_ckpt": ckpt, "device": "cpu"}
    r = {"spec": spec, "id": workloads.spec_id(spec), "status": status, "warmup_s": [t], "times_s": [t]}
    if status == "ok":
        r.update(median_s=t, min_s=t, n=1, peak_rss_mb=mem, baseline_rss_mb=base)
        r["gflops"] = workloads.gflops(spec) if model.startswith("videomamba") else {"gmacs_full": 1.0}
    return r


def _fake_run():
    recs = []
    for T in (8, 16, 32, 64):
        recs.append(_fake("videomamba_tiny", T, 0.25 * T / 8, 350 + 2 * T))
        recs.append(_fake("vit_ti_joint", T, 0.1 * (T / 8) ** 1.7, 400 + 3 * T, attn="sdpa"))
        recs.append(_fake("vit_ti_joint", T, 0.2 * (T / 8) ** 2, 500 + T * T, attn="eager",
                          status="ok" if T < 64 else "oom"))
    recs += [_fake("videomamba_tiny", 64, 9.0, 900, mode="train"),
             _fake("videomamba_tiny", 64, 12.0, 500, mode="train", ckpt=True),
             _fake("vit_ti_joint", 64, 45.0, 2600, mode="train", attn="sdpa"),
             _fake("vit_ti_joint", 64, 0, 0, mode="train", attn="eager", status="oom"),
             _fake("videomamba_tiny", 64, 20.0, 1000, batch=8, base=800.0),
             _fake("vit_ti_joint", 64, 80.0, 6000, attn="eager", batch=8)]
    micro = {"status": "ok", "matmul_fp32_flops": 150e9, "matmul_bf16_flops": 300e9, "exp_fp32_per_s": 2.8e9}
    return recs, micro


def test_targets_from_a_hand_made_run():
    recs, micro = _fake_run()
    tg = {t["target"]: t for t in analysis.targets(recs, micro)}
    sp = tg["infer 64f: VideoMamba-Ti speed-up over sdpa ViT-Ti"]
    assert sp["value"] == pytest.approx(0.1 * 8 ** 1.7 / 2.0) and sp["met"] is False    # 1.71x < 2x
    assert tg["infer 64f: peak memory below sdpa ViT-Ti"]["met"] is True
    b1 = tg["infer 64f: >= 10x less peak memory than eager ViT-Ti (or it OOMs)"]
    # it OOMed: one layer's raw and scaled scores, 2 x 3 heads x (64 x 14^2)^2 x 4 bytes = 3601.5 MB, over
    # ours (350 + 2 x 64 MB) is the lower bound the page reports
    assert b1["met"] is True and b1["value"] == pytest.approx(2 * 3 * 12544 ** 2 * 4 / 2 ** 20 / 478)
    assert "3602 MB" in b1["detail"]
    b8 = tg["infer 64f batch 8: >= 10x less peak memory than eager ViT-Ti (or it OOMs)"]
    assert b8["value"] == pytest.approx(6.0) and b8["met"] is False
    # our process held 800 MB before the forward pass: 6000 / 800 is the most any forward pass could give
    assert "with no activation memory at all the ratio would be 7.5x" in b8["detail"]
    k = tg["infer: time-vs-frames exponent of videomamba_tiny"]
    assert k["value"] == pytest.approx(1.0) and k["met"] is True
    assert tg["train 64f: peak memory <= sdpa ViT-Ti"]["met"] is True
    assert tg["train 64f (+grad ckpt): >= 5x less peak memory than eager ViT-Ti"]["met"] is True
    i2 = tg["infer 8f >= 15x faster than the original CPU path (6.66 s)"]
    assert i2["value"] == pytest.approx(6.66 / 0.25) and i2["met"] is True
    assert "infer 8f within 2x of the roofline" in tg


def test_eager_attention_floor_counts_the_attention_matrices():
    spec = {"model": "vit_ti_joint", "attn": "eager", "frames": 64, "img": 224, "batch": 8, "mode": "infer"}
    one = 3 * (64 * 14 * 14) ** 2 * 4 * 8 / 2 ** 20            # heads x tokens^2 x fp32 x batch, in MB
    assert analysis.eager_attention_floor_mb(spec) == pytest.approx(2 * one)      # raw and scaled scores
    assert analysis.eager_attention_floor_mb({**spec, "mode": "train"}) == pytest.approx(12 * one)  # per layer
    assert analysis.eager_attention_floor_mb({**spec, "attn": "sdpa"}) is None
    # VideoMAE-S: tubelet 2 halves the tokens, 6 heads
    s = {**spec, "model": "videomae_s", "batch": 1}
    assert analysis.eager_attention_floor_mb(s) == pytest.approx(2 * 6 * (32 * 14 * 14) ** 2 * 4 / 2 ** 20)


def test_page_header_names_the_first_run_and_the_last_resume():
    m = {"date": "2026-12-02 18:49:20 UTC", "git": "aaa"}
    start = {"when": "start", "date": "2026-12-02 18:49:21", "git": "aaa"}
    assert report._measured_when(m, [start]) == "2026-12-02 18:49:20 UTC, code at `aaa`"
    later = [start, {"when": "end"}, {"when": "start", "date": "2026-12-03 07:20:19", "git": "bbb"}]
    assert report._measured_when(m, later) == ("2026-12-02 18:49:20 UTC, code at `aaa`; "
                                               "last resumed 2026-12-03 07:20:19, code at `bbb`")


def test_roofline_uses_the_flops_breakdown():
    recs, micro = _fake_run()
    r8 = analysis.find(recs, model="videomamba_tiny", frames=8, mode="infer")
    g = r8["gflops"]
    expect = 2 * g["gmacs_linear"] * 1e9 / 150e9 + g["gmacs_scan"] * 1e9 / 9 / 2.8e9
    assert analysis.roofline_s(r8, micro) == pytest.approx(expect)
    # the roofline's figure: VideoMamba-Ti 8x224^2 has L*E*N*48 exps
    assert g["gmacs_scan"] * 1e9 / 9 == pytest.approx(1569 * 384 * 16 * 48)


def test_report_page_from_json_alone(tmp_path):
    recs, micro = _fake_run()
    data = {"schema": suite.SCHEMA, "mode": "test", "records": recs, "micro": {"cpu": micro},
            "machine": {"date": "today", "hostname": "h", "git": "abc", "cpu": "cpu", "cores": 2, "torch": "x",
                        "torch_threads": 2, "python": "3", "load_avg": [0, 0, 0]},
            "settings": {"timeout_s": 1, "repeats": 1, "warmup": 1, "mem_limit_mb": 1}, "load_history": []}
    page = report.write_page(data, tmp_path / "RESULTS.md", tmp_path)
    text = page.read_text()
    assert "| ViT-Ti joint attn (eager) |" in text and "OOM" in text
    assert "## Scaling with frames" in text and "## Roofline" in text
    assert "0.250 s / 366 MB" in text                       # VideoMamba-Ti at 8 frames


def test_overrides_are_part_of_the_id_and_the_lookup():
    a = suite._m("videomamba_tiny", 16, mode="train")
    b = suite._m("videomamba_tiny", 16, mode="train", overrides={"mixer_recompute": "never"})
    assert workloads.spec_id(b) == "train/videomamba_tiny+mixer_recompute=never/T16/B1/fp32/cpu"
    assert analysis.series_key(a) != analysis.series_key(b)
    recs = [{"spec": a, "status": "ok"}, {"spec": b, "status": "ok"}]
    assert analysis.find(recs, model="videomamba_tiny", mode="train")["spec"] is a
    assert analysis.find(recs, model="videomamba_tiny", overrides={"mixer_recompute": "never"})["spec"] is b
    assert workloads.videomamba_config(b).mixer_recompute == "never"


def test_kernel_benchmark_json_is_tabulated():
    scan = {"argv": ["benchmarks/bench_scan.py"], "status": "ok", "wall_s": 3.0,
            "data": {"scan": [{"E": 384, "L": 3137, "impl": "cpu", "mode": "fwd", "median_ms": 7.1}],
                     "targets": {"fwd_speedup_vs_ref": 37.0}}}
    text = report.scan_section(scan)
    assert "| E | L | impl | mode | median_ms |" in text and "| 384 | 3137 | cpu | fwd | 7.1 |" in text
    assert "fwd_speedup_vs_ref" in text
    assert "not present" in report.scan_section(None)
