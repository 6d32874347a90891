"""Retrieval evaluation against the release fixture and hand-computed rankings."""
from __future__ import annotations

import pytest
import torch

from videomamba.engine.retrieval import blockwise_similarity, format_retrieval, rerank, retrieval_metrics


@pytest.fixture(scope="module")
def feats(mm_model, mm_fixture):
    with torch.no_grad():
        tok, pooled = mm_model.encode_vision(mm_fixture["video"])
        tt = mm_model.encode_text_tokens(mm_fixture["text_ids"], mm_fixture["text_mask"])
        sim = blockwise_similarity(mm_model.video_embedding(pooled), mm_model.text_embedding(tt), block=2)
    return tok, tt, sim


@pytest.mark.parametrize("k, key, metrics_key", [(2, "k2", "metrics_k2"), (128, "all", "metrics")])
def test_rerank_matches_release(mm_model, mm_fixture, feats, k, key, metrics_key):
    tok, tt, sim = feats
    torch.testing.assert_close(sim, mm_fixture["sim_v2t"], atol=1e-4, rtol=0)
    v2t, t2v = rerank(mm_model, sim, tok, tt, mm_fixture["text_mask"], k_test=k, micro_batch=3)
    if key == "k2":
        torch.testing.assert_close(v2t, mm_fixture["rerank_i2t_k2"], atol=1e-4, rtol=0)
        torch.testing.assert_close(t2v, mm_fixture["rerank_t2i_k2"], atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(v2t, mm_fixture["itm_scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(t2v, mm_fixture["itm_scores_t2i"], atol=1e-4, rtol=0)
    gt_t2i, gt_i2t = mm_fixture["gt_txt2img"], mm_fixture["gt_img2txt"]
    ours = {"test/": retrieval_metrics(v2t, t2v, gt_t2i, gt_i2t),
            "test_emb/": retrieval_metrics(sim, sim.T, gt_t2i, gt_i2t)}
    for split, ref in mm_fixture[metrics_key].items():
        assert {k2: ours[split][k2] for k2 in ref} == ref


def test_metrics_hand_computed():
    # 3 videos, 4 captions; video 0 has captions 0 and 3
    s = torch.tensor([[0.9, 0.1, 0.8, 0.95],     # v0: best caption 3 (a gt) -> rank 1
                      [0.2, 0.3, 0.5, 0.1],      # v1: order 2,1,.. -> gt 1 at rank 2
                      [0.1, 0.2, 0.3, 0.4]])     # v2: order 3,2 -> gt 2 at rank 2
    m = retrieval_metrics(s, s.T, [0, 1, 2, 0], [[0, 3], [1], [2]], ndigits=None)
    assert m["txt_r1"] == pytest.approx(100 / 3) and m["txt_r5"] == 100.0
    assert m["txt_medr"] == 2.0 and m["txt_meanr"] == pytest.approx(5 / 3)
    # t->v: c0 col [0.9,0.2,0.1] -> v0 rank1; c1 [0.1,0.3,0.2] -> v1 rank1; c2 [0.8,0.5,0.3] -> v2 rank3;
    # c3 [0.95,0.1,0.4] -> v0 rank1
    assert m["img_r1"] == 75.0 and m["img_medr"] == 1.0 and m["img_meanr"] == pytest.approx(1.5)
    assert "| ITC only | text→video | 75.0 |" in format_retrieval({"test_emb/": m, "num_videos": 3})


def test_blockwise_similarity_and_size_check():
    a, b = torch.randn(10, 8), torch.randn(7, 8)
    torch.testing.assert_close(blockwise_similarity(a, b, block=3), a @ b.T)
    with pytest.raises(ValueError, match="size 8 .* 6"):
        blockwise_similarity(a, torch.randn(7, 6))
