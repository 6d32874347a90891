"""End to end from the CLI: make-synthetic --captions -> train (retrieval) -> eval -> embed, tiny sizes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from videomamba.cli import main

pytestmark = pytest.mark.slow          # trains a model (about 30 s on 2 cores)

TINY = """
model: {name: videomamba_tiny, embed_dim: 32, depth: 1, patch_size: 16, init: fan_in}
data: {num_frames: 4, img_size: 32, batch_size: 4, num_workers: 0}
augment: {rand_augment: null, random_crop: false, random_erasing: 0.0, flip: false, mixup: 0.0, cutmix: 0.0}
task: {type: retrieval}
video_text:
  text: {hidden_size: 32, num_hidden_layers: 2, fusion_layer: 1, num_attention_heads: 2, intermediate_size: 64}
  embed_dim: 16
  max_txt_l: 10
  vocab_size: 120
  mlm: 1.0
  reverse_pairs: true
  k_test: 3
optim: {lr: 1.0e-3, epochs: 1, warmup_steps: 1}
train: {amp: none, eval_every: 1, log_every: 1, plots: false, progress: none}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vt")
    assert main(["make-synthetic", str(root / "data"), "--captions", "--classes", "move_left", "move_right",
                 "--per-class", "5", "--frames", "4", "--size", "32", "--val-fraction", "0.4"]) == 0
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    assert main(["train", "-c", str(cfg), f"data.train={root / 'data' / 'captions_train.json'}",
                 f"data.val={root / 'data' / 'captions_val.json'}", f"train.out_dir={root / 'run'}"]) == 0
    return root


def test_train_writes_model_with_vocabulary(trained):
    model_dir = trained / "run" / "model"
    assert (model_dir / "vocab.txt").is_file() and (model_dir / "model.safetensors").is_file()
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["architecture"] == "VideoTextModel"
    val = [json.loads(line) for line in (trained / "run" / "metrics.jsonl").read_text().splitlines()
           if json.loads(line).get("kind") == "val"]
    assert val and {"img_r1", "txt_r1", "r_mean", "emb_img_r1"} <= set(val[-1])


def test_resume_continues(trained):
    cfg = trained / "tiny.yaml"
    assert main(["train", "-c", str(cfg), f"data.train={trained / 'data' / 'captions_train.json'}",
                 f"train.out_dir={trained / 'run'}", "optim.epochs=2", "--resume"]) == 0
    summary = json.loads((trained / "run" / "summary.json").read_text())
    assert summary["step"] == 2 * 1 * (6 // 4)


def test_eval_retrieval(trained, capsys):
    out = trained / "eval"
    assert main(["eval", str(trained / "data" / "captions_val.json"), "-k", str(trained / "run" / "model"),
                 "--retrieval", "--k-test", "2", "-o", str(out), "--workers", "0", "--shuffle-frames"]) == 0
    res = json.loads((out / "retrieval.json").read_text())
    assert res["num_videos"] == 4 and res["num_texts"] == 4 and res["k_test"] == 2
    for split in ("test/", "test_emb/"):
        assert 0 <= res[split]["img_r1"] <= 100 and res[split]["img_medr"] >= 1
    assert "shuffled_frames" in res
    assert "| ITC only | text→video |" in (out / "retrieval.md").read_text()


def test_embed_npy_and_safetensors(trained):
    vids = sorted(str(p) for p in (trained / "data" / "videos").rglob("*.mp4"))[:3]
    out = trained / "emb"
    assert main(["embed", "-k", str(trained / "run" / "model"), "--videos", *vids, "--texts",
                 "a red oval moving to the left", "a blue kite", "-o", str(out), "--format", "npy"]) == 0
    v = np.load(out / "video_embeddings.npy")
    t = np.load(out / "text_embeddings.npy")
    assert v.shape == (3, 16) and t.shape == (2, 16)
    assert json.loads((out / "videos.json").read_text())["items"] == vids
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    from videomamba.models.video_text import load_video_text
    model = load_video_text(trained / "run" / "model").eval()
    torch.testing.assert_close(torch.from_numpy(t), model.encode_text(["a red oval moving to the left", "a blue kite"]))
    assert main(["embed", "-k", str(trained / "run" / "model"), "--texts-from",
                 str(trained / "data" / "captions_val.json"), "-o", str(out)]) == 0
    from safetensors.torch import load_file
    assert load_file(str(out / "text_embeddings.safetensors"))["embeddings"].shape == (4, 16)


def test_embed_bad_input(trained, capsys):
    model = str(trained / "run" / "model")
    assert main(["embed", "-k", model, "--videos", str(trained / "missing.mp4"), "-o", str(trained / "e2")]) != 0
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["embed", "-k", model, "--texts", "fine", " ", "-o", str(trained / "e2")]) != 0
    assert "empty" in capsys.readouterr().err
