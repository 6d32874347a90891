"""Bad input to the video-text model: clear errors naming the file or field."""
from __future__ import annotations

import pytest
import torch

from videomamba.models.text import TextConfig
from videomamba.models.video_text import VideoTextConfig, VideoTextModel, video_text_config_from_release


def _tiny(**kw):
    return VideoTextConfig(vision=dict(embed_dim=32, depth=1, num_frames=2, img_size=32, patch_size=16, num_classes=0),
                           text=dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, fusion_layer=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=16),
                           embed_dim=8, max_txt_l=8, **kw)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="fusion_layer"):
        TextConfig(num_hidden_layers=4, fusion_layer=5)
    with pytest.raises(ValueError, match="num_attention_heads"):
        TextConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="max_txt_l=20 exceeds"):
        _tiny().replace(max_txt_l=20)
    with pytest.raises(ValueError, match="architecture='VideoMamba'"):
        VideoTextConfig.from_dict({"architecture": "VideoMamba"})
    with pytest.raises(ValueError, match="multimodal.enable"):
        video_text_config_from_release({"model": {"multimodal": {"enable": False}}})


def test_video_width_mismatch_is_named():
    model = VideoTextModel(_tiny()).eval()
    text = torch.randn(2, 8, 32)
    with pytest.raises(ValueError, match="width 48 .* encoder_width=32"):
        model.itm_logits(text, torch.ones(2, 8, dtype=torch.long), torch.randn(2, 5, 48))
    with pytest.raises(ValueError, match=r"expected video \(B, 3, T, H, W\)"):
        model.encode_video(torch.randn(2, 8, 32, 32))
    with pytest.raises(RuntimeError, match="no tokenizer"):
        model.encode_text(["a caption"])


def test_text_checkpoint_without_fusion_layers(tmp_path, mm_fixture):
    from videomamba.models.video_text import load_video_text

    sd = {k: v for k, v in mm_fixture["checkpoint"]["model"].items() if ".crossattention." not in k}
    path = tmp_path / "no_fusion.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(Exception, match="fusion"):
        load_video_text(path)


def test_released_layout_loads_through_the_checkpoint_route(tmp_path, mm_fixture, mm_model):
    """The fixture's checkpoint file (the release's layout, with teacher and MLM head) through
    create_model(None, pretrained=...) gives the same model as the renames in conftest."""
    from videomamba.models.video_text import load_video_text

    path = tmp_path / "release.pth"
    torch.save(mm_fixture["checkpoint"], path)
    # the file's own config is the pre-training run's, without the BERT json: the head count (which no
    # tensor tells) comes from the BERT json given beside it
    model = load_video_text(path, text_config=mm_fixture["config"]["bert_config"]).eval()
    with torch.no_grad():
        a = model.vision_encoder.forward_features(mm_fixture["video"])
        t = model.encode_text_tokens(mm_fixture["text_ids"], mm_fixture["text_mask"])
    torch.testing.assert_close(a, mm_fixture["vision_final_hidden"], atol=1e-4, rtol=0)
    torch.testing.assert_close(t, mm_fixture["text_tokens"], atol=1e-4, rtol=0)
    ours = mm_model.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("clip_decoder."):
            torch.testing.assert_close(v, ours[k], msg=k)
