"""`videomamba info` reproduces the papers' parameter and GFLOPs tables."""
import json

import pytest

import videomamba as vm
from videomamba.cli import main
from videomamba.models.flops import count_flops


@pytest.mark.parametrize("name,params_m,gflops", [
    ("videomamba_image_tiny", 7.15, 1.1), ("videomamba_image_small", 25.8, 4.3),
    ("videomamba_image_middle", 74.2, 12.7)])
def test_imagenet_table(name, params_m, gflops):
    c = count_flops(vm.get_config(name))
    assert round(c.params / 1e6, 2 if params_m < 10 else 1) == params_m
    assert round(c.papers / 1e9, 1) == gflops
    assert c.params == sum(p.numel() for p in vm.create_model(name).parameters())


@pytest.mark.parametrize("frames,gflops,params_m", [(16, 34.2, 26.3), (32, 68.5, None)])
def test_kaist_table(frames, gflops, params_m):
    cfg = vm.get_config("videomamba_kaist_small", num_frames=frames, num_classes=174)
    c = count_flops(cfg)
    assert round(c.papers / 1e9, 1) == gflops
    if params_m:
        assert round(c.params / 1e6, 1) == params_m


def test_full_count_by_hand():
    cfg = vm.get_config("videomamba_tiny", depth=1, num_classes=0, num_frames=1, img_size=16)
    c = count_flops(cfg)   # L = 2 tokens, D = 192, E = 384, N = 16, R = 12, K = 4
    L, D, E, N, R = 2, 192, 384, 16, 12
    expected = (1 * 768 * D + L * D * 2 * E + L * E * D + 2 * L * E * 4 + 2 * L * E * (R + 2 * N)
                + 2 * L * R * E + 2 * 9 * L * E * N)
    assert c.full == expected and c.tokens == 2


def test_cli_info_json(capsys):
    assert main(["info", "videomamba_tiny", "--frames", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == 3137 and out["num_frames"] == 16
    assert main(["info", "videomamba_nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
