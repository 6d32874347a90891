"""Each video-text loss against a hand-computed value (the release fixture checks them too:
test_parity.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videomamba.models.video_text import (gather_with_grad, get_sim, mlm_mask, positive_mask,
                                          sample_hard_negatives, uta_loss, vtc_loss, vtm_loss)


def test_get_sim_is_mean_of_frame_cosines():
    v = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])           # one video, two frames
    t = torch.tensor([[3.0, 0.0], [1.0, 1.0]])             # two captions
    s_v2t, s_t2v = get_sim(v, t, temp=0.5)
    # frame cosines with caption 0: 1, 0 -> mean 0.5; with caption 1: 1/sqrt2 each -> mean 1/sqrt2
    expected = torch.tensor([[0.5, 1 / math.sqrt(2)]]) / 0.5
    torch.testing.assert_close(s_v2t, expected)
    torch.testing.assert_close(s_t2v, expected.T)


def test_vtc_hand_computed():
    # two videos (one frame) and two captions, unit vectors; pairs (0,0), (1,1)
    v = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    temp = 0.5
    sim = torch.tensor([[1.0, 0.6], [0.0, 0.8]]) / temp       # v2t
    lv = -(torch.log_softmax(sim, 1).diagonal()).mean()
    lt = -(torch.log_softmax(sim.T, 1).diagonal()).mean()
    got = vtc_loss(v, t, torch.tensor([0, 1]), temp, gather=False)
    assert float(got) == pytest.approx(float((lv + lt) / 2), abs=1e-6)


def test_vtc_duplicate_ids_share_the_target():
    v = torch.randn(3, 2, 4)
    t = torch.randn(3, 4)
    idx = torch.tensor([0, 0, 1])
    sim, _ = get_sim(v, t, 0.1)
    target = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(positive_mask(idx, normalize=True), target)
    lv = -(F.log_softmax(sim, 1) * target).sum(1).mean()
    lt = -(F.log_softmax(sim.T, 1) * target).sum(1).mean()
    assert float(vtc_loss(v, t, idx, 0.1, gather=False)) == pytest.approx(float((lv + lt) / 2), abs=1e-6)


class _StubITM:
    """itm_logits = (sum of the text's first feature, sum of the video's first feature): a fixed,
    hand-checkable function of which rows are paired."""

    def itm_logits(self, text_tokens, text_mask, video_tokens):
        return torch.stack([text_tokens[:, 0, 0], video_tokens[:, 0, 0]], 1)


def test_vtm_hand_computed_with_given_negatives():
    vt = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)      # video "features" 1, 2, 3
    tt = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)   # text "features"
    mask = torch.ones(3, 1, dtype=torch.long)
    vneg, tneg = torch.tensor([1, 2, 0]), torch.tensor([2, 0, 1])
    loss, _ = vtm_loss(_StubITM(), vt, tt, mask, None, None, torch.arange(3), 1.0, negatives=(vneg, tneg))
    rows = [(10, 1), (20, 2), (30, 3),                    # positives, label 1
            (10, 2), (20, 3), (30, 1),                    # negative video for each text, label 0
            (30, 1), (10, 2), (20, 3)]                    # negative text for each video, label 0
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 0]
    exp = sum(-F.log_softmax(torch.tensor(r, dtype=torch.float), 0)[y] for r, y in zip(rows, labels)) / 9
    assert float(loss) == pytest.approx(float(exp), abs=1e-5)


def test_hard_negatives_never_positive_and_follow_similarity():
    idx = torch.tensor([0, 0, 1, 2])
    sim = torch.zeros(4, 4)
    sim[0, 3] = sim[1, 3] = 50.0                           # caption 3 is by far the hardest for videos 0, 1
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        vneg, tneg = sample_hard_negatives(sim, sim.T, idx, g)
        for i in range(4):
            assert idx[vneg[i]] != idx[i] and idx[tneg[i]] != idx[i]
        assert tneg[0] == 3 and tneg[1] == 3
    # a batch with only positives falls back to uniform rather than failing
    vneg, tneg = sample_hard_negatives(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([5, 5]), g)
    assert vneg.shape == (2,) and tneg.shape == (2,)


def test_mlm_mask_rules_and_rates():
    g = torch.Generator().manual_seed(0)
    ids = torch.full((200, 20), 7)
    ids[:, 0] = 101
    ids[:, 15:] = 0                                        # padding
    masked, labels = mlm_mask(ids, vocab_size=1000, prob=0.5, pad_id=0, cls_id=101, mask_id=103, generator=g)
    picked = labels != -100
    assert not picked[:, 0].any() and not picked[:, 15:].any()     # never CLS or PAD
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(masked[~picked], ids[~picked])
    rate = picked[:, 1:15].float().mean()
    assert 0.45 < rate < 0.55
    became_mask = (masked[picked] == 103).float().mean()
    assert 0.75 < became_mask < 0.85                       # 80 % [MASK]; the rest half random, half kept
    kept = (masked[picked] == 7).float().mean()
    assert 0.07 < kept < 0.14


def test_uta_hand_computed():
    a = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    assert float(uta_loss(a, a * 2)) == pytest.approx(0.0, abs=1e-6)
    b = torch.tensor([[[0.0, 1.0], [0.0, -1.0]]])          # orthogonal (2 - 0), opposite (2 + 2)
    assert float(uta_loss(a, b)) == pytest.approx(3.0, abs=1e-6)


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def _ddp_worker(rank, world, port, q):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    v, t = torch.randn(4, 2, 8), torch.randn(4, 8)
    idx = torch.tensor([0, 1, 2, 3])
    sl = slice(2 * rank, 2 * rank + 2)
    local = vtc_loss(v[sl].clone().requires_grad_(True), t[sl], idx[sl], 0.1, gather=True)
    q.put((rank, float(local), float(vtc_loss(v, t, idx, 0.1, gather=False))))
    dist.destroy_process_group()


@pytest.mark.slow
def test_vtc_gathers_across_ranks():
    import socket

    import torch.multiprocessing as mp

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    out = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for _, local, full in out:
        assert local == pytest.approx(full, abs=1e-5)      # every rank's loss is the whole batch's


def test_caption_positives_share_ids_across_clips_and_reversal():
    """positives='caption': clips whose captions are equal (also after reversal) get one id; 'video'
    keeps the loader's video ids, as the release."""
    from videomamba.engine.video_text import VideoTextTask, caption_id

    seen = {}

    class Stub(torch.nn.Module):
        def tokenize(self, captions):
            return torch.zeros(len(captions), 3, dtype=torch.long), torch.ones(len(captions), 3, dtype=torch.long)

        def forward(self, video, ids, mask, idx, **kw):
            seen["idx"] = idx.tolist()
            return {"loss": torch.zeros(())}

    batch = {"video": torch.zeros(3, 3, 2, 4, 4), "idx": torch.tensor([0, 1, 2]),
             "caption": ["a red oval moving up", "a red oval moving down", "a red oval moving up"]}
    rev = {"moving up": "moving down", "moving down": "moving up"}
    VideoTextTask({"vtc": 1.0}, reverse_map=rev, id_offset=10).train_step(Stub(), batch, torch.device("cpu"))
    assert seen["idx"] == [0, 1, 2, 10, 11, 12]
    VideoTextTask({"vtc": 1.0}, reverse_map=rev, id_offset=10, positives="caption").train_step(
        Stub(), batch, torch.device("cpu"))
    up, down = caption_id("a red oval moving up"), caption_id("a red oval moving down")
    assert up != down and seen["idx"] == [up, down, up, down, up, down]
    with pytest.raises(ValueError, match="positives"):
        VideoTextTask({"vtc": 1.0}, positives="text")


def test_vtc_with_equal_ids_treats_both_as_positives():
    """Two clips with one id: each text's target spreads over both (row-normalised), by hand."""
    from videomamba.models.video_text import vtc_loss

    v = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), dim=-1)
    t = v.clone()
    idx = torch.tensor([7, 8, 7])
    temp = torch.tensor(0.5)
    sim = v @ t.T / 0.5
    target = torch.tensor([[0.5, 0, 0.5], [0, 1.0, 0], [0.5, 0, 0.5]])
    v2t = -(torch.log_softmax(sim, 1) * target).sum(1).mean()
    t2v = -(torch.log_softmax(sim.T, 1) * target).sum(1).mean()
    want = (v2t + t2v) / 2
    assert torch.allclose(vtc_loss(v, t, idx, temp, gather=False), want, atol=1e-6)


def test_vtc_negative_captions_join_the_video_to_text_softmax_only():
    """Captions of no video add columns to each video's v2t softmax (target 0 there) and change
    nothing in t2v; by hand with unit vectors."""
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    neg = torch.tensor([[0.8, 0.6], [0.0, -1.0], [-1.0, 0.0]])
    temp = 0.5
    v2t = torch.tensor([[1.0, 0.6, 0.8, 0.0, -1.0],          # video 0 against t0, t1, then the three negatives
                        [0.0, 0.8, 0.6, -1.0, 0.0]]) / temp
    t2v = torch.tensor([[1.0, 0.0], [0.6, 0.8]]) / temp
    lv = -(torch.log_softmax(v2t, 1)[:, :2].diagonal()).mean()
    lt = -(torch.log_softmax(t2v, 1).diagonal()).mean()
    got = vtc_loss(v, t, torch.tensor([0, 1]), temp, gather=False, text_negatives=neg)
    assert float(got) == pytest.approx(float((lv + lt) / 2), abs=1e-6)
    # an empty set of negatives is the plain loss
    empty = vtc_loss(v, t, torch.tensor([0, 1]), temp, gather=False, text_negatives=neg[:0])
    assert float(empty) == pytest.approx(float(vtc_loss(v, t, torch.tensor([0, 1]), temp, gather=False)), abs=1e-7)


def test_swap_word_replaces_one_phrase_of_one_group():
    import random

    from videomamba.engine.video_text import swap_word

    shapes = ["triangle", "oval", "l shape"]
    colours = ["a red", "an orange"]
    rng = random.Random(0)
    outs = {swap_word("a red l shape moving up", [shapes, colours], rng) for _ in range(200)}
    # every single swap, and nothing else: the two other shapes, or the other colour with its article
    assert outs == {"a red triangle moving up", "a red oval moving up", "an orange l shape moving up"}
    assert swap_word("a red l shape moving up", [["square", "circle"]], rng) is None      # no phrase of a group
    assert swap_word("a triangles row", [shapes], rng) is None                             # whole words only
    assert swap_word("an orange oval", [["oval"], colours], rng) == "a red oval"           # a one-phrase group is skipped


def test_task_negative_captions_reach_the_loss_with_one_word_swapped():
    from videomamba.engine.video_text import VideoTextTask

    seen = {}

    class Stub(torch.nn.Module):
        def tokenize(self, captions):
            seen.setdefault("texts", []).append(list(captions))
            return torch.zeros(len(captions), 3, dtype=torch.long), torch.ones(len(captions), 3, dtype=torch.long)

        def forward(self, video, ids, mask, idx, negative_text=None, **kw):
            seen["neg_rows"] = None if negative_text is None else negative_text[0].shape[0]
            return {"loss": torch.zeros(())}

    shapes = ["triangle", "oval", "kite"]
    batch = {"video": torch.zeros(2, 3, 2, 4, 4), "idx": torch.tensor([0, 1]),
             "caption": ["a red oval moving up", "a blue kite growing"]}
    rev = {"moving up": "moving down", "moving down": "moving up", "growing": "shrinking", "shrinking": "growing"}
    task = VideoTextTask({"vtc": 1.0}, reverse_map=rev, id_offset=10, negative_captions=2, swap_groups=[shapes])
    task.train_step(Stub(), batch, torch.device("cpu"))
    positives, negatives = seen["texts"]
    assert seen["neg_rows"] == 8 and len(negatives) == 8          # 2 clips + 2 reversed, 2 negatives each
    for k, neg in enumerate(negatives):
        pos = positives[k // 2]
        a, b = pos.split(), neg.split()
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(a) == len(b) and len(diff) == 1 and diff[0][0] in shapes and diff[0][1] in shapes
    # the same batch draws the same negatives (a resumed run replays them)
    seen.clear()
    task.train_step(Stub(), batch, torch.device("cpu"))
    assert seen["texts"][1] == negatives
    with pytest.raises(ValueError, match="swap_groups"):
        VideoTextTask({"vtc": 1.0}, negative_captions=1)


def test_model_forward_with_negative_captions_matches_the_loss_from_its_parts():
    """The forward's contrastive loss with negative captions (one text pass for captions and
    negatives) equals vtc_loss over the separately encoded parts."""
    from videomamba.models.video_text import VideoTextConfig, VideoTextModel

    torch.manual_seed(0)
    cfg = VideoTextConfig(vision=dict(embed_dim=32, depth=1, num_frames=2, img_size=32, patch_size=16, num_classes=0),
                          text=dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, fusion_layer=1,
                                    num_attention_heads=2, intermediate_size=64, max_position_embeddings=16),
                          embed_dim=8, max_txt_l=8)
    model = VideoTextModel(cfg).eval()
    video = torch.randn(3, 3, 2, 32, 32)
    ids, mask = torch.randint(5, 50, (3, 8)), torch.ones(3, 8, dtype=torch.long)
    nids, nmask = torch.randint(5, 50, (4, 8)), torch.ones(4, 8, dtype=torch.long)
    nmask[:, 6:] = 0
    idx = torch.tensor([0, 1, 2])
    got = model(video, ids, mask, idx, weights={"vtc": 1.0, "vtm": 0.0, "mlm": 0.0}, negative_text=(nids, nmask))
    with torch.no_grad():
        vproj = model.project_video(model.encode_vision(video)[1])
        tproj = model.project_text(model.encode_text_tokens(ids, mask))
        nproj = model.project_text(model.encode_text_tokens(nids, nmask))
        want = vtc_loss(vproj, tproj, idx, model.temp, gather=False, text_negatives=nproj)
        plain = vtc_loss(vproj, tproj, idx, model.temp, gather=False)
    assert float(got["loss_vtc"].detach()) == pytest.approx(float(want), abs=1e-5)
    assert float(want) > float(plain)                     # the negatives add mass to each video's softmax
