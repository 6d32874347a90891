"""Shared helpers for the video-text tests: the release fixture, mapped onto this model."""
from __future__ import annotations


import pytest
import torch
from _requirements import FIXTURE_HOW, fixtures_dir, require_file

FIXTURE = fixtures_dir() / "official_mm_tiny.pt"


def release_to_model_keys(sd: dict) -> dict:
    """The release's UMT_VIDEOMAMBA keys -> this model's (the renames the checkpoint route applies;
    kept here so the parity tests do not depend on it)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("clip_teacher.") or k.endswith("embeddings.position_ids"):
            continue
        if k.startswith("vision_encoder.pool_norm."):
            k = k.replace("vision_encoder.pool_norm.", "pool_norm.")
        elif k.startswith("vision_encoder.clip_decoder."):
            k = k.replace("vision_encoder.clip_decoder.", "clip_decoder.")
        elif k == "vision_encoder.norm.weight":
            k = "vision_encoder.norm_f.weight"
        elif k.startswith("text_encoder.bert."):
            k = "text_encoder." + k[len("text_encoder.bert."):]
        elif k.startswith("text_encoder.cls.predictions."):
            k = "mlm_head." + k[len("text_encoder.cls.predictions."):]
        out[k] = v
    return out


@pytest.fixture(scope="session")
def mm_fixture():
    return torch.load(require_file(FIXTURE, FIXTURE_HOW), map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def mm_model(mm_fixture):
    from videomamba.models.video_text import VideoTextModel, video_text_config_from_release

    ck = mm_fixture["checkpoint"]
    cfg = video_text_config_from_release(mm_fixture["config"])
    model = VideoTextModel(cfg)
    sd = release_to_model_keys(ck["model"])
    sd = {k: v for k, v in sd.items() if not k.startswith("clip_decoder.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    return model.eval()
