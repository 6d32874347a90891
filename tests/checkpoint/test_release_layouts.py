"""Every original layout loads into the model it was saved from and reproduces the original's numbers.

The fixtures are outputs of the original public code (tests/fixtures/README.md): a video
classifier state dict, a Vim training file (``args`` Namespace, EMA weights), a masked-pretraining
student (``norm`` final norm, decoder, numpy scalars in the optimizer state) and a video-text
checkpoint. Each is checked through ``create_model(pretrained=...)``, through ``convert`` + reload,
and through ``predict``'s scoring.
"""
import json

import pytest
import torch

import videomamba as vm
from _requirements import FIXTURE_HOW, fixtures_dir, require_file
from videomamba.checkpoint import CheckpointError, read_checkpoint
from videomamba.cli import main

ATOL = 1e-4


def fixture(name: str):
    return require_file(fixtures_dir() / name, FIXTURE_HOW)


def load_io(name: str) -> dict:
    return torch.load(fixture(name), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
    """The video classifier's state dict saved as the release saves video models: a bare dict."""
    data = load_io("official_tiny_t1.pt")
    path = tmp_path_factory.mktemp("official") / "videomamba_t16_tiny_f4_res64.pth"
    torch.save(data["state_dict"], path)
    return path, data


@pytest.fixture(scope="module")
def mm_pth(tmp_path_factory):
    """The video-text checkpoint, saved exactly as the original pre-training script writes it."""
    data = load_io("official_mm_tiny.pt")
    path = tmp_path_factory.mktemp("mm") / "videomamba_m16_tiny_f4_res64.pth"
    torch.save(data["checkpoint"], path)
    return path, data


def _features(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


# ----------------------------------------------------------------------------- the file decides
def test_video_classifier_file_decides_the_model(official_pth):
    path, data = official_pth
    c = json.loads(data["config"])
    model = vm.create_model(None, pretrained=path).eval()
    cfg = model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_classes, cfg.num_frames, cfg.img_size, cfg.patch_size,
            cfg.tubelet_size) == (c["embed_dim"], c["depth"], c["num_classes"], c["num_frames"], c["img_size"],
                                  c["patch_size"], c["kernel_size"])
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(model(data["input"]), data["logits"], atol=ATOL, rtol=0)
        torch.testing.assert_close(_features(model, data["input"]), data["features"], atol=ATOL, rtol=0)


def test_vim_training_file():
    io = load_io("vim_midcls_tiny_io.pt")
    model = vm.create_model(None, pretrained=fixture("vim_midcls_tiny.pth")).eval()
    cfg = model.cfg
    # what the tensors do not tell comes from args.model: middle cls, div2 = mean merge, image model
    assert (cfg.cls_position, cfg.merge, cfg.image, cfg.img_size, cfg.num_classes) == ("middle", "mean", True, 64, 10)
    rep = model.load_report
    assert rep.format == "model" and rep.missing == [] and rep.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], atol=ATOL, rtol=0)
        torch.testing.assert_close(_features(model, io["input"]), io["features"], atol=ATOL, rtol=0)
        tokens = model.forward_features(io["input"])
    torch.testing.assert_close(tokens, io["final_norm_all_tokens"], atol=ATOL, rtol=0)
    ema = vm.create_model(None, pretrained=fixture("vim_midcls_tiny.pth"), use_ema=True).eval()
    assert ema.load_report.format == "model_ema"
    with torch.no_grad():
        torch.testing.assert_close(ema(io["input"]), io["logits_model_ema"], atol=ATOL, rtol=0)


def test_masked_pretraining_student():
    io = load_io("mask_pt_tiny_io.pt")
    # weights_only reading of the whole file: its optimizer state holds numpy scalars (allow-listed)
    ckpt = read_checkpoint(fixture("mask_pt_tiny.pth"))
    assert ckpt.args["model"] == "videomamba_middle_pretrain"
    model = vm.create_model(None, pretrained=fixture("mask_pt_tiny.pth")).eval()
    rep = model.load_report
    assert model.cfg.num_classes == 0 and model.cfg.num_frames == 4 and model.cfg.img_size == 64
    assert "norm.weight" in rep.adapted["norm_f.weight"]
    assert sorted(rep.skipped) == sorted(k for k in ckpt.state_dict if k.startswith("clip_decoder."))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(io["input"]), io["final_norm_unmasked"], atol=ATOL, rtol=0)
        torch.testing.assert_close(_features(model, io["input"]), io["features_unmasked"], atol=ATOL, rtol=0)
    # the original fine-tuning loader left norm_f at ones: that is measurably different
    assert (io["features_unmasked"] - io["features_unmasked_ft_loaded"]).abs().max() > 0.1


def test_video_text_file_vision_tower_into_a_classifier(mm_pth):
    """A video-text file whose keys are only partly prefixed loads into a backbone (prefixes per key)."""
    path, data = mm_pth
    model = vm.create_model(None, pretrained=path, vision_only=True).eval()
    rep = model.load_report
    assert rep.missing == [] and rep.unexpected == []
    assert {k.split(".")[0] for k in rep.skipped} >= {"clip_teacher", "text_encoder", "vision_proj", "itm_head"}
    assert "temp" in rep.skipped
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(data["video"]), data["vision_final_hidden"],
                                   atol=ATOL, rtol=0)
    # with a preset (and more classes) the vision part goes into that model, head at init, reported
    clf = vm.create_model("videomamba_tiny", pretrained=path, embed_dim=64, depth=2, num_frames=4, img_size=64,
                          num_classes=7)
    assert set(clf.load_report.missing) == {"head.weight", "head.bias"}
    assert "num_classes" in clf.load_report.config


def test_video_text_file_full_model(mm_pth):
    path, data = mm_pth
    bert = data["config"]["bert_config"]
    model = vm.create_model(None, pretrained=path, text_config=bert).eval()
    rep = model.load_report
    assert rep.missing == [] and rep.unexpected == []
    assert "text_encoder.*" in rep.adapted and "mlm_head.*" in rep.adapted
    from videomamba.data.clip_config import ClipConfig
    clip = ClipConfig.for_model(model)                  # preprocessing travels with the model
    assert (clip.task, clip.num_frames, clip.img_size) == ("retrieval", 4, 64)
    with torch.no_grad():
        video = model.encode_video(data["video"])
        text_tokens = model.encode_text_tokens(data["text_ids"], data["text_mask"])
        text = model.text_embedding(text_tokens)
    torch.testing.assert_close(text_tokens, data["text_tokens"], atol=ATOL, rtol=0)
    torch.testing.assert_close(text, data["text_embeds"], atol=ATOL, rtol=0)
    torch.testing.assert_close(video @ text.T, data["sim_v2t"], atol=ATOL, rtol=0)
    # without the BERT json the head count is an assumption, and the report says so
    guess = vm.create_model(None, pretrained=path)
    assert "num_attention_heads" in guess.load_report.config["text.num_attention_heads"] or \
        "text_config" in guess.load_report.config["text.num_attention_heads"]


# ------------------------------------------------------------------------- convert + reload
@pytest.mark.parametrize("name", ["official", "vim", "mask_pt"])
def test_convert_then_reload_reproduces_the_original(name, official_pth, tmp_path, capsys):
    if name == "official":
        src, data = official_pth
        x, want, what = data["input"], data["logits"], "logits"
    elif name == "vim":
        src, data = fixture("vim_midcls_tiny.pth"), load_io("vim_midcls_tiny_io.pt")
        x, want, what = data["input"], data["logits"], "logits"
    else:
        src, data = fixture("mask_pt_tiny.pth"), load_io("mask_pt_tiny_io.pt")
        x, want, what = data["input"], data["features_unmasked"], "features"
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "check against the file's own model:" in out and "max |difference| = 0\n" in out
    again = vm.create_model(None, pretrained=tmp_path / "out").eval()
    with torch.no_grad():
        got = again(x) if what == "logits" else _features(again, x)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_convert_video_text_then_reload(mm_pth, tmp_path):
    from videomamba.apps.convert import convert_checkpoint

    path, data = mm_pth
    convert_checkpoint(path, tmp_path / "mm", text_config=data["config"]["bert_config"])
    again = vm.create_model(None, pretrained=tmp_path / "mm").eval()
    assert again.load_report.missing == [] and again.load_report.unexpected == []
    with torch.no_grad():
        sim = again.encode_video(data["video"]) @ again.text_embedding(
            again.encode_text_tokens(data["text_ids"], data["text_mask"])).T
    torch.testing.assert_close(sim, data["sim_v2t"], atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------- through predict
def test_predict_scores_reproduce_the_original(official_pth):
    from videomamba.apps.predict import score_views

    path, data = official_pth
    model = vm.create_model(None, pretrained=path).eval()
    # one view per video: the softmax of the original's logits
    for i in range(data["input"].shape[0]):
        p = score_views(model, data["input"][i:i + 1])
        torch.testing.assert_close(p, data["logits"][i].softmax(-1), atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------- bad input
def test_bad_files_are_clear_errors(tmp_path, official_pth):
    path, data = official_pth
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="trunc.pth could not be read"):
        vm.create_model(None, pretrained=trunc)
    junk = tmp_path / "notes.pth"
    torch.save({"epoch": 3, "lr": 0.1}, junk)
    with pytest.raises(CheckpointError, match=r"notes.pth: no state dict found; top-level keys \['epoch', 'lr'\]"):
        vm.create_model(None, pretrained=junk)
    text_only = tmp_path / "text.pth"
    torch.save({"text_encoder.bert.embeddings.word_embeddings.weight": torch.zeros(10, 4)}, text_only)
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight"):
        vm.create_model(None, pretrained=text_only)
    # a head that cannot be adapted: different width
    sd = dict(data["state_dict"])
    sd["head.weight"] = torch.zeros(10, 32)
    bad = tmp_path / "bad_head.pth"
    torch.save(sd, bad)
    model = vm.create_model(None, pretrained=path)
    with pytest.raises(CheckpointError, match=r"head.weight: checkpoint has shape \(10, 32\)"):
        vm.load_checkpoint(model, bad, head_indices=list(range(10)))


def test_video_text_without_fusion_layers_is_refused(mm_pth, tmp_path):
    path, data = mm_pth
    ck = dict(data["checkpoint"])
    ck["model"] = {k: v for k, v in ck["model"].items() if "crossattention" not in k}
    p = tmp_path / "nofusion.pth"
    torch.save(ck, p)
    with pytest.raises(CheckpointError, match="no cross-attention"):
        vm.create_model(None, pretrained=p)


def test_easydict_configs_load_without_the_package(tmp_path, official_pth):
    """The video-text scripts pickle EasyDict configs; they read as plain dicts, no code runs."""
    import sys
    import types

    mod = types.ModuleType("easydict")

    class EasyDict(dict):
        def __init__(self, d=None):
            super().__init__(d or {})
            for k, v in (d or {}).items():
                setattr(self, k, v)
    EasyDict.__module__, EasyDict.__qualname__ = "easydict", "EasyDict"
    mod.EasyDict = EasyDict
    sys.modules["easydict"] = mod
    try:
        path, data = official_pth
        p = tmp_path / "ed.pth"
        torch.save({"model": data["state_dict"], "config": EasyDict({"num_frames": 4, "lr": 1e-4})}, p)
    finally:
        del sys.modules["easydict"]
    ckpt = read_checkpoint(p)
    assert ckpt.release_config == {"num_frames": 4, "lr": 1e-4}
