"""Rooflines that are floors: the least time the work can take on this machine, never more.

A roofline here is ``max(compute, memory)``:

- **compute**: every multiply-add that must happen, at the machine's measured multiply-add rate
  (half the best ``torch.mm`` FLOP/s: one fused multiply-add per lane per cycle is what a matmul
  sustains; nothing elementwise issues faster). For the selective scan, each element of the
  ``L x E x N`` state grid, per direction, needs at least :data:`SCAN_OPS_PER_ELEM` operations:
  the ``exp`` of ``delta * A`` (counted as a single operation, although a vectorised ``exp`` takes
  ten or more; the product ``delta * A`` folds into its range reduction), the product
  ``(delta * u) * B``, the recurrence's multiply-add ``h = dA * h + dBu`` and the output's
  multiply-add ``y += C * h``. A kernel cannot do less without knowing more about ``A`` than its
  values.
- **memory**: the bytes that must be read or written at least once (for the scan: its inputs
  ``u``, ``delta``, ``z``, ``B``, ``C``, ``A``, ``D``, the delta bias and its output; for a model:
  its weights and its input), at the copy bandwidth measured for a working set no larger than
  that (smaller working sets copy at least as fast, so the bandwidth used is never an
  underestimate).

An earlier roofline timed ``torch.exp`` over ``L x E x N`` materialised elements and called that
the scan's floor. It is not one: ``torch.exp`` writes its ``L x E x N`` result to memory, which a
fused scan never does, so the fused kernel ran in 0.72x of that "floor". Every bound here is a
count of unavoidable work divided by a measured peak rate, so a measured time cannot be below it
(up to the accuracy of the measured peaks).
"""
from __future__ import annotations

SCAN_OPS_PER_ELEM = 4      # exp(delta*A), (delta*u)*B, h = dA*h + dBu, y += C*h
FP32_BYTES = 4


def scan_elements(gflops: dict) -> float:
    """Elements of the scans' state grid (L x E x N, per direction and layer, times batch).

    ``gflops`` is a record's analytic count (:func:`harness.workloads.gflops`): ``scan_elems``
    when present, else the full count's scan share, which charges 9 multiply-adds per element."""
    if gflops.get("scan_elems") is not None:
        return float(gflops["scan_elems"])
    return gflops.get("gmacs_scan", 0.0) * 1e9 / 9.0


def scan_min_ops(B: int, L: int, E: int, N: int, directions: int = 1) -> float:
    """Least operations of ``directions`` selective scans of shape (B, E, L) with state size N."""
    return float(SCAN_OPS_PER_ELEM * B * L * E * N * directions)


def scan_min_bytes(B: int, L: int, E: int, N: int, itemsize: int = FP32_BYTES) -> float:
    """Least bytes one forward scan moves: reads u, delta, z (B, E, L), B and C (B, N, L), A (E, N),
    D and the delta bias (E); writes y (B, E, L)."""
    return float(itemsize * (4 * B * E * L + 2 * B * N * L + E * N + 2 * E))


def bandwidth_for(nbytes: float, by_size: dict | None) -> float | None:
    """The copy bandwidth (bytes moved per second) to charge ``nbytes`` of traffic at.

    ``by_size`` maps a measured working set (bytes moved by one copy: read + written) to its
    best bandwidth. Taken: the measurement at the largest working set not above ``nbytes``
    (data that size or smaller sits at least as high in the cache hierarchy), else the fastest
    one measured. None when nothing was measured."""
    if not by_size:
        return None
    pts = sorted((float(k), float(v)) for k, v in by_size.items() if v)
    if not pts:
        return None
    below = [v for k, v in pts if k <= nbytes]
    return below[-1] if below else max(v for _, v in pts)


def floor_s(macs: float, mac_rate: float, nbytes: float = 0.0, by_size: dict | None = None) -> dict:
    """``{"compute_s", "memory_s", "floor_s", "bound"}``: ``macs`` multiply-adds at ``mac_rate`` per
    second, ``nbytes`` at :func:`bandwidth_for`; the floor is the larger (memory_s None when no
    bandwidth was measured: then the compute bound alone)."""
    if not mac_rate or mac_rate <= 0:
        raise ValueError(f"mac_rate must be a positive measured rate, got {mac_rate!r}")
    compute = macs / mac_rate
    bw = bandwidth_for(nbytes, by_size) if nbytes else None
    memory = nbytes / bw if bw else None
    floor = max(compute, memory or 0.0)
    return {"compute_s": compute, "memory_s": memory, "floor_s": floor,
            "bound": "memory" if memory is not None and memory > compute else "compute"}


def model_roofline(gflops: dict, micro: dict, dtype: str = "fp32", batch: int = 1,
                   input_elems: float | None = None) -> dict | None:
    """Inference roofline of a VideoMamba record: the linear layers' multiply-adds (full count less
    the scan) at the matmul rate of ``dtype`` plus the scans' :data:`SCAN_OPS_PER_ELEM` per element
    at the fp32 rate (the scan runs in fp32 under autocast), against reading every weight (fp32)
    and the input once. None without the measured matmul rates."""
    peak = micro.get("matmul_bf16_flops" if dtype == "bf16" else "matmul_fp32_flops")
    peak32 = micro.get("matmul_fp32_flops")
    if not peak or not peak32 or "gmacs_linear" not in gflops:
        return None
    linear_s = gflops["gmacs_linear"] * 1e9 / (peak / 2.0)
    scan_s = SCAN_OPS_PER_ELEM * scan_elements(gflops) / (peak32 / 2.0)
    nbytes = FP32_BYTES * (float(gflops.get("params") or 0) + float(input_elems or 0))
    bw = bandwidth_for(nbytes, micro.get("copy_bytes_per_s_by_size")) if nbytes else None
    compute = linear_s + scan_s
    memory = nbytes / bw if bw else None
    return {"compute_s": compute, "linear_s": linear_s, "scan_s": scan_s, "memory_s": memory,
            "roofline_s": max(compute, memory or 0.0),
            "bound": "memory" if memory is not None and memory > compute else "compute"}


# ------------------------------------------------------------------------ measuring the peaks
COPY_SIZES_MB = (1, 4, 16, 64, 256)


def measure_peaks(torch, device="cpu", reps: int = 5, matmul_sizes=(1024, 2048),
                  copy_sizes_mb=COPY_SIZES_MB, flush=None) -> dict:
    """The machine's ceilings: best fp32 / bf16 ``torch.mm`` FLOP/s (2 per multiply-add) over
    ``matmul_sizes`` and the best copy bandwidth (bytes read + written per second) per working set.
    The best run of ``reps`` counts (noise only ever slows a run down)."""
    import time

    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def best_rate(fn, work: float) -> float:
        fn()
        sync()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return work / min(ts)

    out: dict = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {}
        for n in matmul_sizes:
            a = torch.randn(n, n, device=dev, dtype=dt)
            b = torch.randn(n, n, device=dev, dtype=dt)
            c = torch.empty(n, n, device=dev, dtype=dt)
            rates[n] = best_rate(lambda: torch.mm(a, b, out=c), 2.0 * n ** 3)
        out[f"matmul_{name}_flops"] = max(rates.values())
        out[f"matmul_{name}_by_size"] = {str(k): v for k, v in rates.items()}
        if flush:
            flush(out)
    bw = {}
    for mb in copy_sizes_mb:
        n = int(mb * 2**20) // 4
        src = torch.randn(n, device=dev)
        dst = torch.empty_like(src)
        bw[str(2 * n * 4)] = best_rate(lambda: dst.copy_(src), 2.0 * n * 4)
        del src, dst
    out["copy_bytes_per_s_by_size"] = bw
    return out
