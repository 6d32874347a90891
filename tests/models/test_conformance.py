"""The original code's outputs and gradients, reproduced from its state_dict."""
import json

import pytest
import torch

import videomamba as vm


def _build(official, **kw):
    c = json.loads(official["config"])
    return vm.create_model("videomamba_tiny", embed_dim=c["embed_dim"], depth=c["depth"],
                           num_classes=c["num_classes"], tubelet_size=c["kernel_size"],
                           patch_size=c["patch_size"], num_frames=c["num_frames"], img_size=c["img_size"], **kw)


def _check(model, official):
    model.eval()
    x = official["input"].clone().requires_grad_(True)
    tokens = model.forward_features(x)
    feats = model.forward_head(tokens, pre_logits=True)
    logits = model.head(feats)
    torch.testing.assert_close(logits, official["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(feats, official["features"], atol=1e-4, rtol=0)
    (logits * official["loss_weights"]).sum().backward()

    def rel(a, b):
        # A gradient that is exactly zero in the original (e.g. the last layer's forward-scan
        # A_log: the cls token at index 0 never sees A) must be zero here too.
        scale = b.abs().max()
        return (a - b).abs().max().item() / (scale.item() if scale > 0 else 1e-6)

    assert rel(x.grad, official["input_grad"]) < 1e-3
    grads = dict(model.named_parameters())
    assert set(grads) == set(official["param_grads"])
    for name, g in official["param_grads"].items():
        assert rel(grads[name].grad, g) < 1e-3, name


def test_official_fixture_strict(official):
    model = _build(official)
    model.load_state_dict(official["state_dict"], strict=True)
    _check(model, official)


@pytest.mark.parametrize("backend", ["ref", "auto"])
def test_official_fixture_every_scan_backend(official, backend, monkeypatch):
    monkeypatch.setenv("VIDEOMAMBA_SCAN_BACKEND", backend)
    model = _build(official)
    model.load_state_dict(official["state_dict"], strict=True)
    _check(model, official)


def test_official_fixture_through_checkpoint_filter(official):
    """Wrapped and prefixed, as fine-tune loaders see released files."""
    wrapped = {"model": {f"module.{k}": v for k, v in official["state_dict"].items()}, "epoch": 3}
    model = _build(official)
    report = vm.load_checkpoint(model, wrapped, strict=True)
    assert report.missing == [] and report.unexpected == []
    _check(model, official)
