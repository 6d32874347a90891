"""Caption annotation formats, bad input, and the tokenizer (trained WordPiece, release settings)."""
from __future__ import annotations

import json

import pytest

from videomamba.data.captions import CaptionError, VideoTextDataset, check_files, dataset_preset, read_video_text
from videomamba.models.text import TextTokenizer, pre_text, train_wordpiece


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def test_release_json_layout_single_and_several_captions(tmp_path):
    ann = [{"video": "a.mp4", "caption": "a man is cooking"},
           {"video": "b.mp4", "caption": ["a dog runs", "a dog is running fast"]},
           {"video": "a.mp4", "caption": "someone cooks"}]
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(ann))
    vids = read_video_text(f, root=tmp_path / "videos")
    assert [v.path.name for v in vids] == ["a.mp4", "b.mp4"]
    assert vids[0].captions == ["a man is cooking", "someone cooks"]
    assert vids[1].captions == ["a dog runs", "a dog is running fast"]
    assert vids[0].path == tmp_path / "videos" / "a.mp4"
    # paragraph retrieval (DiDeMo / ActivityNet): the sentences become one caption
    para = read_video_text(f, paragraph=True)
    assert para[1].captions == ["a dog runs a dog is running fast"]
    assert dataset_preset("didemo") == (True, 64) and dataset_preset("anet") == (True, 150)
    assert dataset_preset("msrvtt") == (False, 32) and dataset_preset("lsmdc") == (False, 96)
    assert dataset_preset("msvd") == (False, 64)


def test_retrieval_index_maps(tmp_path):
    for n in ("a.mp4", "b.mp4"):
        _touch(tmp_path / n)
    f = tmp_path / "ann.json"
    f.write_text(json.dumps([{"video": "a.mp4", "caption": ["x", "y"]}, {"video": "b.mp4", "caption": "z"}]))
    ds = VideoTextDataset(f, train=False)
    assert ds.texts == ["x", "y", "z"] and ds.txt2img == [0, 0, 1] and ds.img2txt == [[0, 1], [2]]
    tr = VideoTextDataset(f, train=True)
    assert len(tr) == 3 and [s.label for s in tr.items] == [0, 0, 1]   # one pair per caption, video ids


def test_csv_and_images(tmp_path):
    _touch(tmp_path / "v1.mp4")
    f = tmp_path / "mine.csv"
    f.write_text('path,caption\nv1.mp4,"a cat, sleeping"\nv1.mp4,a cat\nimg.jpg,a photo\n')
    vids = read_video_text(f)
    assert vids[0].captions == ["a cat, sleeping", "a cat"] and vids[1].is_image
    with pytest.raises(CaptionError, match="mixes images and videos"):
        _touch(tmp_path / "img.jpg")
        VideoTextDataset(f, train=False)


def test_bad_annotations_name_the_file(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"video": "a.mp4"}]))
    with pytest.raises(CaptionError, match=r"bad.json entry 0: no 'caption'"):
        read_video_text(f)
    f.write_text(json.dumps([{"caption": "x"}]))
    with pytest.raises(CaptionError, match="no 'video' or 'image'"):
        read_video_text(f)
    f.write_text(json.dumps([{"video": "a.mp4", "caption": 3}]))
    with pytest.raises(CaptionError, match="'caption' must be a string"):
        read_video_text(f)
    c = tmp_path / "bad.csv"
    c.write_text("onlyapath\n")
    with pytest.raises(CaptionError, match="bad.csv line 1"):
        read_video_text(c)


def test_missing_videos_named_or_skipped(tmp_path):
    _touch(tmp_path / "here.mp4")
    f = tmp_path / "ann.json"
    f.write_text(json.dumps([{"video": "here.mp4", "caption": "a"}, {"video": "gone.mp4", "caption": "b"}]))
    vids = read_video_text(f)
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        check_files(vids)
    keep, missing = check_files(vids, skip_missing=True)
    assert [v.path.name for v in keep] == ["here.mp4"] and len(missing) == 1


def test_pre_text_matches_release():
    assert pre_text("A Man's dog-walk, (at) the park!") == "a mans dog walk at the park"
    assert pre_text("left/right  turn") == "left right turn"


def test_trained_wordpiece_tokenizer(tmp_path):
    caps = ["a red triangle moving to the left", "a blue oval growing", "a green kite moving up"] * 3
    vocab = train_wordpiece(caps, tmp_path / "vocab.txt", vocab_size=120)
    lines = vocab.read_text().splitlines()
    assert lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = TextTokenizer(vocab, max_length=8)
    ids, mask = tok(["A red triangle, moving to the LEFT!", "a blue oval"])
    assert ids.shape == (2, 8) and mask.shape == (2, 8)
    assert ids[0, 0] == tok.cls_token_id and ids[1, mask[1].sum() - 1] == tok.sep_token_id
    assert (ids[1, mask[1].sum():] == tok.pad_token_id).all()
    assert tok.last_truncated == 1                         # the first caption needs more than 8 tokens
    assert ids[0, -1] == tok.sep_token_id                  # truncated captions still end with [SEP]
    with pytest.raises(ValueError, match="empty"):
        tok(["a red oval", "  "])
    with pytest.raises(ValueError, match="special token"):
        bad = tmp_path / "bad.txt"
        bad.write_text("hello\nworld\n")
        TextTokenizer(bad)


def test_config_pooling_reaches_the_model(tmp_path):
    """video_text.pool_type / keep_temporal build the model they name (engine setup hook)."""
    from types import SimpleNamespace

    import torch

    from videomamba.engine import video_text
    from videomamba.engine.config import load_config

    cfg = load_config({"model": {"name": "videomamba_tiny", "embed_dim": 32, "depth": 1, "patch_size": 16},
                       "data": {"num_frames": 4, "img_size": 32}, "task": {"type": "retrieval"},
                       "video_text": {"text": {"hidden_size": 32, "num_hidden_layers": 2, "fusion_layer": 1,
                                               "num_attention_heads": 2, "intermediate_size": 64},
                                      "embed_dim": 16, "max_txt_l": 10, "vocab_size": 120,
                                      "pool_type": "avg", "keep_temporal": False}})
    tr = SimpleNamespace(cfg=cfg, out_dir=tmp_path, info=SimpleNamespace(is_main=True), say=lambda *a: None,
                         train_dataset=SimpleNamespace(texts=["a red circle moving up", "a blue kite growing"]))
    tr.place_model = lambda m: setattr(tr, "model", m)
    video_text.setup_model(tr)
    assert (tr.model.cfg.pool_type, tr.model.cfg.keep_temporal) == ("avg", False)
    tok, pooled = tr.model.encode_vision(torch.randn(2, 3, 4, 32, 32))
    assert pooled.shape == (2, 1, 32)                           # one feature per clip, not per frame
    torch.testing.assert_close(pooled, tr.model.pool_norm(tok.mean(1, keepdim=True)))
