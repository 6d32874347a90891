"""Layer-wise lr decay: the release's assignment and the per-block decay, against scales worked out by hand.

Model: depth 2, so the release's assigner has depth + 2 = 4 ids and values ld ** (3 - id);
with ld = 0.5: id 0 -> 0.125, id 3 -> 1.
"""
import pytest

from videomamba import create_model
from videomamba.engine.optim import build_optimizer, param_groups


@pytest.fixture(scope="module")
def model():
    return create_model("videomamba_tiny", embed_dim=16, depth=2, num_frames=2, img_size=16, patch_size=8,
                        num_classes=3)


def _scales(model, mode):
    return {n: g["lr_scale"] for g in param_groups(model, 0.05, 0.5, layer_decay_mode=mode) for n in g["param_names"]}


def test_release_mode_scales_only_the_stem(model):
    s = _scales(model, "release")
    # hand-computed: get_num_layer_for_vit gives id 0 to cls_token / pos_embed / patch_embed.*, and
    # the last id (3) to every other name, the blocks and temporal_pos_embedding included
    expected = {n: (0.125 if n in ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias")
                    else 1.0) for n, _ in model.named_parameters()}
    assert s == expected
    assert s["temporal_pos_embedding"] == 1.0 and s["layers.0.mixer.in_proj.weight"] == 1.0


def test_per_block_mode_scales(model):
    s = _scales(model, "per_block")
    for n, v in s.items():
        if n.startswith(("cls_token", "pos_embed", "temporal_pos_embedding", "patch_embed")):
            assert v == 0.125, n                     # id 0 of 4: 0.5 ** 3
        elif n.startswith("layers.0."):
            assert v == 0.25, n                      # id 1: 0.5 ** 2
        elif n.startswith("layers.1."):
            assert v == 0.5, n                       # id 2
        else:
            assert n.startswith(("norm_f", "head")) and v == 1.0, n


def test_optimizer_applies_mode(model):
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5, layer_decay_mode="release")
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    assert lrs["layers.1.mixer.out_proj.weight"] == pytest.approx(1e-3)
    assert lrs["pos_embed"] == pytest.approx(1.25e-4)
    with pytest.raises(ValueError, match="layer_decay_mode"):
        param_groups(model, 0.05, 0.5, layer_decay_mode="blocks")


def test_config_key_reaches_the_optimizer():
    from videomamba.engine.config import ConfigError, load_config

    cfg = load_config(None, ["optim.layer_decay_mode=release"])
    assert cfg.optim.layer_decay_mode == "release"
    with pytest.raises(ConfigError, match="layer_decay_mode"):
        load_config(None, ["optim.layer_decay_mode=blocks"])
