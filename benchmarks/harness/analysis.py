"""Numbers derived from a run: scaling exponents, roofline, ratios, and the targets.

Records are the dicts the runner returns, each with its ``spec`` and ``status``. Everything here
is a pure function of the records, so a report can be rebuilt from the JSON alone.
"""
from __future__ import annotations

import math

ORIGINAL_CPU_S = 6.66   # the original code's CPU forward, VideoMamba-Ti 8x224^2, batch 1, fp32


def fit_exponent(xs, ys) -> dict:
    """Least-squares fit of log y = a + k log x. Returns k (the exponent), the prefactor and r^2.

    Needs at least two points with x, y > 0; k is None otherwise.
    """
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    n = len(pts)
    if n < 2 or len({p[0] for p in pts}) < 2:
        return {"k": None, "prefactor": None, "r2": None, "n": n}
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    k = sxy / sxx
    a = my - k * mx
    ss_tot = sum((p[1] - my) ** 2 for p in pts)
    ss_res = sum((p[1] - (a + k * p[0])) ** 2 for p in pts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"k": k, "prefactor": math.exp(a), "r2": r2, "n": n}


def ok(records):
    return [r for r in records if r.get("status") == "ok"]


def find(records, **match) -> dict | None:
    """The record whose spec matches every given field (``attn=None`` matches a missing attn)."""
    for r in records:
        s = r.get("spec", {})
        if s.get("kind", "model") != "model":
            continue
        if all(s.get(k) == v for k, v in match.items() if k not in ("overrides", "env")) and \
                (s.get("overrides") or None) == (match.get("overrides") or None) and \
                (s.get("env") or None) == (match.get("env") or None):
            return r
    return None


def series_key(spec: dict) -> tuple:
    """Everything but the frame count: one line of a frames plot."""
    return (spec["mode"], spec["model"], spec.get("attn"), bool(spec.get("grad_ckpt")), spec["batch"],
            spec["dtype"], spec.get("device", "cpu"), spec.get("img", 224),
            tuple(sorted((spec.get("overrides") or {}).items())), tuple(sorted((spec.get("env") or {}).items())))


def scaling(records) -> list[dict]:
    """Fitted exponents of median time and of peak memory vs frames, one row per series.

    Memory is fitted twice: total peak (RSS or CUDA allocated) and the increment over the
    process's baseline after the model and the input exist (activations, workspace, optimizer
    state) -- the total carries the interpreter's fixed few hundred MB, which flattens it.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in ok(records):
        s = r["spec"]
        if s.get("kind", "model") == "model":
            groups.setdefault(series_key(s), []).append(r)
    rows = []
    for key, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r["spec"]["frames"])
        if len(rs) < 2:
            continue
        T = [r["spec"]["frames"] for r in rs]
        rows.append({"series": key, "spec": rs[0]["spec"], "frames": T,
                     "time": fit_exponent(T, [r["median_s"] for r in rs]),
                     "mem": fit_exponent(T, [peak_mb(r) for r in rs]),
                     "mem_increment": fit_exponent(T, [increment_mb(r) for r in rs])})
    return rows


def peak_mb(r: dict) -> float | None:
    if r.get("spec", {}).get("device", "cpu") == "cuda":
        return r.get("peak_cuda_mb")
    return r.get("peak_rss_mb")


def increment_mb(r: dict) -> float | None:
    if r.get("spec", {}).get("device", "cpu") == "cuda":
        p, b = r.get("peak_cuda_mb"), r.get("baseline_cuda_mb")
    else:
        p, b = r.get("peak_rss_mb"), r.get("baseline_rss_mb")
    return None if p is None or b is None else max(p - b, 0.0)


def roofline_s(r: dict, micro: dict) -> float | None:
    """Roofline time of a VideoMamba inference record (the scan's exp count as its floor).

    Every multiply-add outside the scan (full count) at the measured matmul peak (bf16 peak under
    bf16 autocast), plus depth * 2 directions * L*E*N exps (the scan's ``exp(delta*A)``) at the
    measured ``torch.exp`` throughput -- the two costs a CPU cannot avoid. The scan's other
    multiply-adds are ignored: they overlap with the exps in a fused kernel.
    """
    g = r.get("gflops") or {}
    if "gmacs_scan" not in g or not micro or r["spec"].get("mode") != "infer":
        return None
    peak = micro.get("matmul_bf16_flops" if r["spec"].get("dtype") == "bf16" else "matmul_fp32_flops")
    rate = micro.get("exp_fp32_per_s")
    if not peak or not rate:
        return None
    exps = g["gmacs_scan"] * 1e9 / 9.0          # the full count charges 9 multiply-adds per L*E*N element
    return 2.0 * g["gmacs_linear"] * 1e9 / peak + exps / rate


def annotate(records, micro_by_device: dict | None) -> None:
    """Add achieved GFLOP/s and roofline fields to every ok model record, in place.
    ``micro_by_device``: {"cpu": ceilings record, "cuda": ...}."""
    for r in ok(records):
        if r.get("spec", {}).get("kind", "model") != "model":
            continue
        g = r.get("gflops") or {}
        mult = 3.0 if r["spec"]["mode"] == "train" else 1.0     # backward ~ 2x forward
        if g.get("gmacs_full"):
            r["achieved_gflops"] = 2.0 * mult * g["gmacs_full"] / r["median_s"]
        rf = roofline_s(r, (micro_by_device or {}).get(r["spec"].get("device", "cpu"), {}))
        if rf is not None:
            r["roofline_s"] = rf
            r["roofline_fraction"] = rf / r["median_s"]


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def targets(records, micro: dict | None = None) -> list[dict]:
    """The targets (speed and memory against the peers, the time-vs-frames exponent, the
    inference roofline), each met / missed / not measured."""
    out = []

    def rec(**m):
        return find(records, device="cpu", img=224, **m)

    def add(name, value, threshold, met, detail=""):
        out.append({"target": name, "value": value, "threshold": threshold,
                    "met": met, "detail": detail})

    # --- inference at 64 frames, batch 1, fp32
    common = dict(mode="infer", frames=64, batch=1, dtype="fp32")
    vm = rec(model="videomamba_tiny", grad_ckpt=False, **common)
    vs = rec(model="vit_ti_joint", attn="sdpa", **common)
    vm_ok = vm is not None and vm["status"] == "ok"
    if vm_ok and vs is not None and vs["status"] == "ok":
        sp = vs["median_s"] / vm["median_s"]
        add("infer 64f: VideoMamba-Ti speed-up over sdpa ViT-Ti", sp, ">= 2", sp >= 2,
            f"{vm['median_s']:.2f} s vs {vs['median_s']:.2f} s")
        add("infer 64f: peak memory below sdpa ViT-Ti", peak_mb(vm), f"< {peak_mb(vs):.0f} MB",
            peak_mb(vm) < peak_mb(vs), f"{peak_mb(vm):.0f} MB vs {peak_mb(vs):.0f} MB{_incr(vm, vs)}")
    else:
        add("infer 64f: VideoMamba-Ti speed-up over sdpa ViT-Ti", None, ">= 2", None, _why(vm, vs))
    _eager_memory_target(add, rec, 1)
    _eager_memory_target(add, rec, 8)
    for row in scaling(records):
        s = row["spec"]
        if (s["model"].startswith("videomamba_") and s["mode"] == "infer" and s["batch"] == 1
                and s["dtype"] == "fp32" and s.get("device", "cpu") == "cpu"):
            k = row["time"]["k"]
            add(f"infer: time-vs-frames exponent of {s['model']}", k, "<= 1.1", k is not None and k <= 1.1,
                f"frames {row['frames']}")
    # --- training step at 64 frames
    tc = dict(mode="train", frames=64, batch=1, dtype="fp32")
    tm = rec(model="videomamba_tiny", grad_ckpt=False, **tc)
    tmc = rec(model="videomamba_tiny", grad_ckpt=True, **tc)
    ts = rec(model="vit_ti_joint", attn="sdpa", **tc)
    te = rec(model="vit_ti_joint", attn="eager", **tc)
    for label, r in (("", tm), (" (+grad ckpt)", tmc)):
        good = r is not None and r["status"] == "ok"
        if good and ts is not None and ts["status"] == "ok":
            add(f"train 64f{label}: peak memory <= sdpa ViT-Ti", peak_mb(r), f"<= {peak_mb(ts):.0f} MB",
                peak_mb(r) <= peak_mb(ts), f"{peak_mb(r):.0f} MB vs {peak_mb(ts):.0f} MB{_incr(r, ts)}")
        else:
            add(f"train 64f{label}: peak memory <= sdpa ViT-Ti", None, "<=", None, _why(r, ts))
        if good and te is not None and te["status"] in ("ok", "oom"):
            if te["status"] == "oom":
                lb, detail = _eager_oom(te, r, "its saved attention probabilities alone are")
                add(f"train 64f{label}: >= 5x less peak memory than eager ViT-Ti", lb, ">= 5",
                    lb is not None and lb >= 5, detail)
            else:
                m = peak_mb(te) / peak_mb(r)
                add(f"train 64f{label}: >= 5x less peak memory than eager ViT-Ti", m, ">= 5", m >= 5,
                    f"{peak_mb(r):.0f} MB vs {peak_mb(te):.0f} MB{_incr(r, te, True)}")
        else:
            add(f"train 64f{label}: >= 5x less peak memory than eager ViT-Ti", None, ">= 5", None, _why(r, te))
    # --- VideoMamba-Ti 8x224^2 batch 1 fp32 inference
    r8 = rec(model="videomamba_tiny", grad_ckpt=False, mode="infer", frames=8, batch=1, dtype="fp32")
    if r8 is not None and r8["status"] == "ok":
        sp = ORIGINAL_CPU_S / r8["median_s"]
        add("infer 8f >= 15x faster than the original CPU path (6.66 s)", sp, ">= 15", sp >= 15,
            f"{r8['median_s']:.3f} s at {r8.get('threads', '?')} thread(s), CPU share "
            f"{r8.get('cpu_share') or 0:.2f} (6.66 s was measured with 2 threads on a quiet machine)")
        rf = roofline_s(r8, micro or {})
        if rf is not None:
            x = r8["median_s"] / rf
            add("infer 8f within 2x of the roofline", x, "<= 2", x <= 2,
                f"{r8['median_s']:.3f} s vs roofline {rf:.3f} s")
    else:
        add("infer 8f >= 15x faster than the original CPU path (6.66 s)", None, ">= 15", None, _why(r8))
    return out


def _eager_memory_target(add, rec, batch: int) -> None:
    """Inference at 64 frames, fp32: >= 10x less peak memory than eager ViT-Ti, or it runs out of memory.
    The detail says what our process holds before the forward pass (imports, weights, input): eager's peak
    over it bounds the ratio we could reach even if the forward pass needed no memory at all."""
    name = f"infer 64f{'' if batch == 1 else f' batch {batch}'}: >= 10x less peak memory than eager ViT-Ti (or it OOMs)"
    common = dict(mode="infer", frames=64, batch=batch, dtype="fp32")
    vm = rec(model="videomamba_tiny", grad_ckpt=False, **common)
    ve = rec(model="vit_ti_joint", attn="eager", **common)
    if vm is None or vm["status"] != "ok" or ve is None or ve["status"] not in ("ok", "oom"):
        add(name, None, ">= 10", None, _why(vm, ve))
    elif ve["status"] == "oom":
        lb, detail = _eager_oom(ve, vm, "one layer's attention scores, raw and scaled, are")
        add(name, lb, ">= 10 or OOM", True, detail)
    else:
        m = peak_mb(ve) / peak_mb(vm)
        base = vm.get("baseline_rss_mb")
        bound = (f"; before its forward pass our process already holds {base:.0f} MB (imports "
                 f"{vm.get('import_rss_mb') or 0:.0f} MB, weights, input): with no activation memory at all "
                 f"the ratio would be {peak_mb(ve) / base:.1f}x" if base else "")
        scores = eager_attention_floor_mb(ve["spec"])
        floor_note = f"; eager's attention-score floor: {scores:.0f} MB" if scores else ""
        add(name, m, ">= 10", m >= 10,
            f"{peak_mb(vm):.0f} MB vs {peak_mb(ve):.0f} MB{_incr(vm, ve, True)}{floor_note}{bound}")


def _eager_oom(peer: dict, ours: dict, what: str) -> tuple[float | None, str]:
    """An eager peer that ran out of memory: it needed at least the budget and at least its attention
    matrices (``eager_attention_floor_mb``). Returns that need / our peak (a lower bound) and the detail."""
    floor = eager_attention_floor_mb(peer["spec"]) or 0.0
    need = max(peer.get("mem_limit_mb") or 0.0, floor)
    return _ratio(need, peak_mb(ours)), (
        f"eager OOM: it needs > {need:.0f} MB (budget {peer.get('mem_limit_mb') or '?'} MB; {what} "
        f"{floor:.0f} MB) vs {peak_mb(ours):.0f} MB; measured = that floor / ours")


def eager_attention_floor_mb(spec: dict) -> float | None:
    """A floor, in MB, on the activation memory of an eager-attention peer (fp32, no dropout), from
    its attention matrices alone (batch x heads x tokens^2 x 4 bytes each):
    - training keeps every layer's probabilities for backward: layers x one matrix;
    - inference holds two of one layer at once: ``matmul(q, k^T) * scale`` makes the scaled copy
      while the raw product is alive (and softmax its output while its input is)."""
    from . import workloads

    kw = workloads.MODELS.get(spec.get("model"), ("", {}))[1]
    if "num_attention_heads" not in kw or spec.get("attn") != "eager" or workloads.family(spec["model"]) != "videomae":
        return None
    tokens = (spec["frames"] // kw.get("tubelet_size", 1)) * (spec.get("img", 224) // kw["patch_size"]) ** 2
    matrix = kw["num_attention_heads"] * tokens ** 2 * 4 * spec["batch"] / 2**20
    return matrix * (kw["num_hidden_layers"] if spec["mode"] == "train" else 2)


def _incr(ours: dict, peer: dict, ratio: bool = False) -> str:
    """The same comparison on the increment over each process's baseline (model and input built):
    activations + workspace (+ optimizer state), without the interpreter's fixed few hundred MB."""
    a, b = increment_mb(ours), increment_mb(peer)
    if a is None or b is None:
        return ""
    extra = f", {b / a:.1f}x" if ratio and a > 0 else ""
    return f" (above baseline: {a:.0f} vs {b:.0f} MB{extra})"


def _why(*rs) -> str:
    for r in rs:
        if r is None:
            return "not measured in this run"
        if r["status"] != "ok":
            return f"{r['spec'].get('model')}: {r['status']}"
    return ""


def ratios_at(records, frames: int, mode: str = "infer", batch: int = 1, dtype: str = "fp32",
              ref_model: str = "videomamba_tiny") -> list[dict]:
    """Every model at one frame count, relative to ``ref_model``: time and peak memory ratios."""
    ref = find(records, model=ref_model, mode=mode, frames=frames, batch=batch, dtype=dtype, device="cpu",
               grad_ckpt=False)
    rows = []
    for r in records:
        s = r.get("spec", {})
        if (s.get("kind", "model") != "model" or s["mode"] != mode or s["frames"] != frames
                or s["batch"] != batch or s["dtype"] != dtype or s.get("device", "cpu") != "cpu"):
            continue
        row = {"spec": s, "status": r["status"]}
        if r["status"] == "ok" and ref is not None and ref["status"] == "ok":
            row["time_x"] = _ratio(r["median_s"], ref["median_s"])
            row["mem_x"] = _ratio(peak_mb(r), peak_mb(ref))
        rows.append(row)
    return rows
