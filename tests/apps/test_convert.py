"""``videomamba convert``: original-format checkpoints -> our directory, checked numerically."""
import json

import pytest
import torch

from videomamba import create_model
from videomamba.cli import main


def _tiny(**kw):
    torch.manual_seed(0)
    m = create_model("videomamba_tiny", embed_dim=32, depth=2, num_frames=4, img_size=32, patch_size=8,
                     num_classes=7, **kw).eval()
    with torch.no_grad():                      # perturb so that every parameter matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m


@pytest.mark.parametrize("wrap", ["bare", "model", "module_prefix"])
def test_round_trip_infers_the_architecture(tmp_path, wrap, capsys):
    m = _tiny()
    sd = m.state_dict()
    obj = {"bare": sd, "model": {"model": sd, "epoch": 3},
           "module_prefix": {"module": {f"module.{k}": v for k, v in sd.items()}}}[wrap]
    src = tmp_path / "orig.pth"
    torch.save(obj, src)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    assert "check against the file's own model: logits, max |difference| = 0\n" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["embed_dim"], cfg["depth"], cfg["num_classes"], cfg["num_frames"], cfg["img_size"],
            cfg["patch_size"]) == (32, 2, 7, 4, 32, 8)
    again = create_model(None, pretrained=tmp_path / "out").eval()
    for k, v in sd.items():
        assert torch.equal(v, again.state_dict()[k]), k
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), again(x))


def test_convert_with_preset_and_new_head(tmp_path, capsys):
    m = _tiny()
    src = tmp_path / "orig.pth"
    torch.save(m.state_dict(), src)
    rc = main(["convert", str(src), str(tmp_path / "out"), "--model", "videomamba_tiny", "--num-classes", "3",
               "--num-frames", "8"])
    # preset width 192 does not fit a 32-wide checkpoint: a clear error, not a silent mess
    assert rc == 2 and "patch_embed.proj.weight" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "out"), "--num-classes", "3", "--num-frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "dropped: checkpoint has 7 classes, model 3" in out and "temporal_pos_embedding: 4->8" in out


def test_official_fixture_converts_to_matching_logits(official, tmp_path):
    src = tmp_path / "official.pth"
    torch.save(official["state_dict"], src)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    cfg = json.loads(official["config"])
    model = create_model(None, pretrained=tmp_path / "out").eval()
    assert model.cfg.embed_dim == cfg["embed_dim"] and model.cfg.depth == cfg["depth"]
    with torch.no_grad():
        logits = model(official["input"])
    assert torch.allclose(logits, official["logits"], atol=1e-4)
