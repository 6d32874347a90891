"""Checkpoint filter: every released format, adaptation, error messages, own format round trip."""
import argparse
import json

import pytest
import torch

import videomamba as vm
from videomamba.checkpoint import (CheckpointError, checkpoint_filter, load_state_dict_file, parse,
                                   save_pretrained)

KW = dict(embed_dim=32, depth=2, num_classes=5, num_frames=4, img_size=32)


def build(name="videomamba_tiny", **kw):
    torch.manual_seed(0)
    return vm.create_model(name, **{**KW, **kw})


def test_wrappers_and_prefixes():
    sd = build().state_dict()
    for wrapped, fmt in [({"model": sd}, "model"), ({"module": sd}, "module"),
                         ({"model": {f"module.{k}": v for k, v in sd.items()}}, "model / prefix 'module.'"),
                         ({f"backbone.{k}": v for k, v in sd.items()}, "prefix 'backbone.'"),
                         ({"state_dict": {f"encoder.{k}": v for k, v in sd.items()}}, "state_dict / prefix 'encoder.'")]:
        ckpt = parse(wrapped)
        assert ckpt.format == fmt and set(ckpt.state_dict) == set(sd)
    # prefixes are removed key by key: a file may mix them (as the original fine-tune loaders allow)
    mixed = {(f"module.{k}" if i % 2 else k): v for i, (k, v) in enumerate(sd.items())}
    assert set(parse(mixed).state_dict) == set(sd)


def test_image_checkpoint_inflation_centre_and_average():
    img = build("videomamba_image_tiny")
    sd = {k: v for k, v in img.state_dict().items()}
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"][:, :, 0]       # released 2-D kernel
    w2d = sd["patch_embed.proj.weight"]
    video = build(tubelet_size=2)
    out, rep = checkpoint_filter(sd, video, inflate="centre")
    w = out["patch_embed.proj.weight"]
    assert w.shape == (32, 3, 2, 16, 16)
    assert torch.equal(w[:, :, 1], w2d) and torch.equal(w[:, :, 0], torch.zeros_like(w2d))   # k//2 = 1
    out, rep = checkpoint_filter(sd, video, inflate="average")
    assert torch.allclose(out["patch_embed.proj.weight"], w2d.unsqueeze(2).repeat(1, 1, 2, 1, 1) / 2)
    assert "2-D image kernel" in rep.adapted["patch_embed.proj.weight"]
    # the temporal table is absent in image checkpoints: kept at init (zeros) and reported
    assert "temporal_pos_embedding" in rep.missing
    # a 1-frame clip through the average-inflated video model equals... the image model on a frame
    # repeated twice (the kernel sums k copies of w/k)
    video_avg = build(tubelet_size=2, num_classes=5)
    vm.load_checkpoint(video_avg, {"model": sd}, inflate="average")
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(video_avg.eval()(clip), img.eval()(frame), atol=1e-5, rtol=1e-5)


def test_spatial_pos_resampling_keeps_cls_row():
    src = build(img_size=32)
    dst = build(img_size=64)
    out, rep = checkpoint_filter(src.state_dict(), dst)
    pe = out["pos_embed"]
    assert pe.shape == (1, 1 + 16, 32)
    assert torch.equal(pe[:, 0], src.pos_embed[:, 0].detach())
    # bicubic upsampling of a constant table is that constant
    const = {**src.state_dict(), "pos_embed": torch.full((1, 5, 32), 0.5)}
    out, _ = checkpoint_filter(const, dst)
    torch.testing.assert_close(out["pos_embed"][:, 1:], torch.full((1, 16, 32), 0.5))
    assert "spatial 4->16 bicubic" in rep.adapted["pos_embed"]


def test_temporal_linear_resampling():
    src = build(num_frames=2)
    sd = {**src.state_dict(), "temporal_pos_embedding": torch.tensor([0.0, 1.0]).view(1, 2, 1).repeat(1, 1, 32)}
    out, rep = checkpoint_filter(sd, build(num_frames=4))
    # linear, align_corners=False: 2 -> 4 samples at source coords -0.25, 0.25, 0.75, 1.25 (clamped)
    torch.testing.assert_close(out["temporal_pos_embedding"][0, :, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert rep.adapted["temporal_pos_embedding"] == "2->4 frames linear"


@pytest.mark.parametrize("how", ["expand", "interpolate_spatial", "interpolate_dim", "random"])
def test_kaist_joint_table_from_image_table(how):
    img = build("videomamba_image_tiny").state_dict()
    kaist = build("videomamba_kaist_tiny", joint_pos_init=how, num_frames=4)     # t = 2
    out, rep = checkpoint_filter(img, kaist)
    spatial = img["pos_embed"][:, 1:]
    if how == "random":
        assert "pos_embed" not in out and "pos_embed" in rep.missing
        return
    pe = out["pos_embed"]
    assert pe.shape == (1, 1 + 2 * 4, 32)
    assert torch.equal(pe[:, 0], img["pos_embed"][:, 0])
    if how == "expand":
        assert torch.equal(pe[:, 1:5], spatial) and torch.equal(pe[:, 5:], spatial)
    elif how == "interpolate_dim":
        # channel axis 32 -> 64 linear: even/odd output channels of token 0 bracket the input channel
        assert pe.shape[-1] == 32 and torch.isfinite(pe).all()
    else:
        # token axis 4 -> 8 linear: first and last rows equal the ends of the image table
        torch.testing.assert_close(pe[:, 1], spatial[:, 0])
        torch.testing.assert_close(pe[:, -1], spatial[:, -1])


def test_masked_pretrain_checkpoint_norm_rename_and_decoder_dropped():
    sd = build(num_classes=0).state_dict()
    sd["norm.weight"] = sd.pop("norm_f.weight") * 2
    sd["clip_decoder.0.head.weight"] = torch.zeros(3, 3)
    model = build()
    out, rep = checkpoint_filter(sd, model)
    assert torch.equal(out["norm_f.weight"], sd["norm.weight"])
    assert "clip_decoder.0.head.weight" in rep.skipped and rep.unexpected == []
    assert "renamed from norm.weight" in rep.adapted["norm_f.weight"]
    assert set(rep.missing) == {"head.weight", "head.bias"}


def test_vim_middle_cls_row_read_from_the_middle():
    model = build("videomamba_image_tiny")
    sd = dict(model.state_dict())
    S = 4
    pe = torch.arange(S + 1, dtype=torch.float32).view(1, S + 1, 1).repeat(1, 1, 32)
    sd["pos_embed"] = pe                                   # row S//2 = 2 is the cls row
    out, rep = checkpoint_filter(sd, model, cls_row="middle")
    assert out["pos_embed"][0, :, 0].tolist() == [2.0, 0.0, 1.0, 3.0, 4.0]
    assert "middle" in rep.adapted["pos_embed"]
    # detected from the Vim model name in the file's args namespace (no released file has a
    # use_middle_cls_token field)
    wrapped = {"model": sd, "args": argparse.Namespace(model="vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_"
                                                            "pos_embed_with_midclstok_div2", input_size=32)}
    built = vm.create_model(None, pretrained=wrapped)
    assert built.cfg.cls_position == "middle" and built.cfg.merge == "mean" and built.cfg.image
    assert built.pos_embed[0, 0, 0].item() == 2.0


def test_head_dropped_or_sliced():
    src = build(num_classes=10)
    out, rep = checkpoint_filter(src.state_dict(), build(num_classes=5))
    assert "head.weight" not in out and rep.adapted["head.weight"].startswith("dropped")
    idx = [9, 7, 5, 3, 1]
    out, rep = checkpoint_filter(src.state_dict(), build(num_classes=5), head_indices=idx)
    assert torch.equal(out["head.weight"], src.head.weight.detach()[idx])
    assert rep.adapted["head.bias"] == "sliced 10->5 classes"


def test_different_architecture_is_a_clear_error():
    with pytest.raises(CheckpointError, match=r"patch_embed.proj.weight: checkpoint has shape \(32, 3, 1, 16, 16\), "
                                              r"model expects \(64, 3, 1, 16, 16\)"):
        vm.load_checkpoint(build(embed_dim=64), build().state_dict())
    with pytest.raises(CheckpointError, match=r"layers.0.mixer.A_log: checkpoint has shape \(64, 16\), "
                                              r"model expects \(64, 8\)"):
        vm.load_checkpoint(build(d_state=8), build().state_dict())
    with pytest.raises(CheckpointError, match="first mismatch: layers.2"):
        vm.load_checkpoint(build(depth=3), build().state_dict())
    with pytest.raises(CheckpointError, match="no state dict found"):
        vm.load_checkpoint(build(), {"epoch": 1, "args": {}})


def test_files_safe_loading_and_errors(tmp_path):
    model = build()
    p = tmp_path / "ckpt.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=1e-3), "epoch": 5}, p)
    sd = load_state_dict_file(p)            # weights_only with the Namespace allow-list
    assert isinstance(sd["args"], argparse.Namespace)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    q = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "x": Evil()}, q)
    with pytest.raises(CheckpointError, match="outside the safe allow-list"):
        load_state_dict_file(q)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pth could not be read"):
        load_state_dict_file(trunc)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict_file(empty)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_state_dict_file(tmp_path / "nothere.pth")


def test_own_format_round_trip(tmp_path):
    model = build(pos_embed="joint", tubelet_size=2, scan_order="temporal_first").eval()
    save_pretrained(model, tmp_path / "m", extra={"classes": list("abcde")})
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["scan_order"] == "temporal_first" and cfg["extra"]["classes"] == list("abcde")
    again = vm.create_model(None, pretrained=tmp_path / "m").eval()
    x = torch.randn(1, 3, 4, 32, 32)
    assert torch.equal(again(x), model(x))
    # overrides on top (more frames): weights adapted through the filter
    longer = vm.create_model(None, pretrained=tmp_path / "m", num_frames=8)
    assert longer.pos_embed.shape[1] == 1 + 4 * 4
    assert "joint" in longer.load_report.adapted["pos_embed"]
