"""The video-text model against the original code's outputs (../shared/fixtures/official_mm_tiny.pt).

The fixture's checkpoint is in the release's layout; ``conftest.release_to_model_keys`` applies the
renames of the checkpoint route, so this file checks the model itself, tensor by tensor.
"""
from __future__ import annotations

import torch

from videomamba.models.video_text import VideoTextModel, get_sim, mlm_mask, sample_hard_negatives

ATOL = 1e-4


def close(a, b, atol=ATOL):
    torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=0)


def test_vision_tower(mm_model, mm_fixture):
    with torch.no_grad():
        final = mm_model.vision_encoder.forward_features(mm_fixture["video"])
        tok, pooled = mm_model.encode_vision(mm_fixture["video"])
        proj = mm_model.vision_proj(pooled)
    close(final, mm_fixture["vision_final_hidden"])
    close(tok, mm_fixture["vision_tokens"])
    close(pooled, mm_fixture["vision_pooled"])
    close(proj, mm_fixture["vision_proj"])
    close(torch.nn.functional.normalize(proj, dim=-1), mm_fixture["vision_embeds"])


def test_text_tower(mm_model, mm_fixture):
    with torch.no_grad():
        tt = mm_model.encode_text_tokens(mm_fixture["text_ids"], mm_fixture["text_mask"])
        proj = mm_model.project_text(tt)
    close(tt, mm_fixture["text_tokens"])
    close(proj, mm_fixture["text_proj"])
    close(mm_model.text_embedding(tt), mm_fixture["text_embeds"])


def test_similarities_and_embedding_api(mm_model, mm_fixture):
    with torch.no_grad():
        _, pooled = mm_model.encode_vision(mm_fixture["video"])
        tt = mm_model.encode_text_tokens(mm_fixture["text_ids"], mm_fixture["text_mask"])
        v2t, t2v = get_sim(mm_model.vision_proj(pooled), mm_model.project_text(tt))
        v2t_temp, t2v_temp = get_sim(mm_model.vision_proj(pooled), mm_model.project_text(tt), mm_model.temp)
        ev = mm_model.encode_video(mm_fixture["video"])
    close(v2t, mm_fixture["sim_v2t"])
    close(t2v, mm_fixture["sim_t2v"])
    close(v2t_temp, mm_fixture["sim_v2t_temp"])
    close(t2v_temp, mm_fixture["sim_t2v_temp"])
    close(mm_model.temp.detach(), mm_fixture["temp"])
    # the embedding API's dot product is the release's similarity (temperature 1)
    close(ev @ mm_model.text_embedding(tt).T, mm_fixture["sim_v2t"])


def test_matching_scores(mm_model, mm_fixture):
    with torch.no_grad():
        tok, _ = mm_model.encode_vision(mm_fixture["video"])
        tt = mm_model.encode_text_tokens(mm_fixture["text_ids"], mm_fixture["text_mask"])
        nt = tt.shape[0]
        logits = torch.stack([mm_model.itm_logits(tt, mm_fixture["text_mask"], tok[v:v + 1].expand(nt, -1, -1))
                              for v in range(tok.shape[0])])                      # (Bv, Bt, 2)
    close(logits, mm_fixture["itm_logits"])
    close(logits[..., 1], mm_fixture["itm_scores"])
    close(logits[..., 1].T, mm_fixture["itm_scores_t2i"])


def _loss_batch(mm_fixture):
    vi = mm_fixture["loss_video_index"]
    return mm_fixture["video"][vi], mm_fixture["text_ids"], mm_fixture["text_mask"], mm_fixture["loss_idx"]


def test_losses_with_recorded_draws(mm_model, mm_fixture):
    video, ids, mask, idx = _loss_batch(mm_fixture)
    with torch.no_grad():
        out = mm_model(video, ids, mask, idx,
                       negatives=(mm_fixture["vtm_vision_neg_indices"], mm_fixture["vtm_text_neg_indices"]),
                       mlm_inputs=(mm_fixture["mlm_input_ids"], mm_fixture["mlm_labels"]))
    close(out["loss_vtc"], mm_fixture["loss_vtc"])
    close(out["loss_vtm"], mm_fixture["loss_vtm"])
    close(out["loss_mlm"], mm_fixture["loss_mlm"])
    close(out["loss_uta"], mm_fixture["loss_uta"])
    close(out["loss"], mm_fixture["loss_vtc"] + mm_fixture["loss_vtm"] + mm_fixture["loss_mlm"])


def test_random_draws_follow_the_release(mm_model, mm_fixture):
    """Under the fixture's seed, the hard negatives and the MLM masking draw exactly what the
    original drew (same distributions, same order of random calls)."""
    video, ids, mask, idx = _loss_batch(mm_fixture)
    torch.manual_seed(int(mm_fixture["loss_seed"]))
    with torch.no_grad():
        _, pooled = mm_model.encode_vision(video)
        tt = mm_model.encode_text_tokens(ids, mask)
        v2t, t2v = get_sim(mm_model.vision_proj(pooled), mm_model.project_text(tt), mm_model.temp)
        vneg, tneg = sample_hard_negatives(v2t, t2v, idx)
        masked, labels = mlm_mask(ids, mm_model.cfg.text.vocab_size, 0.5)
    assert vneg.tolist() == mm_fixture["vtm_vision_neg_indices"].tolist()
    assert tneg.tolist() == mm_fixture["vtm_text_neg_indices"].tolist()
    assert torch.equal(masked, mm_fixture["mlm_input_ids"])
    assert torch.equal(labels, mm_fixture["mlm_labels"])
    # and the whole forward under that seed gives the recorded losses
    torch.manual_seed(int(mm_fixture["loss_seed"]))
    with torch.no_grad():
        out = mm_model(video, ids, mask, idx)
    close(out["loss_vtm"], mm_fixture["loss_vtm"])
    close(out["loss_mlm"], mm_fixture["loss_mlm"])


def test_config_from_release(mm_fixture):
    from videomamba.models.video_text import video_text_config_from_release

    cfg = video_text_config_from_release(mm_fixture["config"])
    assert (cfg.vision.embed_dim, cfg.vision.depth, cfg.vision.num_frames, cfg.vision.img_size) == (64, 2, 4, 64)
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.fusion_layer, cfg.text.vocab_size) == (64, 4, 2, 512)
    assert (cfg.embed_dim, cfg.max_txt_l, cfg.text.encoder_width, cfg.uta_dim) == (32, 12, 64, 48)
    # the checkpoint's own config (the pre-training run) describes the same model
    cfg2 = video_text_config_from_release(mm_fixture["checkpoint"]["config"])
    assert cfg2.vision.to_dict() == cfg.vision.to_dict()
    # without the BERT json and the vision section: bert-base defaults, vision from tensor shapes
    shapes = {k: tuple(v.shape) for k, v in mm_fixture["checkpoint"]["model"].items()}
    bare = video_text_config_from_release({"model": {}}, vision_shapes=shapes)
    assert (bare.vision.embed_dim, bare.vision.depth, bare.vision.num_frames, bare.vision.img_size) == (64, 2, 4, 64)
    assert (bare.text.hidden_size, bare.text.num_hidden_layers, bare.text.fusion_layer, bare.text.vocab_size) == (
        768, 12, 9, 30522)


def test_state_dict_keys_match_the_release_layout(mm_fixture):
    from conftest import release_to_model_keys

    from videomamba.models.video_text import video_text_config_from_release

    cfg = video_text_config_from_release(mm_fixture["config"]).replace(uta=True)
    model = VideoTextModel(cfg)
    ours = set(model.state_dict())
    theirs = set(release_to_model_keys(mm_fixture["checkpoint"]["model"]))
    assert ours == theirs
