"""The results page (markdown) and the PNG plots, rebuilt from ``results.json`` alone."""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from . import analysis, workloads
from . import roofline as roofline_mod

BUSY_SHARE = 0.7    # below this CPU share the cores were not ours: the time is inflated (marked †)
STATUS_TEXT = {"oom": "OOM", "timeout": "timeout", "error": "error", "unsupported": "n/a", "skipped": "skipped"}


def _fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def cell(r: dict | None, what: str = "both") -> str:
    if r is None:
        return ""
    if r["status"] != "ok":
        t = STATUS_TEXT.get(r["status"], r["status"])
        if r["status"] == "timeout" and r.get("spec"):
            done = r.get("times_s") or r.get("warmup_s")
            t += f" (>{_fmt_s(max(done))} s)" if done else ""
        return t + ("\\*" if r.get("inferred") else "")
    mem = analysis.peak_mb(r)
    shares = [x.get("cpu_share") or 1.0 for x in [r, *analysis.good_rounds(r)]]
    busy = "†" if statistics.median(shares) < BUSY_SHARE else ""
    busy += "‡" if analysis.good_rounds(r) else ""
    if what == "time":
        return _fmt_s(analysis.step_s(r)) + busy
    if what == "mem":
        return f"{mem:.0f}"
    return f"{_fmt_s(analysis.step_s(r))} s{busy} / {mem:.0f} MB"


def _variants(records, **match) -> list[tuple]:
    """Model variants (model, attn, grad_ckpt) present among the matching records, ours first."""
    seen = []
    for r in records:
        s = r.get("spec", {})
        if s.get("kind", "model") != "model" or any(s.get(k) != v for k, v in match.items()):
            continue
        v = _vkey(s)
        if v not in seen:
            seen.append(v)
    order = list(workloads.MODELS)
    return sorted(seen, key=lambda v: (order.index(v[0]) if v[0] in order else 99, v[1] or "", v[2]))


def _vkey(s: dict) -> tuple:
    """A model variant: (model, attn, grad_ckpt, overrides as a sorted tuple)."""
    return (s["model"], s.get("attn"), bool(s.get("grad_ckpt")), tuple(sorted((s.get("overrides") or {}).items())),
            tuple(sorted((s.get("env") or {}).items())))


def _vmatch(v: tuple) -> dict:
    return {"model": v[0], "attn": v[1], "grad_ckpt": v[2], "overrides": dict(v[3]) or None,
            "env": dict(v[4]) or None}


def _label(v: tuple) -> str:
    return workloads.spec_label(_vmatch(v))


def frames_table(records, mode: str, batch: int, dtype: str, device: str = "cpu") -> str:
    match = dict(mode=mode, batch=batch, dtype=dtype, device=device)
    variants = _variants(records, **match)
    if not variants:
        return ""
    frames = sorted({r["spec"]["frames"] for r in records if r.get("spec", {}).get("kind", "model") == "model"
                     and all(r["spec"].get(k) == v for k, v in match.items())})
    lines = ["| model | " + " | ".join(f"{T} frames" for T in frames) + " |",
             "|---|" + "---|" * len(frames)]
    for v in variants:
        row = [cell(analysis.find(records, **_vmatch(v), frames=T, **match))
               for T in frames]
        lines.append(f"| {_label(v)} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def scaling_table(records) -> str:
    rows = analysis.scaling(records)
    if not rows:
        return ""
    lines = ["| series | frames | time exponent | peak-memory exponent | memory-increment exponent |",
             "|---|---|---|---|---|"]

    def k(f):
        return "" if f["k"] is None else f"{f['k']:.2f} (r² {f['r2']:.3f})"
    for row in rows:
        s = row["spec"]
        name = (f"{s['mode']} {workloads.spec_label(s)}, B{s['batch']} {s['dtype']}"
                + (f" {s['device']}" if s.get("device", "cpu") != "cpu" else ""))
        lines.append(f"| {name} | {row['frames'][0]}–{row['frames'][-1]} ({len(row['frames'])}) | "
                     f"{k(row['time'])} | {k(row['mem'])} | {k(row['mem_increment'])} |")
    return "\n".join(lines)


def targets_table(tg: list[dict]) -> str:
    lines = ["| target | measured | needed | met | detail |", "|---|---|---|---|---|"]
    for t in tg:
        v = "" if t["value"] is None else f"{t['value']:.2f}" if abs(t["value"]) < 100 else f"{t['value']:.0f}"
        met = {True: "**yes**", False: "**no**", None: "not measured"}[t["met"]]
        if t["met"] is None and t.get("floor_mb"):
            met = f"not measured (floor {t['floor_mb']:.0f} MB)"
        lines.append(f"| {t['target']} | {v} | {t['threshold']} | {met} | {t['detail']} |")
    return "\n".join(lines)


def roofline_table(records) -> str:
    rows = [r for r in analysis.ok(records) if r.get("roofline")]
    if not rows:
        return ""
    lines = ["| model | frames | batch | dtype | linear GMACs | scan G elements | compute floor s | memory floor s | "
             "roofline s | measured s | measured / roofline |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["spec"]["model"], r["spec"]["batch"], r["spec"]["dtype"],
                                         workloads.spec_label(r["spec"]), r["spec"]["frames"])):
        s, g, rf = r["spec"], r["gflops"], r["roofline"]
        mem = "" if rf.get("memory_s") is None else _fmt_s(rf["memory_s"])
        lines.append(f"| {workloads.spec_label(s)} | {s['frames']} | {s['batch']} | {s['dtype']} | "
                     f"{g['gmacs_linear']:.1f} | {roofline_mod.scan_elements(g) / 1e9:.2f} | "
                     f"{_fmt_s(rf['compute_s'])} | {mem} | {_fmt_s(rf['roofline_s'])} | "
                     f"{_fmt_s(analysis.step_s(r))}{'‡' if analysis.good_rounds(r) else ''} | "
                     f"{analysis.step_s(r) / rf['roofline_s']:.2f}× |")
    return "\n".join(lines)


def roofline_summary_table(records, micro) -> str:
    rows = analysis.roofline_summary(records, micro)
    if not rows:
        return ""
    lines = ["| model | dtype | frames | measured / roofline (median) | min | max |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {workloads.LABELS.get(row['model'], row['model'])} | {row['dtype']} | "
                     f"{', '.join(map(str, row['frames']))} | {row['median_x']:.2f}× | {row['min_x']:.2f}× | "
                     f"{row['max_x']:.2f}× |")
    return "\n".join(lines)


def ratio_table(records, frames: int, mode: str = "infer") -> str:
    rows = analysis.ratios_at(records, frames, mode=mode)
    if not rows:
        return ""
    lines = ["| model | time / VideoMamba-Ti | peak memory / VideoMamba-Ti | GMACs |", "|---|---|---|---|"]
    for row in rows:
        s = row["spec"]
        r = analysis.find(records, **{k: s.get(k) for k in ("model", "attn", "grad_ckpt", "mode", "frames",
                                                              "batch", "dtype", "device", "overrides", "env")})
        g = (r or {}).get("gflops", {}).get("gmacs_full")
        if "time_x" in row:
            lines.append(f"| {workloads.spec_label(s)} | {row['time_x']:.2f}× | {row['mem_x']:.2f}× | "
                         f"{'' if g is None else f'{g:.0f}'} |")
        else:
            lines.append(f"| {workloads.spec_label(s)} | {cell(r)} | | {'' if g is None else f'{g:.0f}'} |")
    return "\n".join(lines)


def micro_table(micro: dict) -> str:
    lines = ["| device | fp32 matmul GFLOP/s | bf16 matmul GFLOP/s | copy GB/s by working set (read + written) |",
             "|---|---|---|---|"]
    for dev, m in micro.items():
        if m.get("status") != "ok":
            lines.append(f"| {dev} | {m.get('status')} | | |")
            continue
        bw = m.get("copy_bytes_per_s_by_size") or {}
        bws = ", ".join(f"{_fmt_bytes(float(k))}: {v / 1e9:.1f}" for k, v in
                        sorted(bw.items(), key=lambda kv: float(kv[0]))) or "not measured in this run"
        lines.append(f"| {dev} | {m['matmul_fp32_flops'] / 1e9:.0f} | {m['matmul_bf16_flops'] / 1e9:.0f} | {bws} |")
    return "\n".join(lines)


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def profile_section(records) -> str:
    out = []
    for r in analysis.ok(records):
        p = r.get("profile")
        if not p:
            continue
        out.append(f"**{r['id']}** (median {r['median_s']:.2f} s), top operators by self CPU time:\n")
        out.append("| operator | self CPU ms | share | calls |\n|---|---|---|---|")
        for e in p["by_self_cpu"]:
            out.append(f"| `{e['op']}` | {e['self_cpu_ms']:.1f} | {100 * e['share']:.1f}% | {e['calls']} |")
        out.append("")
    for r in analysis.ok(records):
        sv = r.get("saved_for_backward")
        if not sv:
            continue
        out.append(f"**{r['id']}**: {sv['total_mb']:.0f} MB saved for backward, by module type:\n")
        out.append("| module | MB |\n|---|---|")
        for k, v in list(sv["by_module_mb"].items())[:10]:
            out.append(f"| {k} | {v:.0f} |")
        out.append("")
    return "\n".join(out)


def _measured_when(machine: dict, history: list[dict]) -> str:
    """When and at which commit: the first run's, plus the last resume's where a run was resumed later."""
    first = f"{machine['date']}, code at `{machine.get('git')}`"
    starts = [h for h in history if h.get("when") == "start"]
    last = starts[-1] if len(starts) > 1 else None
    if last is None or not last.get("date") or last["date"][:10] == str(machine["date"])[:10]:
        return first
    code = f", code at `{last['git']}`" if last.get("git") else ""
    return f"{first}; last resumed {last['date']}{code}"


OLD_EXP_ROW = "torch.exp over L·E·N (materialised: not a floor)"


def honest_scan_data(data, micro: dict | None):
    """Kernel benchmark output as the page shows it. Output from before the scan had a roofline timed
    ``torch.exp`` over L*E*N materialised elements and called it the floor (the fused kernel ran below
    it): that row is renamed for what it is, its target dropped, and each configuration gets its
    compute floor from this run's matmul rate (:mod:`harness.roofline`) and the forward's distance from it."""
    import copy

    if not isinstance(data, dict) or not isinstance(data.get("scan"), list):
        return data
    data = copy.deepcopy(data)
    rows = data["scan"]
    old = [r for r in rows if r.get("impl") == "floor"]
    for r in old:
        r["impl"] = OLD_EXP_ROW
    rate = (micro or {}).get("matmul_fp32_flops")
    if old and rate and not any(r.get("impl") == "roofline" for r in rows):
        for E, L, N, B in sorted({(r["E"], r["L"], r.get("N", 16), r.get("B", 1)) for r in rows}):
            f = roofline_mod.floor_s(roofline_mod.scan_min_ops(B, L, E, N), rate / 2.0)
            rows.append(dict(E=E, L=L, N=N, B=B, impl="roofline (compute floor)", mode="fwd",
                             median_ms=1e3 * f["floor_s"]))
        rows.sort(key=lambda r: (r["E"], r["L"], not str(r["impl"]).startswith("roofline"), r["mode"], str(r["impl"])))
    t = data.get("targets")
    if old and isinstance(t, dict):
        t = {k: v for k, v in t.items() if "exp_floor" not in k}
        if isinstance(t.get("pass"), dict):
            t["pass"] = {k: v for k, v in t["pass"].items() if "exp floor" not in k}
        fl = [r for r in rows if str(r["impl"]).startswith("roofline") and (r["E"], r["L"]) == (384, 3137)]
        fw = [r for r in rows if r["impl"] == "cpu" and r["mode"] == "fwd" and (r["E"], r["L"]) == (384, 3137)]
        if fl and fw and fw[0].get("median_ms"):
            t["fwd_over_roofline"] = fw[0]["median_ms"] / fl[0]["median_ms"]
        data["targets"] = t
    return data


def scan_section(scan: dict | None, micro: dict | None = None) -> str:
    if not scan:
        return ("`benchmarks/bench_scan.py` (the kernel benchmark) was not present or not "
                "run (`--no-scan`).")
    head = (f"`python {' '.join(scan['argv'])}`: {scan['status']}"
            + (f" in {scan['wall_s']:.0f} s" if scan.get("wall_s") else "") + ".\n")
    data = honest_scan_data(scan.get("data"), micro)
    out = [head]
    if data is not scan.get("data") and isinstance(data, dict) and any(
            r.get("impl") == OLD_EXP_ROW for r in data.get("scan", [])):
        out += ["This output predates the kernel roofline: its `torch.exp` row is not a floor (it writes L·E·N "
                "elements to memory, which the fused kernel never does). The roofline rows are the compute floor "
                "(4 operations per L·E·N element at this run's fp32 multiply-add rate); the script now measures "
                "its own, memory bound included.", ""]
    tables = [data] if isinstance(data, list) else [
        (data or {}).get(k) for k in ("scan", "aux", "records", "results")]
    for rows in tables:
        if isinstance(rows, list) and rows and all(isinstance(x, dict) for x in rows):
            keys = list(dict.fromkeys(k for x in rows for k in x if not isinstance(x[k], (dict, list))))
            out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            out += ["| " + " | ".join(_fmt_any(x.get(k)) for k in keys) + " |" for x in rows]
            out.append("")
    if isinstance(data, dict) and data.get("targets"):
        import json
        out += ["Targets reported by the script:", "", "```json", json.dumps(data["targets"], indent=1), "```"]
    if len(out) == 1:
        out += ["```", scan.get("stdout", "").strip()[-6000:], "```"]
    return "\n".join(out)


def _latest_scan_json(results_dir: Path) -> dict | None:
    """The newest ``scan_*.json`` that ``benchmarks/bench_scan.py`` wrote on its own, if any."""
    import json

    files = sorted(Path(results_dir).glob("scan_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    try:
        data = json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {"argv": [f"benchmarks/bench_scan.py (run separately; {files[-1].name})"], "status": "ok",
            "wall_s": 0.0, "data": data}


def _fmt_any(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ---------------------------------------------------------------------------------- plots
def plots(data: dict, out_dir: Path) -> list[Path]:
    """PNG files: time and peak memory vs frames per (batch, dtype, device), training bars, roofline."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    records = data["records"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    combos = sorted({(r["spec"]["batch"], r["spec"]["dtype"], r["spec"].get("device", "cpu"))
                     for r in analysis.ok(records) if r["spec"]["mode"] == "infer"})
    for batch, dtype, device in combos:
        match = dict(mode="infer", batch=batch, dtype=dtype, device=device)
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for v in _variants(records, **match):
            rs = sorted((r for r in analysis.ok(records)
                         if all(r["spec"].get(k) == x for k, x in match.items())
                         and _vkey(r["spec"]) == v),
                        key=lambda r: r["spec"]["frames"])
            if not rs:
                continue
            T = [r["spec"]["frames"] for r in rs]
            style = "-o" if v[0].startswith("videomamba") else "--s"
            line, = axes[0].plot(T, [analysis.step_s(r) for r in rs], style, label=_label(v))
            axes[1].plot(T, [analysis.peak_mb(r) for r in rs], style, label=_label(v), color=line.get_color())
            fails = [r for r in records if all(r["spec"].get(k) == x for k, x in match.items())
                     and _vkey(r["spec"]) == v
                     and r["status"] in ("oom", "timeout") and not r.get("inferred")]
            for f in fails:   # an x at the failing frame count, at the height of the last success
                for ax, y in ((axes[0], analysis.step_s(rs[-1])), (axes[1], analysis.peak_mb(rs[-1]))):
                    ax.plot([f["spec"]["frames"]], [y], "x", color=line.get_color(), markersize=9)
                    ax.annotate(STATUS_TEXT[f["status"]], (f["spec"]["frames"], y), fontsize=8,
                                color=line.get_color(), xytext=(4, -10), textcoords="offset points")
        for ax, yl in zip(axes, ("median time per batch (s)", "peak memory (MB, " +
                                 ("CUDA allocated" if device == "cuda" else "process RSS") + ")")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("frames (224²)")
            ax.set_ylabel(yl)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Inference, batch {batch}, {dtype}, {device}")
        fig.tight_layout()
        p = out_dir / f"infer_B{batch}_{dtype}_{device}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    # training bars
    tr = [r for r in records if r.get("spec", {}).get("mode") == "train" and r["spec"].get("device", "cpu") == "cpu"]
    if tr:
        frames = sorted({r["spec"]["frames"] for r in tr})
        variants = _variants(tr, mode="train")
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        width = 0.8 / max(len(variants), 1)
        for j, v in enumerate(variants):
            ts, ms = [], []
            for T in frames:
                r = analysis.find(tr, **_vmatch(v), frames=T, batch=1, dtype="fp32")
                good = r is not None and r["status"] == "ok"
                ts.append(analysis.step_s(r) if good else 0)
                ms.append(analysis.peak_mb(r) if good else 0)
            xs = [i + j * width for i in range(len(frames))]
            axes[0].bar(xs, ts, width, label=_label(v))
            axes[1].bar(xs, ms, width, label=_label(v))
            for x, T in zip(xs, frames):
                r = analysis.find(tr, **_vmatch(v), frames=T, batch=1, dtype="fp32")
                if r is not None and r["status"] in ("oom", "timeout"):
                    for ax in axes:
                        ax.annotate(STATUS_TEXT[r["status"]], (x, 0), xycoords=("data", "axes fraction"),
                                    xytext=(0, 3), textcoords="offset points", rotation=90, fontsize=7,
                                    ha="center", va="bottom")
        for ax, yl in zip(axes, ("training step time (s)", "peak memory (MB, process RSS)")):
            ax.set_xticks([i + (len(variants) - 1) * width / 2 for i in range(len(frames))],
                          [f"{T} frames" for T in frames])
            ax.set_ylabel(yl)
            ax.set_yscale("log")
            ax.grid(True, axis="y", alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("Training step (forward + backward + AdamW), batch 1, fp32, cpu (missing bar: OOM/timeout)")
        fig.tight_layout()
        p = out_dir / "train_cpu.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    # roofline
    rl = [r for r in analysis.ok(records) if "roofline_s" in r and r["spec"]["batch"] == 1
          and analysis.ran_as_user(r)]
    if rl:
        fig, ax = plt.subplots(figsize=(7, 4.6))
        for key in sorted({(workloads.spec_label(r["spec"]), r["spec"]["dtype"]) for r in rl}):
            rs = sorted((r for r in rl if (workloads.spec_label(r["spec"]), r["spec"]["dtype"]) == key),
                        key=lambda r: r["spec"]["frames"])
            T = [r["spec"]["frames"] for r in rs]
            line, = ax.plot(T, [analysis.step_s(r) for r in rs], "-o", label=f"{key[0]} {key[1]} measured")
            ax.plot(T, [r["roofline_s"] for r in rs], ":", color=line.get_color(), label=f"{key[1]} roofline")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("frames (224²), batch 1")
        ax.set_ylabel("inference time (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("VideoMamba inference vs its roofline (a floor: compute or memory)")
        fig.tight_layout()
        p = out_dir / "roofline_cpu.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made


# ---------------------------------------------------------------------------------- page
def write_page(data: dict, page: Path, plot_dir: Path, command: "str | list[str] | None" = None) -> Path:
    page, plot_dir = Path(page), Path(plot_dir)
    records = data["records"]
    analysis.annotate(records, data.get("micro", {}))
    pngs = plots(data, plot_dir)
    rel = {p.name: os.path.relpath(p, page.parent) for p in pngs}
    m = data["machine"]
    hist = data.get("load_history", [])
    loads = [r.get("load_before", [0])[0] for r in records if r.get("load_before")]
    # The 1-min load average before a configuration still counts the previous configuration of this
    # run (it decays over minutes), so the CPU share each child obtained is the test of other load.
    shares = [r["cpu_share"] for r in records if r.get("cpu_share") is not None]
    busy = bool(shares) and (statistics.median(shares) < 0.9 or min(shares) < BUSY_SHARE)
    only = (data.get("settings") or {}).get("only")
    L = [f"# VideoMamba benchmarks: results ({data.get('mode') or 'custom'} run"
         + (f", only the configurations matching `{only}`" if only else "") + ")", ""]
    when = _measured_when(m, hist)
    L += [f"Measured on `{m['hostname']}`: {when}. "
          "Ratios are within this one run; times are medians over the timed runs after warm-up "
          "(see [README](README.md) for what each figure means)." if page.parent.name == "benchmarks"
          else f"Measured on `{m['hostname']}`: {when}. Times are medians."]
    if command:
        cmds = [command] if isinstance(command, str) else list(command)
        L += [""] + (["Command: " + f"`{cmds[0]}`"] if len(cmds) == 1 else
                     ["Commands (one resumed run):", ""] + [f"- `{c}`" for c in cmds])
    if data.get("note"):
        L += ["", f"**Note.** {data['note']}"]
    L += ["", "## Machine", "",
          "| | |", "|---|---|",
          f"| CPU | {m['cpu']} ({', '.join(m.get('cpu_flags', []))}) |",
          f"| cores (usable) | {m['cores']} |", f"| memory | {m.get('mem_total_gb')} GiB |",
          f"| torch / threads | {m['torch']} / {records[0].get('threads') if records else m['torch_threads']} |",
          f"| transformers | {m.get('transformers')} |", f"| python | {m['python']} |",
          f"| scan backend (auto resolves to) | {_backend(records)} |",
          f"| process settings (as a user runs it) | {_process_settings(records, True)} |",
          f"| process settings (tuned rows) | {_process_settings(records, False)} |",
          f"| load average (1/5/15 min) | " + "; ".join(f"{h['when']} {h['load_avg']}" for h in hist) + " |",
          f"| CPU share obtained (median over configurations; 1 = the cores were ours) | "
          f"{_median(shares)} |",
          f"| max 1-min load before a configuration (includes this run's previous one) | "
          f"{max(loads, default=0):.2f} |",
          f"| other load | " + ("**yes: some configurations got a CPU share below 0.9 (median) or "
                                f"{BUSY_SHARE} (any); their times are noisy and pessimistic**" if busy
                                else "none seen: every configuration got its cores") + " |"]
    if m.get("cuda"):
        L.append(f"| GPU | {m['cuda']} |")
    s = data.get("settings", {})
    L += ["", f"Settings: warm-up {s.get('warmup')}, up to {s.get('repeats')} timed runs, per-configuration "
          f"timeout {s.get('timeout_s')} s, memory budget {s.get('mem_limit_mb')} MB"
          + (f", child environment {s['child_env']}" if s.get("child_env") else "") + ".",
          "Cells read `median time / peak memory`; `OOM` = over the memory budget, `timeout` = over the "
          "time budget; `\\*` = not run because fewer frames of the same series already failed; "
          f"`†` = the process got less than {BUSY_SHARE:.0%} of its cores (other load): that time is inflated, "
          "and ratios against unmarked cells are biased; "
          "`‡` = measured in several rounds spread over the run (the configurations the training-time targets "
          "compare, and ours at batch 1 for the roofline targets): the time is the median of the rounds' medians, "
          "the memory the highest peak of the rounds."]
    rounds = [r for r in records if analysis.good_rounds(r)]
    if rounds:
        L += ["", "Rounds (median time of each, in the order they ran): " + "; ".join(
            f"{workloads.spec_label(r['spec'])} {r['spec']['frames']}f: "
            + ", ".join(f"{m:.2f}" for m in analysis.round_medians(r)) + " s" for r in rounds) + "."]
    tg = analysis.targets(records, data.get("micro", {}).get("cpu"))
    L += ["", "## Targets", "", targets_table(tg)]
    if data.get("micro"):
        L += ["", "## Machine ceilings (roofline inputs)", "", micro_table(data["micro"])]
    rt = roofline_table([r for r in records if r.get("spec", {}).get("device", "cpu") == "cpu"])
    if rt:
        L += ["", "## Roofline: VideoMamba inference", "",
              "A floor, never above the time the work can take: max(compute, memory). Compute = every "
              "multiply-add outside the scan (full count, `videomamba.models.flops`) at the measured matmul "
              "rate (bf16 under bf16 autocast) + the scans' "
              f"{roofline_mod.SCAN_OPS_PER_ELEM} operations per state element (exp, two products, one "
              "multiply-add; depth·2·L·E·N elements) at the fp32 multiply-add rate. Memory = every weight and "
              "the input read once at the copy bandwidth measured for that working set "
              "(`benchmarks/harness/roofline.py`).", "",
              roofline_summary_table(records, data.get("micro", {}).get("cpu")), "", rt]
        if "roofline_cpu.png" in rel:
            L += ["", f"![roofline]({rel['roofline_cpu.png']})"]
    devices = sorted({r["spec"].get("device", "cpu") for r in records if r.get("spec", {}).get("kind", "model") == "model"})
    for device in devices:
        title = "Inference" if device == "cpu" else f"GPU ({device}) inference"
        L += ["", f"## {title}"]
        combos = sorted({(r["spec"]["batch"], r["spec"]["dtype"]) for r in records
                         if r["spec"].get("mode") == "infer" and r["spec"].get("device", "cpu") == device})
        for batch, dtype in combos:
            L += ["", f"### batch {batch}, {dtype}", "", frames_table(records, "infer", batch, dtype, device)]
            name = f"infer_B{batch}_{dtype}_{device}.png"
            if name in rel:
                L += ["", f"![inference batch {batch} {dtype}]({rel[name]})"]
        if device == "cpu":
            for T in (64, 16):
                t = ratio_table(records, T)
                if t:
                    L += ["", f"### At {T} frames, batch 1, fp32: relative to VideoMamba-Ti", "", t]
        combos = sorted({(r["spec"]["batch"], r["spec"]["dtype"]) for r in records
                         if r["spec"].get("mode") == "train" and r["spec"].get("device", "cpu") == device})
        for batch, dtype in combos:
            L += ["", f"## Training step{'' if device == 'cpu' else ' (' + device + ')'}: batch {batch}, {dtype}", "",
                  "Forward + cross-entropy + backward + AdamW step. `+ckpt` = gradient checkpointing per block.", "",
                  frames_table(records, "train", batch, dtype, device)]
            if device == "cpu" and "train_cpu.png" in rel:
                L += ["", f"![training]({rel['train_cpu.png']})"]
    st = scaling_table(records)
    if st:
        L += ["", "## Scaling with frames", "",
              "Least-squares slope of log(value) against log(frames): 1 is linear, 2 quadratic.", "", st]
    L += ["", "## Kernels: selective scan", "",
          scan_section(data.get("scan") or _latest_scan_json(plot_dir), data.get("micro", {}).get("cpu"))]
    ps = profile_section(records)
    if ps:
        L += ["", "## Profiles", "", ps]
    bad = [r for r in records if r["status"] in ("error",)]
    if bad:
        L += ["", "## Errors", ""] + [f"- `{r['id']}`: {r.get('error', '')[:300]}" for r in bad]
    page.parent.mkdir(parents=True, exist_ok=True)
    from videomamba.fileio import atomic_write_text
    atomic_write_text(page, "\n".join(L) + "\n")
    return page


def _median(xs) -> str:
    if not xs:
        return "?"
    xs = sorted(xs)
    return f"{xs[len(xs) // 2]:.2f}"


def _process_settings(records, as_user: bool) -> str:
    """The OpenMP, malloc and large-tensor allocator settings the records of one kind ran with
    (their distinct values; the allocator per model family: ours installs its own)."""
    rs = [r for r in records if r.get("spec", {}).get("kind", "model") == "model"
          and analysis.ran_as_user(r) == as_user]
    if not rs:
        return "none in this run"
    omp = sorted({str(r.get("openmp") or "not recorded") for r in rs})
    mal = sorted({str(r.get("malloc") or "not recorded") for r in rs})
    line = f"OpenMP: {' / '.join(omp)}; malloc: {' / '.join(mal)}"
    if any("cpu_allocator" in r for r in rs):
        fams = {}
        for r in rs:
            if r.get("cpu_allocator"):
                fam = "ours" if workloads.is_ours(r["spec"]["model"]) else "peers"
                fams.setdefault(fam, set()).add(str(r["cpu_allocator"]))
        line += "; large tensors: " + "; ".join(f"{f}: {' / '.join(sorted(v))}" for f, v in sorted(fams.items()))
    return line


def _backend(records) -> str:
    names = sorted({r.get("scan_backend") for r in records if r.get("scan_backend")
                    and r.get("spec", {}).get("kind", "model") == "model"
                    and workloads.is_ours(r["spec"]["model"])})
    return ", ".join(names) or "?"
