"""The kernels as custom ops: opcheck, torch.compile(fullgraph) and torch.export of a tiny model
against eager, ONNX (pure-torch scan) through onnxruntime, the export command.

Expectations are the eager model (itself tested against the oracle and the original code) and,
for the ops, ``selective_scan_ref`` / ``causal_conv1d_ref``.
"""
from __future__ import annotations

import pytest
import torch

import videomamba
from videomamba.ops import backend, causal_conv1d_ref, selective_scan_ref, use_backend
from videomamba.ops import library

from _requirements import require_cpu_kernel, require_module

from .helpers import assert_close_scaled, run_with_grads, scan_inputs

TOL = 1e-4  # exported / compiled logits vs eager, fp32


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend._reset()
    yield
    backend._reset()


def tiny(seed=0, **over):
    torch.manual_seed(seed)
    cfg = dict(num_classes=5, num_frames=2, img_size=32, patch_size=16, embed_dim=16, depth=2)
    return videomamba.create_model("videomamba_tiny", **{**cfg, **over}).eval()


def video(B=2, T=2, seed=3):
    return torch.randn(B, 3, T, 32, 32, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the ops
@pytest.mark.parametrize("case", ["plain", "grouped_reverse_last", "no_optionals"])
def test_scan_op_passes_opcheck(case):
    require_cpu_kernel()
    kw = dict(Bz=2, E=8, N=4, L=11)
    if case == "grouped_reverse_last":
        x, flags = scan_inputs(G=2, **kw), (True, True, True)
    elif case == "no_optionals":
        x, flags = scan_inputs(D=False, z=False, delta_bias=False, **kw), (False, False, False)
    else:
        x, flags = scan_inputs(**kw), (True, False, False)
    args = [x["u"], x["delta"], x["A"], library._grouped(x["B"]), library._grouped(x["C"]),
            x["D"], x["z"], x["delta_bias"], *flags]
    args = [a.requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(torch.ops.videomamba.selective_scan_fwd.default, args)


@pytest.mark.parametrize("bias,silu,reverse", [(True, True, False), (False, False, True)])
def test_conv_op_passes_opcheck(bias, silu, reverse):
    require_cpu_kernel()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, generator=g, requires_grad=True)
    w = torch.randn(6, 4, generator=g, requires_grad=True)
    b = torch.randn(6, generator=g, requires_grad=True) if bias else None
    torch.library.opcheck(torch.ops.videomamba.causal_conv1d_fwd.default, (x, w, b, silu, reverse))


@pytest.mark.parametrize("dispatch", [True, False], ids=["custom_op", "eager_function"])
def test_ops_gradients_match_the_oracles(dispatch):
    """The ops' autograd registration (dispatch=True, as under torch.compile) and the eager
    autograd.Function around the same implementations, against the oracles."""
    require_cpu_kernel()
    x = scan_inputs(Bz=2, E=8, N=4, L=37, G=2)
    out, grads = run_with_grads(library.selective_scan_op, x, delta_softplus=True,
                                return_last_state=True, reverse=True, dispatch=dispatch)

    def ref_reversed(**kw):  # reverse = flip -> scan -> flip (the last state is the one at t = 0)
        r = {k: (v.flip(-1) if k in ("u", "delta", "B", "C", "z") else v) for k, v in kw.items()
             if k in x}
        out, last = selective_scan_ref(**r, delta_softplus=True, return_last_state=True)
        return out.flip(-1), last
    ref, ref_grads = run_with_grads(ref_reversed, x)
    for a, b, name in zip(out, ref, ("out", "last")):
        assert_close_scaled(a, b, 1e-5, 1e-6, name)
    for k in ref_grads:
        assert_close_scaled(grads[k], ref_grads[k], 1e-4, 1e-5, k)

    g = torch.Generator().manual_seed(1)
    xs = torch.randn(2, 6, 13, generator=g, requires_grad=True)
    w = torch.randn(6, 3, generator=g, requires_grad=True)
    b = torch.randn(6, generator=g, requires_grad=True)
    cot = torch.randn(2, 6, 13, generator=g)
    got = torch.autograd.grad((library.causal_conv1d_op(xs, w, b, True, dispatch=dispatch) * cot).sum(),
                              (xs, w, b))
    exp = torch.autograd.grad((causal_conv1d_ref(xs, w, b, "silu") * cot).sum(), (xs, w, b))
    for a, e, name in zip(got, exp, ("dx", "dw", "db")):
        assert_close_scaled(a, e, 1e-5, 1e-6, name)


@pytest.mark.parametrize("L,G", [(2, None), (7, 2), (64, None), (203, 2)])
def test_log_depth_scan_matches_the_oracle(L, G):
    """The formulation exported graphs use (ONNX): outputs, last state and all gradients."""
    from videomamba.ops.scan_torch import selective_scan_torch

    x = scan_inputs(Bz=2, E=8, N=4, L=L, G=G)
    out, grads = run_with_grads(selective_scan_torch, x, delta_softplus=True,
                                return_last_state=True, log_depth=True)
    ref, ref_grads = run_with_grads(selective_scan_ref, x, delta_softplus=True,
                                    return_last_state=True)
    for a, b, name in zip(out, ref, ("out", "last")):
        assert_close_scaled(a, b, 1e-5, 1e-6, name)
    for k in ref_grads:
        assert_close_scaled(grads[k], ref_grads[k], 1e-4, 1e-5, k)


def test_log_depth_scan_single_step_and_long_decay():
    """L = 1 (no combining step) and a decay that underflows to zero over the sequence."""
    from videomamba.ops.scan_torch import selective_scan_torch

    x = scan_inputs(Bz=1, E=4, N=3, L=1)
    torch.testing.assert_close(selective_scan_torch(**x, delta_softplus=True, log_depth=True),
                               selective_scan_ref(**x, delta_softplus=True))
    x = scan_inputs(Bz=1, E=4, N=3, L=300, delta_lo=3.0, delta_hi=6.0)
    x["A"] = x["A"] * 50.0
    got = selective_scan_torch(**x, delta_softplus=True, log_depth=True)
    assert torch.isfinite(got).all()
    assert_close_scaled(got, selective_scan_ref(**x, delta_softplus=True), 1e-5, 1e-6)


def test_cuda_backward_recomputes_the_forward():
    """The CUDA scan op's backward (mamba_ssm re-run under autograd), with the oracle standing in
    for the kernel: its gradients are the oracle's, zeros for inputs the output ignores."""
    x = scan_inputs(Bz=1, E=4, N=3, L=9)
    g = torch.Generator().manual_seed(2)
    dout = torch.randn(1, 4, 9, generator=g)

    def fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse):
        flip = (lambda t: t.flip(-1)) if reverse else (lambda t: t)
        return flip(selective_scan_ref(flip(u), flip(delta), A, flip(B), flip(C), D, flip(z),
                                       delta_bias, delta_softplus))
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    grads = library._cuda_scan_bwd(*args, True, True, dout, _fn=fn)
    xs = [a.detach().requires_grad_(True) for a in args]
    exp = torch.autograd.grad(fn(*xs, True, True), xs, dout)
    for name, a, e in zip(("u", "delta", "A", "B", "C", "D", "z", "bias"), grads, exp):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e, msg=name)


def test_use_backend_scopes_the_choice(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "ref")
    assert backend.requested_backend() == "ref"
    with use_backend("torch") as name:
        assert name == "torch" and backend.requested_backend() == "torch"
        assert backend.requested_backend("cpu") == "cpu"      # an explicit argument still wins
        assert backend.resolve(None, "cpu") == "torch"
    assert backend.requested_backend() == "ref"
    with pytest.raises(ValueError, match="unknown scan backend 'nope'"):
        with use_backend("nope"):
            pass


# --------------------------------------------------------------------------- whole model
@pytest.mark.parametrize("scan_backend", ["auto", "torch"])
def test_compile_fullgraph_matches_eager_forward_and_backward(scan_backend, monkeypatch):
    """torch.compile(fullgraph=True) on the kernel path (AOT autograd with the ops' fake
    implementations and autograd registrations; Inductor's code generation is the slow test
    below) and on the pure-torch scan (CUDA without mamba_ssm): logits and every parameter
    gradient match eager."""
    if scan_backend == "auto":
        require_cpu_kernel()
    monkeypatch.setenv(backend.ENV_VAR, scan_backend)
    torch._dynamo.reset()
    model = tiny(drop_path_rate=0.0).train()
    x = video()
    cot = torch.randn(2, 5, generator=torch.Generator().manual_seed(4))
    params = [p for p in model.parameters() if p.requires_grad]
    ref = model(x)
    ref_grads = torch.autograd.grad((ref * cot).sum(), params)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad((out * cot).sum(), params)
    torch.testing.assert_close(out, ref, rtol=0, atol=TOL)
    for (name, _), g, r in zip(((n, p) for n, p in model.named_parameters() if p.requires_grad),
                               grads, ref_grads):
        assert_close_scaled(g, r, 1e-4, 1e-5, name)
    with torch.no_grad():  # the inference path (buffers reused in eager) traces too
        torch.testing.assert_close(compiled.eval()(x), model.eval()(x), rtol=0, atol=TOL)


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    require_cpu_kernel()
    torch._dynamo.reset()
    model = tiny(drop_path_rate=0.0).train()
    x = video()
    params = list(model.parameters())
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), params)
    torch.testing.assert_close(out, ref, rtol=0, atol=TOL)
    for g, r in zip(grads, ref_grads):
        assert_close_scaled(g, r, 1e-4, 1e-5)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(x), model.eval()(x), rtol=0, atol=TOL)


def test_export_program_holds_the_kernels_and_matches_eager(tmp_path):
    require_cpu_kernel()
    from videomamba.models.export import export_model, run_exported

    model = tiny(scan_order="spatiotemporal_v1", backward_order="spatial_reversal")
    x = video(B=1)
    prog = torch.export.export(model, (x,))
    targets = {str(n.target) for n in prog.graph.nodes if n.op == "call_function"}
    assert "videomamba.selective_scan_fwd.default" in targets
    assert "videomamba.causal_conv1d_fwd.default" in targets
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(prog.module()(x), ref, rtol=0, atol=TOL)

    res = export_model(model, tmp_path / "m.pt2", "pt2", x, dynamic_batch=True)
    assert res.checked_batches == (1, 2) and res.max_abs_diff <= TOL
    x3 = video(B=3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(run_exported(tmp_path / "m.pt2", x3), model(x3), rtol=0, atol=TOL)


def test_onnx_through_the_torch_scan_matches_eager_in_onnxruntime(tmp_path):
    """The ONNX file holds no custom op (the pure-torch scan is traced); onnxruntime's logits
    match the eager model's, which runs the compiled kernel."""
    require_cpu_kernel()
    for name in ("onnx", "onnxscript", "onnxruntime"):
        require_module(name)
    import onnx
    from videomamba.models.export import export_model

    model = tiny(depth=1)
    x = video(B=2)
    res = export_model(model, tmp_path / "m.onnx", "onnx", x, dynamic_batch=True)
    assert res.max_abs_diff <= TOL and res.checked_batches == (2, 3)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "custom-domain nodes in the graph"
    assert not list(tmp_path.glob("*.data")), "weights must be inside the file"


def test_export_command_writes_and_reports(tmp_path, capsys):
    require_cpu_kernel()
    from videomamba.cli import main

    model = tiny(depth=1)
    videomamba.save_pretrained(model, tmp_path / "m")
    out = tmp_path / "out" / "tiny.pt2"
    assert main(["export", "-k", str(tmp_path / "m"), "-o", str(out), "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "(2, 3, 2, 32, 32)" in text and "max |exported - eager|" in text
    from videomamba.models.export import run_exported
    x = video(B=2)
    with torch.no_grad():
        torch.testing.assert_close(run_exported(out, x), model(x), rtol=0, atol=TOL)

    assert main(["export", "-k", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "-k" in capsys.readouterr().err
    assert main(["export", "-k", str(tmp_path / "m"), "--frames", "0"]) == 2


def test_input_shape_follows_the_config():
    from videomamba.models.export import input_shape

    model = tiny()
    assert input_shape(model) == (1, 3, 2, 32, 32)
    assert input_shape(model, frames=4, img_size=48, batch=3) == (3, 3, 4, 48, 48)
    image = videomamba.create_model("videomamba_image_tiny", num_classes=3, img_size=32, depth=1)
    assert input_shape(image, batch=2) == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="image model"):
        input_shape(image, frames=4)
    kaist = videomamba.create_model("videomamba_kaist_tiny", num_classes=3, img_size=32, depth=1)
    with pytest.raises(ValueError, match="multiple of the tubelet size 2"):
        input_shape(kaist, frames=3)
    with pytest.raises(ValueError, match="cannot export a Linear"):
        input_shape(torch.nn.Linear(2, 2))
