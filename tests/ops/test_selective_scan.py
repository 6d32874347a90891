"""Every fast scan path against the oracle: outputs and all gradients.

Tolerances (bound = rtol * |expected| + atol * max|expected|, elementwise):
- fp32: both sides run fp32 with different summation orders; observed errors are ~1e-7 of the
  scale, so rtol = atol = 2e-5 has two orders of margin and still catches any wrong term.
- bf16 / fp16 inputs: the oracle runs in fp32 on the same rounded inputs; the fast path computes
  in fp32 too and rounds once to the input dtype, so rtol is half an ulp (2^-8 for bf16, 2^-11
  for fp16) and atol stays at the fp32 level.
- long L: fp32 against a float64 oracle; rtol = atol = 1e-4 allows the fp32 rounding carried by
  the recurrence over 8192 steps.
"""
from __future__ import annotations

import pytest
import torch

from videomamba.ops import selective_scan, selective_scan_ref
from videomamba.ops.scan_torch import selective_scan_torch

from .helpers import (ARG_NAMES, assert_close_scaled, cpu_kernel_or_skip, run_with_grads,
                      scan_f64, scan_inputs)

IMPLS = ["cpu", "torch"]
SHAPES = [  # (B, E, N, L, G): partial lane blocks, L = 1, odd N, groups not multiples of 16
    (2, 40, 16, 203, None),
    (1, 16, 16, 1, None),
    (2, 12, 5, 67, 3),
    (1, 24, 8, 130, 2),
    (3, 17, 4, 64, None),
]
FLAGS = [
    dict(D=True, z=True, delta_bias=True, delta_softplus=True, return_last_state=True),
    dict(D=False, z=False, delta_bias=False, delta_softplus=False, return_last_state=False),
    dict(D=True, z=False, delta_bias=True, delta_softplus=False, return_last_state=True),
    dict(D=False, z=True, delta_bias=False, delta_softplus=True, return_last_state=False),
]


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "cpu":
        cpu_kernel_or_skip()
    return request.param


def make(shape, flags, seed=0):
    Bz, E, N, L, G = shape
    softplus = flags["delta_softplus"]
    # Without softplus, delta is taken as already positive (the caller applied softplus).
    x = scan_inputs(Bz, E, N, L, G, seed=seed, D=flags["D"], z=flags["z"],
                    delta_bias=flags["delta_bias"], delta_lo=-3.0 if softplus else 0.05,
                    delta_hi=1.0)
    if x["delta_bias"] is not None and not softplus:
        x["delta_bias"] = x["delta_bias"].abs() * 0.2
    kw = dict(delta_softplus=softplus, return_last_state=flags["return_last_state"])
    return x, kw


def compare(impl, x, kw, rtol, atol, oracle_inputs=None):
    dt = x["u"].dtype
    outs, grads = run_with_grads(selective_scan, x, backend=impl, out_dtype=dt, **kw)
    ref_outs, ref_grads = run_with_grads(selective_scan_ref, oracle_inputs or x, out_dtype=dt, **kw)
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert a.dtype == (x["u"].dtype if i == 0 else torch.float32)
        assert_close_scaled(a, b, rtol, atol, name=f"output {i}")
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        assert grads[k].dtype == x[k].dtype, f"grad {k} dtype"
        assert_close_scaled(grads[k], ref_grads[k], rtol, atol, name=f"grad {k}")


@pytest.mark.parametrize("flags", FLAGS, ids=["all", "plain", "D-bias-last", "z-softplus"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_oracle(impl, shape, flags):
    x, kw = make(shape, flags)
    compare(impl, x, kw, 2e-5, 2e-5)


@pytest.mark.parametrize("dtype,rtol", [(torch.bfloat16, 2.0 ** -8), (torch.float16, 2.0 ** -11)])
@pytest.mark.parametrize("all_low", [False, True], ids=["mixed", "all-low"])
def test_low_precision_inputs(impl, dtype, rtol, all_low):
    """As the mixer under autocast: u, delta, B, C, z low precision, A / D / bias fp32 (or all low)."""
    x, kw = make((2, 40, 16, 97, None), FLAGS[0], seed=3)
    low = ("u", "delta", "B", "C", "z") + (("A", "D", "delta_bias") if all_low else ())
    xl = {k: (v.to(dtype) if k in low else v) for k, v in x.items()}
    oracle = {k: (None if v is None else v.float()) for k, v in xl.items()}
    compare(impl, xl, kw, rtol, 2e-5, oracle_inputs=oracle)


def test_non_contiguous_inputs(impl):
    Bz, E, N, L = 2, 20, 6, 45
    x, kw = make((Bz, E, N, L, None), FLAGS[0], seed=4)
    nc = {
        "u": x["u"].transpose(1, 2).contiguous().transpose(1, 2),
        "delta": x["delta"].transpose(1, 2).contiguous().transpose(1, 2),
        "z": x["z"].transpose(1, 2).contiguous().transpose(1, 2),
        "B": x["B"].transpose(1, 2).contiguous().transpose(1, 2),
        "C": torch.stack([x["C"], x["C"]], -1)[..., 0],  # stride 2 along L
        "A": x["A"].t().contiguous().t(),
        "D": torch.stack([x["D"], x["D"]], -1)[:, 1],
        "delta_bias": x["delta_bias"],
    }
    assert not any(nc[k].is_contiguous() for k in ("u", "delta", "z", "B", "C", "A", "D"))
    compare(impl, nc, kw, 2e-5, 2e-5, oracle_inputs=x)


@pytest.fixture(scope="module")
def long_case():
    """L = 8192 with trained-like large steps: softplus(delta) up to ~10, A down to -16."""
    Bz, E, N, L = 1, 16, 16, 8192
    x = scan_inputs(Bz, E, N, L, seed=5, delta_lo=-6.0, delta_hi=10.0)
    x["A"] = -torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1)
    kw = dict(delta_softplus=True, return_last_state=True)
    expected = run_with_grads(scan_f64, x, **kw)
    return x, kw, expected


def test_long_sequence_large_delta(impl, long_case):
    x, kw, (ref_outs, ref_grads) = long_case
    assert torch.nn.functional.softplus(x["delta"] + x["delta_bias"][:, None]).max() > 9.0
    outs, grads = run_with_grads(selective_scan, x, backend=impl, **kw)
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert_close_scaled(a, b, 1e-4, 1e-4, name=f"output {i}")
    for k in grads:
        assert_close_scaled(grads[k], ref_grads[k], 1e-4, 1e-4, name=f"grad {k}")


def test_torch_path_segments_and_chunks_agree():
    """Several checkpointed segments and a chunk that does not divide L give the same function."""
    x, kw = make((2, 12, 5, 150, 3), FLAGS[0], seed=6)
    ref_outs, ref_grads = run_with_grads(selective_scan_ref, x, **kw)
    for chunk, seg in [(7, 12 * 5 * 2 * 21), (32, 1 << 22), (1, 1 << 22), (200, 1 << 22)]:
        outs, grads = run_with_grads(selective_scan_torch, x, chunk=chunk, segment_elems=seg, **kw)
        for a, b in zip(outs, ref_outs):
            assert_close_scaled(a, b, 2e-5, 2e-5, name=f"out chunk={chunk}")
        for k in grads:
            assert_close_scaled(grads[k], ref_grads[k], 2e-5, 2e-5, name=f"grad {k} chunk={chunk}")


def test_empty_sequence(impl):
    x, kw = make((2, 8, 4, 0, None), FLAGS[0])
    out, last = selective_scan(**x, backend=impl, **kw)
    assert out.shape == (2, 8, 0) and last.shape == (2, 8, 4) and not last.any()


def test_no_grad_path_matches_autograd_path(impl):
    x, kw = make((2, 40, 16, 50, None), FLAGS[0], seed=7)
    with torch.no_grad():
        out, last = selective_scan(**x, backend=impl, **kw)
    outs, _ = run_with_grads(selective_scan, x, backend=impl, **kw)
    torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    torch.testing.assert_close(last, outs[1], rtol=0, atol=0)


def _saved_bytes(fn, x, **kw):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    xs = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in x.items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**xs, **kw)
    seen, total = set(), 0
    for t in saved:  # count each storage once
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def test_autograd_memory_is_o_inputs(impl):
    """The states (B, E, L, N) are never kept for the backward: the CPU kernel saves only its
    inputs; the torch path keeps its checkpointed segment inputs, all (B, E, L)-sized."""
    Bz, E, N, L = 1, 32, 32, 512
    x, kw = make((Bz, E, N, L, None), FLAGS[0], seed=8)
    input_bytes = sum(v.nbytes for v in x.values() if v is not None)
    states_bytes = Bz * E * L * N * 4
    saved = _saved_bytes(selective_scan, x, backend=impl, **kw)
    if impl == "cpu":
        assert saved <= input_bytes
    else:
        assert saved <= 4 * input_bytes < states_bytes
    assert _saved_bytes(selective_scan_ref, x, **kw) > states_bytes  # the check can fail


@pytest.mark.parametrize("name,bad,match", [
    ("u", torch.zeros(2, 8), r"u must be a tensor of shape \(B, E, L\)"),
    ("delta", torch.zeros(2, 8, 9), r"delta must have u's shape"),
    ("A", torch.zeros(7, 4), r"A must have shape \(E, N\) = \(8, N\)"),
    ("B", torch.zeros(2, 4, 9), r"B must have shape \(B, N, L\) = \(2, 4, 10\)"),
    ("C", torch.zeros(2, 3, 4, 10), r"C must have shape .*E % G == 0"),
    ("D", torch.zeros(9), r"D must have shape \(E,\) = \(8,\)"),
    ("z", torch.zeros(2, 8, 11), r"z must have u's shape"),
    ("delta_bias", torch.zeros(8, 1), r"delta_bias must have shape \(E,\)"),
    ("B", torch.zeros(2, 4, 10, dtype=torch.int64), r"B must be a real floating-point tensor"),
])
def test_bad_inputs_raise_clear_errors(name, bad, match):
    x = scan_inputs(2, 8, 4, 10, seed=9)
    x[name] = bad
    with pytest.raises(ValueError, match=match):
        selective_scan(**x, backend="torch")
    with pytest.raises(ValueError, match=match):
        selective_scan_ref(**x)


def test_oracle_matches_float64_oracle():
    """The fp32 oracle itself against the independent float64 recurrence."""
    x, kw = make((2, 12, 5, 67, 3), FLAGS[0], seed=10)
    a, ga = run_with_grads(selective_scan_ref, x, **kw)
    b, gb = run_with_grads(scan_f64, x, **kw)
    for i, (p, q) in enumerate(zip(a, b)):
        assert_close_scaled(p, q, 2e-5, 2e-5, name=f"output {i}")
    for k in ga:
        assert_close_scaled(ga[k], gb[k], 2e-5, 2e-5, name=f"grad {k}")


def test_arg_names_cover_signature():
    import inspect
    params = list(inspect.signature(selective_scan).parameters)
    assert tuple(params[:len(ARG_NAMES)]) == ARG_NAMES


def test_non_finite_values_propagate_as_in_the_oracle(impl):
    """A NaN input poisons its channel from that step on; an infinite delta gives the oracle's
    inf / NaN pattern; everything else stays finite and close. The sequential kernel also matches
    an overflowing exp (A > 0, huge delta); the chunked torch path reorders the products, so
    there a state that overflows may read NaN instead of +-inf (A = -exp(A_log) < 0 in Mamba)."""
    x, kw = make((1, 20, 4, 40, None), FLAGS[0], seed=11)
    x["u"][0, 3, 5] = float("nan")
    if impl == "cpu":
        x["A"][7] = 1.0
        x["delta"][0, 7, 30:] = 200.0  # softplus -> 200 * A = 200: exp overflows to inf
    x["delta"][0, 9, 10] = float("inf")  # softplus(inf) = inf; exp(-inf * |A|) = 0
    out, last = selective_scan(**x, backend=impl, **kw)
    ref, ref_last = selective_scan_ref(**x, **kw)
    for a, b in ((out, ref), (last, ref_last)):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())
        finite = torch.isfinite(b)
        assert finite.float().mean() > 0.8
        torch.testing.assert_close(a[finite], b[finite], rtol=2e-5, atol=2e-5 * b[finite].abs().max())
    assert out[0, 3, :5].isfinite().all() and out[0, 3, 5:].isnan().all()


def test_cpu_kernel_thread_count_does_not_change_results():
    cpu_kernel_or_skip()
    x, kw = make((2, 40, 16, 70, None), FLAGS[0], seed=12)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_with_grads(selective_scan, x, backend="cpu", **kw)
        torch.set_num_threads(2)
        two = run_with_grads(selective_scan, x, backend="cpu", **kw)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one[0], two[0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # each channel is scanned by one thread
    for k in one[1]:  # dB / dC sum per-worker partials: the order may differ
        assert_close_scaled(two[1][k], one[1][k], 1e-6, 1e-6, name=k)


def _flip_inputs(x: dict) -> dict:
    return {k: (v.flip(-1) if k in ("u", "delta", "B", "C", "z") and v is not None else v)
            for k, v in x.items()}


def _flipped_scan(**kw):
    """The definition of ``reverse=True``: flip every (.., L) input, scan, flip the output."""
    backend = kw.pop("backend")
    res = selective_scan(**_flip_inputs(kw), backend=backend)
    return (res[0].flip(-1), res[1]) if isinstance(res, tuple) else res.flip(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape,flags", [((2, 40, 16, 203, None), FLAGS[0]),
                                         ((1, 24, 8, 130, 2), FLAGS[2]),
                                         ((3, 17, 4, 64, None), FLAGS[1]),
                                         ((1, 16, 16, 1, None), FLAGS[3])],
                         ids=["all", "groups-D-bias-last", "plain", "L1"])
def test_reverse_is_flip_scan_flip(impl, shape, flags, dtype):
    """reverse=True against flip -> scan -> flip: outputs, last state and every gradient. The
    CPU kernel reads the inputs back to front instead of copying them and does the same
    arithmetic in the same order, so everything agrees bit for bit (one thread: with more, the
    per-worker dB / dC partials may be added up in another order, run to run)."""
    x, kw = make(shape, flags, seed=13)
    low = ("u", "delta", "B", "C", "z")
    x = {k: (v.to(dtype) if k in low and v is not None else v) for k, v in x.items()}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        outs, grads = run_with_grads(selective_scan, x, backend=impl, reverse=True, out_dtype=dtype, **kw)
        ref_outs, ref_grads = run_with_grads(_flipped_scan, x, backend=impl, out_dtype=dtype, **kw)
        with torch.no_grad():  # the inference path (no autograd Function) reads the same way
            res = selective_scan(**x, backend=impl, reverse=True, **kw)
    finally:
        torch.set_num_threads(before)
    for i, (a, b) in enumerate(zip(outs, ref_outs)):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"output {i}")
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        assert grads[k].dtype == x[k].dtype
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=0, atol=0, msg=f"grad {k}")
    for a, b in zip(res if isinstance(res, tuple) else (res,), outs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("target", ["new", "u", "delta", "z"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_out_may_overwrite_an_input(impl, target, reverse):
    """out= writes the result into a given buffer, which may be an input's own memory."""
    x, kw = make((2, 40, 16, 150, None), FLAGS[0], seed=14)
    with torch.no_grad():
        expected, last = selective_scan(**x, backend=impl, reverse=reverse, **kw)
        xs = {k: (None if v is None else v.clone()) for k, v in x.items()}
        buf = torch.empty_like(xs["u"]) if target == "new" else xs[target]
        out, last2 = selective_scan(**xs, backend=impl, reverse=reverse, out=buf, **kw)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(last2, last, rtol=0, atol=0)
    # a bf16 buffer, or one the kernel cannot write directly, receives a copy
    with torch.no_grad():
        low = torch.empty_like(x["u"], dtype=torch.bfloat16)
        strided = torch.empty(2, 150, 40).transpose(1, 2)
        for b in (low, strided):
            r = selective_scan(**x, backend=impl, reverse=reverse, out=b, **kw)[0]
            assert r.data_ptr() == b.data_ptr()
            torch.testing.assert_close(r, expected.to(b.dtype), rtol=0, atol=0)


def test_out_is_refused_under_autograd():
    x, kw = make((1, 8, 4, 10, None), FLAGS[0], seed=15)
    u = x.pop("u").requires_grad_(True)
    with pytest.raises(ValueError, match="out= is for inference"):
        selective_scan(u, **x, backend="torch", out=torch.empty(1, 8, 10), **kw)
    with pytest.raises(ValueError, match=r"out must have shape \(1, 8, 10\)"):
        with torch.no_grad():
            selective_scan(u, **x, backend="torch", out=torch.empty(1, 8, 11), **kw)


@pytest.mark.parametrize("z,reverse", [(True, False), (True, True), (False, False)])
def test_backward_with_output_recomputes_the_forward(z, reverse):
    """The CPU kernel's backward can return the forward's output it recomputes on the way: equal to
    the oracle's output, with the same gradients as the plain backward."""
    from videomamba.ops.library import scan_bwd_with_output

    kernel = cpu_kernel_or_skip()
    x = scan_inputs(Bz=2, E=24, N=8, L=150, z=z)
    dout = torch.randn(2, 24, 150, generator=torch.Generator().manual_seed(3))
    want = selective_scan(*(x[k] for k in ARG_NAMES), delta_softplus=True, backend="ref", reverse=reverse)
    *grads, out = scan_bwd_with_output(*(x[k] for k in ARG_NAMES), True, reverse, dout)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    plain = kernel.load().bwd(*(x[k] if k not in ("B", "C") else x[k].unsqueeze(1) for k in ARG_NAMES), True, dout,
                       None, reverse)
    for name, a, b in zip(ARG_NAMES, grads, plain):
        if b is not None and b.numel():
            torch.testing.assert_close(a, b.view(a.shape), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_backward_adds_into_given_targets(dtype, reverse):
    """dz_into / out_into receive dz and the output added to what they hold, with the numbers of a
    separate call followed by add_, bit for bit; the other gradients are unchanged."""
    from videomamba.ops.library import scan_bwd_with_output

    cpu_kernel_or_skip()
    # E = 24: one full block of 16 lanes and one of 8; L = 150: whole and partial tiles
    x = {k: (v if v is None or k not in ("u", "delta", "z") else v.to(dtype))
         for k, v in scan_inputs(Bz=2, E=24, N=8, L=150).items()}
    g = torch.Generator().manual_seed(4)
    dout = torch.randn(2, 24, 150, generator=g)
    dz0, out0 = torch.randn(2, 24, 150, generator=g), torch.randn(2, 24, 150, generator=g)
    args = (*(x[k] for k in ARG_NAMES), True, reverse, dout)
    *grads, out = scan_bwd_with_output(*args)
    dz_into, out_into = dz0.clone(), out0.clone()
    *got, got_out = scan_bwd_with_output(*args, dz_into=dz_into, out_into=out_into)
    assert got[6] is dz_into and got_out is out_into
    assert torch.equal(dz_into, dz0.clone().add_(grads[6]))
    assert torch.equal(out_into, out0.clone().add_(out))
    for name, a, b in zip(ARG_NAMES, got, grads):
        if name != "z" and b is not None:
            assert torch.equal(a, b), name
    # one target alone
    *_, only_out = scan_bwd_with_output(*args, out_into=out0.clone())
    assert torch.equal(only_out, out0.clone().add_(out))


def test_backward_targets_are_checked():
    from videomamba.ops.library import scan_bwd_with_output

    kernel = cpu_kernel_or_skip()
    x = scan_inputs(Bz=1, E=8, N=4, L=20)
    dout = torch.randn(1, 8, 20)
    args = (*(x[k] for k in ARG_NAMES), True, False, dout)
    for bad in (torch.zeros(1, 8, 21), torch.zeros(1, 8, 20, dtype=torch.bfloat16),
                torch.zeros(1, 20, 8).transpose(1, 2)):
        with pytest.raises(RuntimeError, match=r"dz_into must be a contiguous fp32 CPU tensor of shape \(1, 8, 20\)"):
            scan_bwd_with_output(*args, dz_into=bad)
    with pytest.raises(RuntimeError, match="dz_into needs z"):
        scan_bwd_with_output(*(x[k] if k != "z" else None for k in ARG_NAMES), True, False, dout,
                             dz_into=torch.zeros(1, 8, 20))
    grouped = [x[k] if k not in ("B", "C") else x[k].unsqueeze(1) for k in ARG_NAMES]
    with pytest.raises(RuntimeError, match="out_into needs want_out"):
        kernel.load().bwd(*grouped, True, dout, None, False, False, None, torch.zeros(1, 8, 20))
