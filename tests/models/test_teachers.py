"""Teachers: grid matching (resize, tubelet averaging), transformers models from local dirs."""
import pytest
import torch
import torch.nn.functional as F

import videomamba as vm
from videomamba.models.pretrain import VideoMambaPretrain, masked_alignment_step
from videomamba.models.teachers import (IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                                        HFImageTeacher, VideoMambaTeacher, load_teacher)

SMALL = dict(embed_dim=16, depth=2, num_classes=0, num_frames=4, img_size=32)


def test_videomamba_teacher_averages_its_frames_over_the_student_tubelet():
    torch.manual_seed(0)
    tm = vm.VideoMamba(vm.get_config("videomamba_tiny", **SMALL))
    teacher = VideoMambaTeacher(tm)
    x = torch.randn(2, 3, 4, 32, 32)
    full = tm.forward_features(x)                                   # (2, 1 + 4*4, 16), k_teacher = 1
    out = teacher(x, (2, 2, 2))                                     # student tubelet 2 -> t = 2
    patches = full[:, 1:].reshape(2, 4, 4, 16)
    expected = 0.5 * (patches[:, 0::2] + patches[:, 1::2])
    torch.testing.assert_close(out.tokens, expected.reshape(2, 8, 16))
    torch.testing.assert_close(out.cls, full[:, 0])
    assert out.attention is None
    with pytest.raises(ValueError, match="no attention"):
        teacher(x, (2, 2, 2), need_attention=True)


def test_videomamba_teacher_resizes_input_to_the_student_grid():
    torch.manual_seed(0)
    tm = vm.VideoMamba(vm.get_config("videomamba_tiny", **SMALL))
    x = torch.randn(1, 3, 4, 48, 48)                                # student patch 24 -> grid 2x2
    out = VideoMambaTeacher(tm)(x, (4, 2, 2))
    resized = F.interpolate(x.transpose(1, 2).reshape(4, 3, 48, 48), size=(32, 32), mode="bicubic",
                            align_corners=False).reshape(1, 4, 3, 32, 32).transpose(1, 2)
    torch.testing.assert_close(out.tokens, tm.forward_features(resized)[:, 1:])


def test_image_videomamba_teacher_runs_per_frame():
    torch.manual_seed(0)
    tm = vm.VideoMamba(vm.get_config("videomamba_image_tiny", **{**SMALL, "num_frames": 1}))
    x = torch.randn(1, 3, 2, 32, 32)
    out = VideoMambaTeacher(tm)(x, (2, 2, 2))
    per_frame = torch.stack([tm.forward_features(x[:, :, i]) for i in range(2)], 1)  # (1, 2, 5, 16)
    torch.testing.assert_close(out.tokens, per_frame[:, :, 1:].reshape(1, 8, 16))
    torch.testing.assert_close(out.cls, per_frame[:, :, 0].mean(1))


def test_hf_clip_teacher_matches_a_direct_per_frame_computation(hf_teachers):
    teacher = load_teacher(hf_teachers["clip_proj"])
    assert isinstance(teacher, HFImageTeacher) and teacher.dim == 24
    m = teacher.model
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 32, 32)                                # ImageNet-normalised input
    out = teacher(x, (2, 2, 2), need_attention=True)                # tubelet 2
    assert out.tokens.shape == (1, 8, 24) and out.cls.shape == (1, 24) and out.attention.shape == (1, 8)
    # independent recomputation: un-normalise, CLIP-normalise, run each frame, project, average pairs
    imn, isd = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    cmn, csd = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    toks, attns, clss = [], [], []
    with torch.no_grad():
        for i in range(4):
            px = ((x[0, :, i] * isd + imn) - cmn) / csd
            o = m(pixel_values=px[None], output_attentions=True)
            h = m.visual_projection(m.vision_model.post_layernorm(o.last_hidden_state))[0]  # (5, 24)
            toks.append(h[1:])
            clss.append(h[0])
            attns.append(o.attentions[-1][0, :, 0, 1:].mean(0))
    exp_tok = torch.stack([(toks[0] + toks[1]) / 2, (toks[2] + toks[3]) / 2]).reshape(1, 8, 24)
    torch.testing.assert_close(out.tokens, exp_tok, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.cls, torch.stack(clss).mean(0, keepdim=True), rtol=1e-4, atol=1e-5)
    exp_att = torch.stack([(attns[0] + attns[1]) / 2, (attns[2] + attns[3]) / 2]).reshape(1, 8)
    torch.testing.assert_close(out.attention, exp_att, rtol=1e-4, atol=1e-6)


def test_hf_teachers_without_projection_and_vit(hf_teachers):
    plain = load_teacher(hf_teachers["clip_plain"])
    assert plain.dim == 32 and plain.projection is None
    vit = load_teacher(hf_teachers["vit"])
    assert vit.dim == 32 and vit.post_norm is None
    x = torch.randn(2, 3, 2, 64, 64)                               # 64 px: interpolated positions, grid 4x4
    for t in (plain, vit):
        out = t(x, (2, 4, 4), need_attention=True)
        assert out.tokens.shape == (2, 32, 32) and out.attention.shape == (2, 32)
        per_frame = out.attention.view(2, 2, 16).sum(-1)             # a softmax row minus the cls column
        assert ((per_frame > 0) & (per_frame < 1)).all()


def test_attention_masked_pretraining_with_an_hf_teacher(hf_teachers):
    torch.manual_seed(0)
    teacher = load_teacher(hf_teachers["clip_proj"])
    model = VideoMambaPretrain(vm.get_config("videomamba_tiny", **{**SMALL, "tubelet_size": 2}), teacher_dim=24)
    x = torch.randn(2, 3, 4, 32, 32)
    out = masked_alignment_step(model, teacher, x, "attention", 0.5)
    out["loss"].backward()
    assert out["mask"].sum(1).tolist() == [4, 4]                    # per frame int(0.5 * 4) = 2, t = 2
    assert all(p.grad is None for p in teacher.parameters())
    assert model.clip_decoder[0].head.weight.grad is not None


def test_load_teacher_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_teacher(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_teacher(tmp_path / "empty")
    f = tmp_path / "t.pth"
    torch.save(vm.VideoMamba(vm.get_config("videomamba_tiny", **SMALL)).state_dict(), f)
    with pytest.raises(ValueError, match="--teacher-model"):
        load_teacher(f)
    teacher = load_teacher(f, model_name="videomamba_tiny", model_overrides=SMALL)
    assert isinstance(teacher, VideoMambaTeacher) and teacher.dim == 16
