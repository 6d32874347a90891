import pytest


@pytest.fixture(scope="session")
def hf_teachers(tmp_path_factory):
    """Tiny randomly initialised transformers image models saved to local directories."""
    transformers = pytest.importorskip("transformers")
    import torch

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=16)
    out = {}
    clip_cfg = transformers.CLIPVisionConfig(projection_dim=24, **common)
    transformers.CLIPVisionModelWithProjection(clip_cfg).save_pretrained(root / "clip_proj")
    out["clip_proj"] = root / "clip_proj"
    transformers.CLIPVisionModel(clip_cfg).save_pretrained(root / "clip_plain")
    out["clip_plain"] = root / "clip_plain"
    transformers.ViTModel(transformers.ViTConfig(**common), add_pooling_layer=False).save_pretrained(root / "vit")
    out["vit"] = root / "vit"
    return out
