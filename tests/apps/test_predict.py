"""``predict`` / ``eval`` through the one way in: the file decides the model, names come with it,
and trained weights are never dropped silently."""
import json

import numpy as np
import pytest
import torch

import videomamba as vm
from _requirements import require_module
from videomamba.cli import main
from videomamba.data.clip_config import ClipConfig, class_names, guess_dataset
from videomamba.apps.predict import PartialModelError, load_for_inference, predict

SMALL = dict(embed_dim=16, depth=1, num_frames=4, img_size=32, patch_size=16)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    require_module("av", "pip install av")
    from videomamba.data.synthetic import write_mp4

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_mp4(path, rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8))
    return path


def test_shipped_class_lists_are_index_ordered():
    assert len(class_names("Kinetics400")) == 400 and class_names("k400")[0] == "abseiling"
    assert len(class_names("SomethingSomethingV2")) == 174
    assert class_names("Breakfast")[:3] == ["cereals", "coffee", "tea"]      # not alphabetical
    assert len(class_names("COIN")) == 180 and len(class_names("HMDB51")) == 51 and len(class_names("UCF101")) == 101
    with pytest.raises(FileNotFoundError, match="not a file and not a shipped list"):
        class_names("NoSuchDataset")


def test_dataset_from_file_name_or_unique_head_size():
    assert guess_dataset("videomamba_m16_ssv2_mask_ft_f16_res224to288.pth", 174) == "ssv2"
    assert guess_dataset("videomamba_t16_breakfast_f32_res224.pth", 10) == "breakfast"
    assert guess_dataset("my_model.pth", 400) == "k400"
    assert guess_dataset("my_model.pth", 10) is None                          # Breakfast or an LVU task
    model = vm.create_model("videomamba_tiny", **{**SMALL, "num_classes": 174})
    clip = ClipConfig.for_model(model, source="videomamba_s16_ssv2_f8_res224.pth")
    assert (clip.test_clips, clip.test_crops, clip.dataset) == (2, 3, "ssv2")       # the release's SSv2 views
    assert clip.class_names[0] == "Approaching something with your camera"
    assert (clip.num_frames, clip.img_size) == (4, 32)                               # the model's own tables


def test_predict_names_from_a_k400_file(tmp_path, clip_file):
    torch.manual_seed(0)
    model = vm.create_model("videomamba_tiny", **{**SMALL, "num_classes": 400})
    src = tmp_path / "videomamba_t16_k400_f4_res32.pth"
    torch.save(model.state_dict(), src)                     # a bare state dict, as the release saves video models
    preds = predict(clip_file, src, topk=3)
    names = class_names("Kinetics400")
    assert preds[0]["views"] == 12                          # K400's 4 clips x 3 crops
    for t in preds[0]["top"]:
        assert t["label"] == names[t["index"]]


def test_dropped_weights_are_refused_unless_allowed(tmp_path, clip_file, capsys):
    torch.manual_seed(0)
    model = vm.create_model("videomamba_tiny", **{**SMALL, "num_classes": 5})
    vm.save_pretrained(model, tmp_path / "m", extra={"classes": list("abcde")})
    with pytest.raises(PartialModelError, match="head.weight"):
        load_for_inference(tmp_path / "m", num_classes=3)
    # the CLI: preset of another size refused with a clear message, accepted with the flag
    rc = main(["predict", str(clip_file), "-k", str(tmp_path / "m"), "--model", "videomamba_tiny"])
    assert rc == 2 and "patch_embed.proj.weight" in capsys.readouterr().err
    assert main(["predict", str(clip_file), "-k", str(tmp_path / "m"), "--json"]) == 0
    out = capsys.readouterr()
    assert "loaded" in out.err and json.loads(out.out)[0]["top"][0]["label"] in "abcde"


def test_predict_windows(tmp_path, clip_file):
    torch.manual_seed(0)
    model = vm.create_model("videomamba_tiny", **{**SMALL, "num_classes": 5})
    vm.save_pretrained(model, tmp_path / "m")
    preds = predict(clip_file, tmp_path / "m", windows=1.0)                # 16 frames at 8 fps: two windows
    wins = preds[0]["windows"]
    assert [(w["start"], w["end"]) for w in wins] == [(0.0, 1.0), (1.0, 2.0)]
    assert all(abs(sum(t["score"] for t in w["top"]) - 1.0) < 1e-5 for w in wins)
