"""The measured process: ``python -m harness.child SPEC_JSON OUT_JSON`` (with ``benchmarks/`` on the path).

Runs one configuration and writes one JSON record to OUT_JSON (rewritten after every timed run,
so a parent that has to kill it still finds the runs that finished). Kinds of spec:

- ``model``: an inference pass (``mode="infer"``: eval, ``torch.inference_mode``) or a training
  step (``mode="train"``: forward, cross-entropy, backward, AdamW step, zero_grad) of one model.
  ``warmup`` untimed runs, then up to ``repeats`` timed runs; fewer when the first runs show that
  they would not fit in ``budget_s`` (``n`` in the record says how many ran). Optional
  ``profile``: after timing, one more run under ``torch.profiler``; the top operators by self CPU
  time (and, for training, by memory) go into the record. Optional ``saved``: bytes that autograd
  keeps for backward, per module type (training only). Optional ``split`` (a number of passes):
  that many more runs with their time split into the compiled kernels, matrix products, other
  operators and the rest (:func:`time_split`).
- ``micro``: the machine's own ceilings for the roofline: fp32 / bf16 matmul throughput and
  the copy bandwidth per working set.

A child runs as a user's ``videomamba`` process does (``as_user`` in the record): OpenMP waits
passively unless the environment says otherwise, and glibc's malloc keeps its own settings unless
the configuration's environment has ``VIDEOMAMBA_MALLOC_TUNE=1`` (then ``as_user`` is false). Every child imports the same modules (torch, videomamba and, when installed, transformers)
before anything is measured, so that the peak RSS of ours and of the peers share one baseline.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

WARMUP_MIN_S = 0.5
SHORT_RUN_S = 0.25


def _rss_mb(field: str = "VmRSS") -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Writer:
    def __init__(self, path: str, record: dict):
        self.path, self.record = path, record

    def flush(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.record, f)
        os.replace(tmp, self.path)


def _is_oom(e: BaseException) -> bool:
    msg = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in msg or "can't allocate memory" in msg


def run_model(spec: dict, rec: dict, w: _Writer) -> None:
    import torch

    from . import workloads

    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = workloads.build_model(spec).to(device)
    train = spec["mode"] == "train"
    model.train(train)
    x = workloads.make_input(spec, device)
    y = torch.randint(0, workloads.NUM_CLASSES, (spec["batch"],), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05) if train else None
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[spec.get("dtype", "fp32")]

    def step():
        ac = torch.autocast(device.type, dtype=dtype) if dtype is not None else _null()
        if train:
            with ac:
                logits = workloads.forward(model, spec, x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), ac:
                workloads.forward(model, spec, x)
        if cuda:
            torch.cuda.synchronize()

    rec["params"] = sum(p.numel() for p in model.parameters())
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        rec["baseline_cuda_mb"] = torch.cuda.memory_allocated() / 2**20
    rec["baseline_rss_mb"] = _rss_mb()
    rec["status"] = "running"
    budget = float(spec.get("budget_s", 60.0))
    t_start = time.perf_counter()
    # warm-up: at least `warmup` runs, and at least WARMUP_MIN_S of them for fast configurations
    while len(rec["warmup_s"]) < max(1, int(spec.get("warmup", 1))) or (
            sum(rec["warmup_s"]) < WARMUP_MIN_S and len(rec["warmup_s"]) < 20):
        t0 = time.perf_counter()
        step()
        rec["warmup_s"].append(time.perf_counter() - t0)
        w.flush()
    repeats = max(1, int(spec.get("repeats", 3)))
    if rec["warmup_s"][-1] < SHORT_RUN_S:      # cheap runs: more of them, the median gets steadier
        repeats *= 3
    while len(rec["times_s"]) < repeats:
        last = rec["times_s"][-1] if rec["times_s"] else rec["warmup_s"][-1]
        if rec["times_s"] and time.perf_counter() - t_start + last > budget:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        rec["times_s"].append(time.perf_counter() - t0)
        rec["cpu_s"].append(time.process_time() - c0)
        rec["peak_rss_mb"] = _rss_mb("VmHWM")
        if cuda:
            rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        w.flush()
    ts = sorted(rec["times_s"])
    rec["n"] = len(ts)
    rec["median_s"] = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
    rec["min_s"] = ts[0]
    # CPU seconds of all threads / (wall * threads): near 1 on an idle machine, lower when other
    # processes took the cores (then the times are pessimistic)
    if not cuda and sum(rec["times_s"]) > 0:
        rec["cpu_share"] = sum(rec["cpu_s"]) / (sum(rec["times_s"]) * rec["threads"])
    # which allocator served the large tensors: ours installs its block cache when its kernels load
    kernels = sys.modules.get("videomamba.ops.cpu_kernel")
    state = getattr(kernels, "allocator_state", None)       # (older revisions have none: ab_infer.py)
    if kernels is None:
        rec["cpu_allocator"] = "system (videomamba's kernels not loaded)"
    else:
        rec["cpu_allocator"] = state() if state else "system (this revision has no allocator of its own)"
    rec["status"] = "ok"
    w.flush()
    if spec.get("saved") and train:
        rec["saved_for_backward"] = saved_tensor_bytes(model, spec, x)
        w.flush()
    if spec.get("profile"):
        rec["profile"] = profile_step(step, train, int(spec.get("profile_top", 15)))
        w.flush()
    if spec.get("memtrace"):
        rec["memtrace"] = live_memory_trace(step, [*model.parameters(), *model.buffers(), x])
        w.flush()
    if spec.get("split"):
        rec["split"] = time_split(step, int(spec["split"]))
        w.flush()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def saved_tensor_bytes(model, spec: dict, x) -> dict:
    """MB that autograd keeps for backward during one forward, per module type (deduplicated by
    storage). This is what a memory-light backward would recompute instead of storing."""
    import torch

    from . import workloads

    stack: list[str] = []
    seen: set = set()
    per: dict[str, float] = {}
    handles = []
    def enter(mod, args):
        stack.append(type(mod).__name__)          # hooks must return None: a value replaces args/output

    def leave(mod, args, out):
        stack.pop()

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(enter))
        handles.append(mod.register_forward_hook(leave))

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        except Exception:
            key = (id(t), 0)
        if key not in seen:
            seen.add(key)
            where = stack[-1] if stack else "(top)"
            per[where] = per.get(where, 0.0) + key[1] / 2**20
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = workloads.forward(model, spec, x)
        del out
    finally:
        for h in handles:
            h.remove()
    total = sum(per.values())
    return {"total_mb": total, "by_module_mb": dict(sorted(per.items(), key=lambda kv: -kv[1]))}


def live_memory_trace(step, known=(), top: int = 12) -> dict:
    """Peak of live tensor bytes during one step, and which tensors were alive at that peak.

    Every tensor an operator creates is tracked by its storage (views and in-place results are
    not new memory) until the storage is freed. The answer is allocator-independent (no malloc
    slack, no fragmentation), so it says which ops' outputs make the peak: what to fuse, free
    earlier or recompute. Kernels called outside the dispatcher (our compiled scan and conv
    through pybind) are invisible as ops; their outputs are counted when a tracked op first
    reads them (as "opaque kernel output"). ``known``: tensors that exist before the step
    (weights, input), never counted.
    """
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    known_ptrs = {t.untyped_storage().data_ptr() for t in known}

    class Live(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live: dict[int, tuple[str, tuple, int]] = {}
            self.cur = self.peak = 0
            self.at_peak: list = []

        def _free(self, key):
            item = self.live.pop(key, None)
            if item is not None:
                self.cur -= item[2]

        def _track(self, t, name):
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self.live or key in known_ptrs:
                return
            self.live[key] = (name, tuple(t.shape), n)
            self.cur += n
            weakref.finalize(st, self._free, key)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            for a in tree_flatten((args, kwargs))[0]:
                if isinstance(a, torch.Tensor) and a.device.type != "meta" and not a._is_view():
                    self._track(a, "opaque kernel output")
            out = func(*args, **(kwargs or {}))
            inputs = None
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.device.type == "meta" or t._is_view():
                    continue
                st = t.untyped_storage()
                key, n = st.data_ptr(), st.nbytes()
                if n == 0 or key in self.live:
                    continue
                if inputs is None:       # in-place ops and no-op casts hand back an input's memory
                    inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                              if isinstance(a, torch.Tensor)}
                if key in inputs:
                    continue
                self._track(t, func.__name__)
            if self.cur > self.peak:
                self.peak = self.cur
                self.at_peak = sorted(self.live.values(), key=lambda v: -v[2])
            return out

    mode = Live()
    with mode:
        step()
    groups: dict[str, list] = {}
    for name, shape, n in mode.at_peak:
        g = groups.setdefault(f"{name} {list(shape)}", [0, 0.0])
        g[0] += 1
        g[1] += n / 2**20
    rows = sorted(({"op_shape": k, "count": c, "mb": mb} for k, (c, mb) in groups.items()), key=lambda r: -r["mb"])
    return {"peak_live_mb": mode.peak / 2**20, "at_peak": rows[:top],
            "at_peak_other_mb": sum(r["mb"] for r in rows[top:])}


def profile_step(step, train: bool, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=train, record_shapes=False) as prof:
        t0 = time.perf_counter()
        step()
        wall_ms = (time.perf_counter() - t0) * 1e3
    ka = prof.key_averages()
    recorded = sum(e.self_cpu_time_total for e in ka) / 1e3
    rows = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
            for e in sorted(ka, key=lambda e: -e.self_cpu_time_total)[:top]]
    # custom kernels called through pybind (not aten ops) and Python itself do not show up as
    # operators: their time is the wall time that no operator accounts for
    rows.append({"op": "(not an operator: custom kernels, Python)", "self_cpu_ms": max(wall_ms - recorded, 0.0),
                 "calls": 0})
    rows.sort(key=lambda e: -e["self_cpu_ms"])
    for e in rows:
        e["share"] = e["self_cpu_ms"] / max(wall_ms, recorded)
    out = {"wall_ms": wall_ms, "by_self_cpu": rows}
    if train:
        mem = sorted(ka, key=lambda e: -max(e.self_cpu_memory_usage, 0))[:top]
        out["by_self_cpu_memory"] = [{"op": e.key, "self_cpu_memory_mb": e.self_cpu_memory_usage / 2**20,
                                      "calls": e.count} for e in mem if e.self_cpu_memory_usage > 0]
    return out


# torch operators counted as matrix products in time_split (linear layers decompose into them)
# (under autocast a convolution reaches the dispatch mode as conv1d / conv2d / conv3d)
MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                        "aten::linear", "aten::convolution", "aten::_convolution", "aten::conv1d",
                        "aten::conv2d", "aten::conv3d"})
# the compiled kernels' entry points (videomamba/ops/csrc) and the part each one is counted in
KERNEL_PARTS = {"fwd": "scan_kernel", "bwd": "scan_kernel", "conv_fwd": "conv_kernel",
                "conv_bwd": "conv_kernel", "rms_norm_fwd": "norm_kernel", "rms_norm_bwd": "norm_kernel"}
# the parts of time_split, in the order reports list them
SPLIT_PARTS = ("scan_kernel", "matmul", "conv_kernel", "norm_kernel", "other_ops", "rest")


def time_split(step, passes: int) -> dict:
    """``passes`` more runs of ``step``, each with its wall time split by where it goes.

    Parts: the compiled kernels (scan, causal conv, RMSNorm; timed around every call into the
    extension module), torch's matrix products (:data:`MATMUL_OPS`) and its other operators (every
    operator call timed through a dispatch mode, which sees them after autocast), and ``rest``: the
    pass's wall time less all of those (Python, module calls, dispatch, the timing itself). Per
    part: the median over the passes, in seconds; ``wall_s`` is the instrumented passes' median
    (slower than an uninstrumented run by the timing's own cost), ``top_ops`` the operators that
    took the most time in the last pass."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    kernels = sys.modules.get("videomamba.ops.cpu_kernel")
    mod = kernels.load() if kernels is not None else None
    acc: dict[str, float] = {}
    per_op: dict[str, float] = {}

    def add(part: str, dt: float, op: str | None = None) -> None:
        acc[part] = acc.get(part, 0.0) + dt
        if op is not None:
            per_op[op] = per_op.get(op, 0.0) + dt

    def wrap(name, fn, part):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                add(part, time.perf_counter() - t0, "kernel " + name)
        return timed

    class _OpTimer(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            if name.startswith("videomamba::"):      # a kernel's custom op: the kernel call is timed
                return func(*args, **(kwargs or {}))
            t0 = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            add("matmul" if name in MATMUL_OPS else "other_ops", time.perf_counter() - t0, name)
            return out

    saved = {}
    if mod is not None:
        for name, part in KERNEL_PARTS.items():
            if hasattr(mod, name):
                saved[name] = getattr(mod, name)
                setattr(mod, name, wrap(name, saved[name], part))
    runs = {p: [] for p in SPLIT_PARTS}
    walls = []
    try:
        for _ in range(max(1, passes)):
            acc.clear()
            per_op.clear()
            t0 = time.perf_counter()
            with _OpTimer():
                step()
            wall = time.perf_counter() - t0
            walls.append(wall)
            for p in SPLIT_PARTS[:-1]:
                runs[p].append(acc.get(p, 0.0))
            runs["rest"].append(max(wall - sum(acc.values()), 0.0))
    finally:
        for name, fn in saved.items():
            setattr(mod, name, fn)

    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:12]
    return {"passes": len(walls), "wall_s": statistics.median(walls),
            "parts_s": {p: statistics.median(v) for p, v in runs.items()},
            "kernels_loaded": mod is not None,
            "top_ops": [{"op": k, "s": v} for k, v in top]}


def run_micro(spec: dict, rec: dict, w: _Writer) -> None:
    """The machine's ceilings for the rooflines (:func:`harness.roofline.measure_peaks`): fp32 / bf16
    matmul throughput (FLOP/s, 2 per multiply-add) and copy bandwidth per working set."""
    import torch

    from .roofline import measure_peaks

    sizes = spec.get("matmul_sizes", [1024, 2048] if spec.get("device", "cpu") == "cpu" else [4096, 8192])
    kw = {"copy_sizes_mb": spec["copy_sizes_mb"]} if spec.get("copy_sizes_mb") else {}

    def flush(part):
        rec.update(part)
        w.flush()

    rec.update(measure_peaks(torch, spec.get("device", "cpu"), reps=int(spec.get("repeats", 5)),
                             matmul_sizes=sizes, flush=flush, **kw))
    rec["status"] = "ok"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    out_path = argv[1]
    rec: dict = {"status": "starting", "warmup_s": [], "times_s": [], "cpu_s": []}
    w = _Writer(out_path, rec)
    # As a user's `videomamba` process runs, ours and the peers alike: the command's process defaults
    # (before torch loads), and the malloc tune only where the configuration's environment asks for it.
    from .analysis import TUNING_VARS
    rec["as_user"] = not any(k in os.environ for k in TUNING_VARS)
    rt = _early_runtime()
    rec["openmp"] = rt.prefer_passive_openmp()
    rec["malloc"] = rt.tune_malloc() if rt.malloc_tune_requested() else rt.malloc_state()
    # the same imports for every configuration: equal RSS baselines for ours and the peers
    import torch
    import videomamba  # noqa: F401
    try:  # the modeling modules too: transformers imports them lazily, and they cost ~90 MB RSS
        from transformers import TimesformerForVideoClassification, VideoMAEForVideoClassification  # noqa: F401
    except ImportError:
        pass
    threads = spec.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    rec["threads"] = torch.get_num_threads()
    if spec.get("scan_backend"):
        os.environ["VIDEOMAMBA_SCAN_BACKEND"] = spec["scan_backend"]
    # (ours only: resolving the backend loads our kernels, which install their allocator; a peer's
    # process runs without them, as a user of transformers does)
    from .workloads import is_ours
    ours = spec.get("kind", "model") == "model" and is_ours(spec["model"])
    rec["scan_backend"] = _scan_backend_name(spec) if ours else None
    rec["import_rss_mb"] = _rss_mb()
    w.flush()
    try:
        if spec.get("kind", "model") == "micro":
            run_micro(spec, rec, w)
        else:
            run_model(spec, rec, w)
    except Exception as e:  # noqa: BLE001 -- the record says what went wrong
        rec["status"] = "oom" if _is_oom(e) else "error"
        rec["error"] = f"{type(e).__name__}: {str(e)[:2000]}"
        import traceback
        rec["traceback"] = traceback.format_exc()[-4000:]
    rec["peak_rss_mb"] = _rss_mb("VmHWM")
    w.flush()
    return 0


def _early_runtime():
    """``videomamba/runtime.py`` loaded on its own: importing it through the package would load torch
    (and with it the OpenMP runtime) before the process defaults are set."""
    import importlib.util
    from pathlib import Path

    pkg = importlib.util.find_spec("videomamba")
    path = Path(list(pkg.submodule_search_locations)[0]) / "runtime.py"
    spec = importlib.util.spec_from_file_location("_videomamba_runtime_early", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _scan_backend_name(spec: dict) -> str | None:
    """Which selective-scan implementation ``auto`` (or the override) resolves to, for the record."""
    try:
        from videomamba.ops import backend
        dev = spec.get("device", "cpu")
        if hasattr(backend, "resolve"):
            return backend.resolve(spec.get("scan_backend"), dev)
        import torch
        impl = backend.get_scan_impl(spec.get("scan_backend"), torch.empty(1, 1, 1, device=dev))
        return getattr(impl, "__name__", type(impl).__name__)
    except Exception as e:  # noqa: BLE001
        return f"unknown ({type(e).__name__}: {e})"[:200]


if __name__ == "__main__":
    sys.exit(main())
