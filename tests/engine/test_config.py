"""Config loading: every packaged config is valid; bad keys and values give messages naming them."""
import pytest

from videomamba.engine.config import ConfigError, list_configs, load_config


@pytest.mark.parametrize("name", list_configs())
def test_packaged_configs_load(name):
    cfg = load_config(name)
    assert cfg.optim.epochs >= 1


def test_overrides_and_types(tmp_path):
    cfg = load_config(None, ["optim.lr=1e-3", "augment.scale=[0.2, 1.0]", "model.embed_dim=64",
                             "data.classes=[a, b]", "optim.clip_grad=null"])
    assert cfg.optim.lr == 1e-3 and cfg.augment.scale == (0.2, 1.0) and cfg.model.params == {"embed_dim": 64}
    assert cfg.data.classes == ["a", "b"] and cfg.optim.clip_grad is None
    # YAML round trip
    from videomamba.engine.config import dump_yaml
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize("text,needle", [
    ("optim:\n  lrr: 0.1\n", "unknown key 'optim.lrr' (did you mean 'lr'?)"),
    ("optimizer:\n  lr: 0.1\n", "unknown section 'optimizer'"),
    ("model:\n  embed_dimm: 8\n", "unknown key 'model.embed_dimm' (did you mean 'embed_dim'?)"),
    ("optim:\n  lr: fast\n", "optim.lr: expected a number or null, got 'fast'"),
    ("optim:\n  epochs: 0\n", "optim.epochs must be a positive integer, got 0"),
    ("optim:\n  layer_decay: 1.5\n", "optim.layer_decay must be in (0, 1] (1: off), got 1.5"),
    ("data:\n  batch_size: 2.5\n", "data.batch_size: expected an integer, got 2.5"),
    ("train:\n  amp: fp8\n", "train.amp: expected one of 'auto', 'bf16', 'fp16', 'none', got 'fp8'"),
    ("augment:\n  scale: [0.5]\n", "augment.scale: expected a list of 2 numbers, got [0.5]"),
    ("augment:\n  symmetries: [reverse, spin]\n", "augment.symmetries must be a list of distinct names from "
                                                  "['hflip', 'vflip', 'transpose', 'reverse'], got ['reverse', 'spin']"),
    ("task:\n  type: regression\naugment:\n  mixup: 0\n  cutmix: 0\n  symmetries: [reverse]\n",
     "augment.symmetries must be empty for a regression task"),
    ("model:\n  depth: -1\n", "model: depth must be a positive integer, got -1"),
    ("model:\n  name: videomamba_huge\n", "model.name: unknown model 'videomamba_huge'"),
    ("train:\n  device: gpu\n", "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("- 1\n- 2\n", "expected a mapping of sections"),
    ("video_text:\n  positives: text\n", "video_text.positives: expected one of 'video', 'caption', got 'text'"),
    ("video_text:\n  negative_captions: -1\n", "video_text.negative_captions must be an integer >= 0, got -1"),
    ("video_text:\n  swap_groups: [[oval]]\n", "video_text.swap_groups must be lists of at least two non-empty"),
])
def test_bad_values_name_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value)
    assert str(p) in str(e.value) or "optim.lr:" in needle or ":" in needle


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown config section 'optimm'"):
        load_config(None, ["optimm.lr=1"])
