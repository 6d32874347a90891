"""Numbers derived from a run: scaling exponents, roofline, ratios, and the targets.

Records are the dicts the runner returns, each with its ``spec`` and ``status``. Everything here
is a pure function of the records, so a report can be rebuilt from the JSON alone.
"""
from __future__ import annotations

import math
import statistics


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
        rows.append({"series": key, "spec": rs[0]["spec"], "frames": T, "as_user": all(ran_as_user(r) for r in rs),
                     "time": fit_exponent(T, [step_s(r) for r in rs]),
                     "mem": fit_exponent(T, [peak_mb(r) for r in rs]),
                     "mem_increment": fit_exponent(T, [increment_mb(r) for r in rs])})
    return rows


def peak_mb(r: dict) -> float | None:
    """The configuration's peak memory: the highest of its rounds (:func:`step_s`) where it ran in several."""
    key = "peak_cuda_mb" if r.get("spec", {}).get("device", "cpu") == "cuda" else "peak_rss_mb"
    peaks = [x.get(key) for x in [r, *good_rounds(r)] if x.get(key) is not None]
    return max(peaks) if peaks else None


def good_rounds(r: dict) -> list[dict]:
    """The later rounds of a configuration that completed (``r["rounds"]``: records of the same
    configuration measured again, later in the same run)."""
    return [x for x in r.get("rounds") or [] if x.get("status") == "ok" and x.get("median_s") is not None]


def round_medians(r: dict) -> list[float]:
    """The median time of every round of a configuration, the record's own first."""
    return [r["median_s"]] + [x["median_s"] for x in good_rounds(r)]


def rounds_note(r: dict) -> str:
    """' (median of 3 rounds: 7.22, 6.41, 6.50 s)' for a configuration measured in several rounds, else ''."""
    ms = round_medians(r)
    return "" if len(ms) < 2 else f" (median of {len(ms)} rounds: {', '.join(f'{m:.2f}' for m in ms)} s)"


def step_s(r: dict) -> float:
    """The time of a configuration: its median time, or where it was measured in several rounds spread
    over the run (the training comparisons), the median of the rounds' medians, so that a slow spell of
    the machine during one round does not decide a target."""
    return statistics.median(round_medians(r))


def increment_mb(r: dict) -> float | None:
    if r.get("spec", {}).get("device", "cpu") == "cuda":
        p, b = r.get("peak_cuda_mb"), r.get("baseline_cuda_mb")
    else:
        p, b = r.get("peak_rss_mb"), r.get("baseline_rss_mb")
    return None if p is None or b is None else max(p - b, 0.0)


# Environment variables that tune the process (allocator, OpenMP): a configuration run with any of
# them is not "as a user runs it". A record says which way it ran (``as_user``); older records, from
# before children ran untuned by default, tell it by their malloc state.
TUNING_VARS = ("VIDEOMAMBA_MALLOC_TUNE", "VIDEOMAMBA_NO_MALLOC_TUNE", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "OMP_WAIT_POLICY",
               "GOMP_SPINCOUNT", "LD_PRELOAD", "VIDEOMAMBA_CPU_ALLOCATOR")
RELEASE_ENV = {"VIDEOMAMBA_SCAN_BACKEND": "ref"}   # the release-equivalent path: sequential scan, F.conv1d
TRAIN_TIME_BUDGET = 1.10    # the default's memory savings may cost at most 10 % over keeping every activation


def ran_as_user(r: dict) -> bool:
    """Whether a record ran as a user's process does: no tuning variable in its environment."""
    if "as_user" in r:
        return bool(r["as_user"])
    env = r.get("spec", {}).get("env") or {}
    if any(k in env for k in TUNING_VARS if k != "VIDEOMAMBA_NO_MALLOC_TUNE"):
        return False
    return str(r.get("malloc") or "default").startswith("default")


def pick(records, user: bool = True, env: dict | None = None, **match) -> dict | None:
    """The record of one configuration, run as a user runs it (``user=True``) or tuned.

    ``match``: spec fields (``overrides`` and ``grad_ckpt`` compared exactly, missing = none);
    ``env``: the configuration's own environment apart from the tuning variables (e.g.
    :data:`RELEASE_ENV`)."""
    want_over = match.pop("overrides", None) or None
    want_ckpt = bool(match.pop("grad_ckpt", False))
    for r in records:
        s = r.get("spec", {})
        if s.get("kind", "model") != "model":
            continue
        if any(s.get(k, "cpu" if k == "device" else 224 if k == "img" else None) != v for k, v in match.items()):
            continue
        if (s.get("overrides") or None) != want_over or bool(s.get("grad_ckpt")) != want_ckpt:
            continue
        own = {k: v for k, v in (s.get("env") or {}).items() if k not in TUNING_VARS}
        if own != (env or {}) or ran_as_user(r) != user:
            continue
        return r
    return None


def roofline(r: dict, micro: dict) -> dict | None:
    """The roofline of a VideoMamba inference record (:func:`harness.roofline.model_roofline`): a floor,
    ``max(compute, memory)``. None for other records or without the machine's measured peaks."""
    from . import roofline as rl

    g = r.get("gflops") or {}
    s = r.get("spec", {})
    if "gmacs_linear" not in g or ("gmacs_scan" not in g and "scan_elems" not in g) or not micro \
            or s.get("mode") != "infer":
        return None
    if (s.get("env") or {}).get("VIDEOMAMBA_SCAN_BACKEND") == "ref":
        return None       # the sequential reference scan: not a fast path, no roofline row
    inp = g.get("input_elems")
    if inp is None and s.get("frames"):
        inp = s.get("batch", 1) * 3 * s["frames"] * s.get("img", 224) ** 2
    return rl.model_roofline(g, micro, s.get("dtype", "fp32"), s.get("batch", 1), inp)


def roofline_s(r: dict, micro: dict) -> float | None:
    rf = roofline(r, micro)
    return None if rf is None else rf["roofline_s"]


def annotate(records, micro_by_device: dict | None) -> None:
    """Add achieved GFLOP/s and roofline fields to every ok model record, in place.
    ``micro_by_device``: {"cpu": ceilings record, "cuda": ...}."""
    for r in ok(records):
        if r.get("spec", {}).get("kind", "model") != "model":
            continue
        g = r.get("gflops") or {}
        mult = 3.0 if r["spec"]["mode"] == "train" else 1.0     # backward ~ 2x forward
        if g.get("gmacs_full"):
            r["achieved_gflops"] = 2.0 * mult * g["gmacs_full"] / step_s(r)
        for k in ("roofline_s", "roofline_fraction", "roofline"):
            r.pop(k, None)
        rf = roofline(r, (micro_by_device or {}).get(r["spec"].get("device", "cpu"), {}))
        if rf is not None:
            r["roofline"] = rf
            r["roofline_s"] = rf["roofline_s"]
            r["roofline_fraction"] = rf["roofline_s"] / step_s(r)


def roofline_ratios(records, micro: dict | None, batches=(1,)):
    """(spec, measured / roofline) of every ok CPU record run as a user runs it, at one of ``batches``,
    that has a roofline."""
    for r in ok(records):
        s = r.get("spec", {})
        if s.get("batch") not in batches or s.get("device", "cpu") != "cpu" or not ran_as_user(r):
            continue
        rf = roofline(r, micro or {})
        if rf is not None:
            yield s, step_s(r) / rf["roofline_s"]


def roofline_summary(records, micro: dict | None) -> list[dict]:
    """measured / roofline per model and dtype (batch 1, as a user runs it): median, min and max over
    the frame counts measured."""
    groups: dict[tuple, list[float]] = {}
    for s, x in roofline_ratios(records, micro):
        groups.setdefault((s["model"], s["dtype"]), []).append((s["frames"], x))
    rows = []
    for (model, dtype), xs in sorted(groups.items()):
        ratios = sorted(x for _, x in xs)
        n = len(ratios)
        med = ratios[n // 2] if n % 2 else 0.5 * (ratios[n // 2 - 1] + ratios[n // 2])
        rows.append({"model": model, "dtype": dtype, "frames": sorted(f for f, _ in xs), "median_x": med,
                     "min_x": ratios[0], "max_x": ratios[-1]})
    return rows


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _good(*rs) -> bool:
    return all(r is not None and r.get("status") == "ok" for r in rs)


def targets(records, micro: dict | None = None) -> list[dict]:
    """The targets, each met / missed / not measured, computed from this run's records only, every
    side as a user runs it (no tuning variables). A peer that ran out of memory is *not measured*:
    the row gives the floor of what it would have needed, and does not count as met."""
    out = []

    def rec(**m):
        return pick(records, device="cpu", img=224, **m)

    def add(name, value, threshold, met, detail="", floor_mb=None):
        out.append({"target": name, "value": value, "threshold": threshold,
                    "met": met, "detail": detail, "floor_mb": floor_mb})

    # --- inference at 64 frames, batch 1, fp32
    common = dict(mode="infer", frames=64, batch=1, dtype="fp32")
    vm = rec(model="videomamba_tiny", **common)
    vs = rec(model="vit_ti_joint", attn="sdpa", **common)
    if _good(vm, vs):
        sp = step_s(vs) / step_s(vm)
        add("infer 64f: VideoMamba-Ti speed-up over sdpa ViT-Ti", sp, ">= 2", sp >= 2,
            f"{step_s(vm):.2f} s{rounds_note(vm)} vs {step_s(vs):.2f} s")
        add("infer 64f: peak memory below sdpa ViT-Ti", peak_mb(vm), f"< {peak_mb(vs):.0f} MB",
            peak_mb(vm) < peak_mb(vs), f"{peak_mb(vm):.0f} MB vs {peak_mb(vs):.0f} MB{_incr(vm, vs)}")
    else:
        add("infer 64f: VideoMamba-Ti speed-up over sdpa ViT-Ti", None, ">= 2", None, _why(vm, vs))
        add("infer 64f: peak memory below sdpa ViT-Ti", None, "<", None, _why(vm, vs))
    _eager_memory_target(add, rec, 1)
    _eager_memory_target(add, rec, 8)
    for row in scaling(records):
        s = row["spec"]
        if (s["model"].startswith("videomamba_") and s["mode"] == "infer" and s["batch"] == 1
                and s["dtype"] == "fp32" and s.get("device", "cpu") == "cpu" and not s.get("overrides")
                and not {k for k in (s.get("env") or {}) if k not in TUNING_VARS} and row["as_user"]):
            k = row["time"]["k"]
            add(f"infer: time-vs-frames exponent of {s['model']}", k, "<= 1.1", k is not None and k <= 1.1,
                f"frames {row['frames']}")
    # --- training step at 64 frames, like for like
    tc = dict(mode="train", frames=64, batch=1, dtype="fp32")
    never = {"mixer_recompute": "never"}
    t_def = rec(model="videomamba_tiny", **tc)
    t_never = rec(model="videomamba_tiny", overrides=never, **tc)
    t_ckpt = rec(model="videomamba_tiny", grad_ckpt=True, overrides=never, **tc)
    p_def = rec(model="vit_ti_joint", attn="sdpa", **tc)
    p_ckpt = rec(model="vit_ti_joint", attn="sdpa", grad_ckpt=True, **tc)
    e_def = rec(model="vit_ti_joint", attn="eager", **tc)
    e_ckpt = rec(model="vit_ti_joint", attn="eager", grad_ckpt=True, **tc)
    for label, ours, peer in (("no recompute on either side (ours mixer_recompute=never)", t_never, p_def),
                              ("gradient checkpointing on both sides (ours +ckpt, mixer_recompute=never)",
                               t_ckpt, p_ckpt)):
        name = f"train 64f, {label}: peak memory <= sdpa ViT-Ti"
        if _good(ours, peer):
            add(name, peak_mb(ours), f"<= {peak_mb(peer):.0f} MB", peak_mb(ours) <= peak_mb(peer),
                f"{peak_mb(ours):.0f} MB vs {peak_mb(peer):.0f} MB{_incr(ours, peer)}; "
                f"{step_s(ours):.2f} s vs {step_s(peer):.2f} s")
        else:
            add(name, None, "<=", None, _why(ours, peer))
    name = (f"train 64f, defaults (ours: mixer recompute): peak memory <= sdpa ViT-Ti, at <= "
            f"{TRAIN_TIME_BUDGET:.2f}x the time of ours with every activation kept")
    if _good(t_def, p_def, t_never):
        extra = step_s(t_def) / step_s(t_never)
        mem_ok = peak_mb(t_def) <= peak_mb(p_def)
        add(name, peak_mb(t_def), f"<= {peak_mb(p_def):.0f} MB and time <= {TRAIN_TIME_BUDGET:.2f}x",
            mem_ok and extra <= TRAIN_TIME_BUDGET,
            f"{peak_mb(t_def):.0f} MB vs {peak_mb(p_def):.0f} MB{_incr(t_def, p_def)}; time {step_s(t_def):.2f} s"
            f"{rounds_note(t_def)} = {extra:.2f}x ours with every activation kept ({step_s(t_never):.2f} s"
            f"{rounds_note(t_never)})")
    else:
        add(name, None, "<=", None, _why(t_def, p_def, t_never))
    for label, ours, peer in (("defaults", t_def, e_def),
                              ("gradient checkpointing on both sides", t_ckpt, e_ckpt)):
        name = f"train 64f, {label}: >= 5x less peak memory than eager ViT-Ti"
        if _good(ours) and peer is not None and peer["status"] == "oom":
            add(name, None, ">= 5", None, *_eager_oom(peer, ours, "its saved attention probabilities alone are"
                                                      if not peer["spec"].get("grad_ckpt") else
                                                      "one layer's attention probabilities are"))
        elif _good(ours, peer):
            m = peak_mb(peer) / peak_mb(ours)
            add(name, m, ">= 5", m >= 5, f"{peak_mb(ours):.0f} MB vs {peak_mb(peer):.0f} MB{_incr(ours, peer, True)}")
        else:
            add(name, None, ">= 5", None, _why(ours, peer))
    # --- training throughput against sdpa ViT-Ti, defaults on both sides (batch 1, fp32)
    for frames, need in ((16, 1.5), (64, 3.0)):
        ours = rec(model="videomamba_tiny", mode="train", frames=frames, batch=1, dtype="fp32")
        peer = rec(model="vit_ti_joint", attn="sdpa", mode="train", frames=frames, batch=1, dtype="fp32")
        name = (f"train {frames}f: VideoMamba-Ti (defaults) >= {need:g}x the steps/s of sdpa ViT-Ti"
                + (", peak memory <= the peer's" if frames == 64 else ""))
        if _good(ours, peer):
            x = step_s(peer) / step_s(ours)
            mem_ok = frames != 64 or peak_mb(ours) <= peak_mb(peer)
            add(name, x, f">= {need:g}", x >= need and mem_ok,
                f"{step_s(ours):.2f} s{rounds_note(ours)} vs {step_s(peer):.2f} s{rounds_note(peer)}; "
                f"{peak_mb(ours):.0f} MB vs {peak_mb(peer):.0f} MB")
        else:
            add(name, None, f">= {need:g}", None, _why(ours, peer))
    # --- inference against the roofline: Ti and S, batch 1 and 8, 8-64 frames (the worst configuration)
    for model in ("videomamba_tiny", "videomamba_small"):
        for dtype, need in (("fp32", 1.6), ("bf16", 2.0)):
            name = f"infer 8-64f, batch 1 and 8: {model} {dtype} within {need:g}x of the roofline (worst case)"
            worst = max(((x, sp["frames"], sp["batch"]) for sp, x in roofline_ratios(records, micro, (1, 8))
                         if sp.get("model") == model and sp.get("dtype") == dtype and 8 <= sp["frames"] <= 64
                         and sp.get("img", 224) == 224 and not sp.get("overrides")), default=None)
            if worst is None:
                add(name, None, f"<= {need:g}", None, "not measured in this run (or no measured peaks)")
            else:
                add(name, worst[0], f"<= {need:g}", worst[0] <= need, f"worst: {worst[1]} frames, batch {worst[2]}")
    # --- VideoMamba-Ti 8x224^2 batch 1 fp32 inference: against the release-equivalent path, and the roofline
    r8 = rec(model="videomamba_tiny", mode="infer", frames=8, batch=1, dtype="fp32")
    ref8 = rec(model="videomamba_tiny", mode="infer", frames=8, batch=1, dtype="fp32", env=RELEASE_ENV)
    name = "infer 8f: >= 15x faster than the release-equivalent path (sequential reference scan, both directions)"
    if _good(r8, ref8):
        sp = step_s(ref8) / step_s(r8)
        add(name, sp, ">= 15", sp >= 15,
            f"{step_s(r8):.3f} s vs {step_s(ref8):.3f} s, same run, {r8.get('threads', '?')} thread(s)")
    else:
        add(name, None, ">= 15", None, _why(r8, ref8))
    rf = roofline(r8, micro or {}) if _good(r8) else None
    if rf is not None:
        x = step_s(r8) / rf["roofline_s"]
        add("infer 8f: within 2x of the roofline", x, "<= 2", x <= 2,
            f"{step_s(r8):.3f} s{rounds_note(r8)} vs roofline {rf['roofline_s']:.3f} s ({rf['bound']}-bound)")
    else:
        add("infer 8f: within 2x of the roofline", None, "<= 2", None,
            _why(r8) or "the machine's peaks were not measured in this run")
    return out


def _eager_memory_target(add, rec, batch: int) -> None:
    """Inference at 64 frames, fp32: >= 10x less peak memory than eager ViT-Ti. The detail says what our
    process holds before the forward pass (imports, weights, input): eager's peak over it bounds the ratio
    we could reach even if the forward pass needed no memory at all. An eager run that ran out of memory
    is not measured: the row gives the floor of its need and does not count as met."""
    name = f"infer 64f{'' if batch == 1 else f' batch {batch}'}: >= 10x less peak memory than eager ViT-Ti"
    common = dict(mode="infer", frames=64, batch=batch, dtype="fp32")
    vm = rec(model="videomamba_tiny", **common)
    ve = rec(model="vit_ti_joint", attn="eager", **common)
    if _good(vm) and ve is not None and ve["status"] == "oom":
        add(name, None, ">= 10", None, *_eager_oom(ve, vm, "one layer's attention scores, raw and scaled, are"))
    elif not _good(vm, ve):
        add(name, None, ">= 10", None, _why(vm, ve))
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


def _eager_oom(peer: dict, ours: dict, what: str) -> tuple[str, float]:
    """An eager peer that ran out of memory: not measured. It needed at least the budget and at least
    its attention matrices (``eager_attention_floor_mb``). Returns the detail and that floor in MB."""
    floor = eager_attention_floor_mb(peer["spec"]) or 0.0
    need = max(peer.get("mem_limit_mb") or 0.0, floor)
    ratio = _ratio(need, peak_mb(ours))
    return (f"eager ran out of memory (budget {peer.get('mem_limit_mb') or '?'} MB; {what} {floor:.0f} MB): "
            f"it needs more than {need:.0f} MB, {ratio:.1f}x our {peak_mb(ours):.0f} MB at least; "
            f"not counted as met", need)


def eager_attention_floor_mb(spec: dict) -> float | None:
    """A floor, in MB, on the activation memory of an eager-attention peer (fp32, no dropout), from
    its attention matrices alone (batch x heads x tokens^2 x 4 bytes each):
    - training keeps every layer's probabilities for backward: layers x one matrix (one matrix with
      gradient checkpointing: only the layer being recomputed holds its own);
    - inference holds two of one layer at once: ``matmul(q, k^T) * scale`` makes the scaled copy
      while the raw product is alive (and softmax its output while its input is)."""
    from . import workloads

    kw = workloads.MODELS.get(spec.get("model"), ("", {}))[1]
    if "num_attention_heads" not in kw or spec.get("attn") != "eager" or workloads.family(spec["model"]) != "videomae":
        return None
    tokens = (spec["frames"] // kw.get("tubelet_size", 1)) * (spec.get("img", 224) // kw["patch_size"]) ** 2
    matrix = kw["num_attention_heads"] * tokens ** 2 * 4 * spec["batch"] / 2**20
    if spec["mode"] != "train":
        return 2 * matrix
    # with gradient checkpointing only the layer being recomputed keeps its probabilities
    return matrix * (1 if spec.get("grad_ckpt") else kw["num_hidden_layers"])


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
            row["time_x"] = _ratio(step_s(r), step_s(ref))
            row["mem_x"] = _ratio(peak_mb(r), peak_mb(ref))
        rows.append(row)
    return rows
