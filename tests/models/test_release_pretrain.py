"""Masked-pretraining fidelity to the release: OpenAI-layout CLIP teacher, its target options,
multi-layer alignment and the MSE / smooth-L1 losses, checked against transformers' CLIP and
hand computations."""
import pytest
import torch
import torch.nn.functional as F

import videomamba.models as vm
from videomamba.models.pretrain import VideoMambaPretrain, alignment_loss, masked_alignment_step
from videomamba.models.teachers import (IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                                        HFImageTeacher, OpenAICLIPTeacher, TeacherOutput, load_teacher)

SMALL = dict(embed_dim=16, depth=3, num_frames=4, img_size=32, patch_size=16, num_classes=0)


def openai_layout(hf_model) -> dict:
    """transformers CLIPVisionModelWithProjection weights renamed / fused into OpenAI's layout."""
    sd = hf_model.state_dict()
    v = "vision_model."
    out = {"conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
           "class_embedding": sd[v + "embeddings.class_embedding"],
           "positional_embedding": sd[v + "embeddings.position_embedding.weight"],
           "ln_pre.weight": sd[v + "pre_layrnorm.weight"], "ln_pre.bias": sd[v + "pre_layrnorm.bias"],
           "ln_post.weight": sd[v + "post_layernorm.weight"], "ln_post.bias": sd[v + "post_layernorm.bias"],
           "proj": sd["visual_projection.weight"].t().contiguous()}
    n = hf_model.config.num_hidden_layers
    for i in range(n):
        h, o = f"{v}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        out[o + "attn.in_proj_weight"] = torch.cat([sd[h + f"self_attn.{q}_proj.weight"] for q in "qkv"])
        out[o + "attn.in_proj_bias"] = torch.cat([sd[h + f"self_attn.{q}_proj.bias"] for q in "qkv"])
        for src, dst in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for kind in ("weight", "bias"):
                out[f"{o}{dst}.{kind}"] = sd[f"{h}{src}.{kind}"]
    return out


@pytest.fixture(scope="module")
def clip_pair(hf_teachers, tmp_path_factory):
    hf = load_teacher(hf_teachers["clip_proj"])
    path = tmp_path_factory.mktemp("oa") / "vit_tiny.pth"
    sd = openai_layout(hf.model)
    sd["conv1.weight"] = sd["conv1.weight"].unsqueeze(2)                 # the release's Conv3d kernel
    torch.save({f"visual.{k}": v for k, v in sd.items()}, path)
    return hf, path


@pytest.mark.parametrize("final_norm", [True, False])
def test_openai_clip_teacher_matches_transformers(clip_pair, final_norm):
    hf, path = clip_pair
    kw = dict(final_norm=final_norm, input_norm="renormalise", return_layers=2)
    oa = load_teacher(path, heads=4, **kw)                       # the tiny test model: 4 heads of 8
    assert isinstance(oa, OpenAICLIPTeacher) and oa.dim == 24 and oa.depth == 2
    ref = HFImageTeacher(hf.model, **kw)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = oa(x, (2, 2, 2), need_attention=True), ref(x, (2, 2, 2), need_attention=True)
    torch.testing.assert_close(a.tokens, b.tokens, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.cls, b.cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.attention, b.attention, rtol=1e-4, atol=1e-6)
    assert len(a.layers) == len(b.layers) == 2
    for (ta, ca), (tb, cb) in zip(a.layers, b.layers):
        torch.testing.assert_close(ta, tb, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ca, cb, rtol=1e-4, atol=1e-5)


def test_release_target_options_by_hand(clip_pair):
    """final_norm=False, input_norm=imagenet: the raw last layer, projected, on the pixels as given."""
    hf, _ = clip_pair
    m = hf.model
    t = HFImageTeacher(m, final_norm=False, input_norm="imagenet")
    x = torch.randn(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    out = t(x, (1, 2, 2))
    with torch.no_grad():
        h = m.vision_model(pixel_values=x[:, :, 0]).last_hidden_state                 # no post layer norm
        expected = m.visual_projection(h)[0]
    torch.testing.assert_close(out.tokens[0], expected[1:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.cls[0], expected[0], rtol=1e-4, atol=1e-5)
    # the default re-normalises ImageNet pixels to CLIP's statistics instead
    t2 = HFImageTeacher(m)
    px = (x[0, :, 0] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
          - torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    with torch.no_grad():
        e2 = m.visual_projection(m.vision_model.post_layernorm(m.vision_model(pixel_values=px[None]).last_hidden_state))
    torch.testing.assert_close(t2(x, (1, 2, 2)).tokens[0], e2[0, 1:], rtol=1e-4, atol=1e-5)


def test_openai_layout_errors_name_the_file(tmp_path):
    f = tmp_path / "notclip.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 16, 16)}, f)
    with pytest.raises(ValueError, match="notclip.pth: not a CLIP visual encoder in OpenAI's layout"):
        load_teacher(f)


def test_multi_layer_student_features_are_the_release_layers():
    """K=2, interval 1, depth 3: [norm_f(stream leaving block 1), stream entering block 2]; with
    interval 2: [norm_f(stream leaving block 0), stream entering block 2]. Reference streams come from
    truncated copies of the backbone (forward_features' stream entering their last block)."""
    torch.manual_seed(0)
    cfg = vm.get_config("videomamba_tiny", **SMALL)
    x = torch.randn(2, 3, 4, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    for interval, shallow in ((1, 1), (2, 0)):
        pre = VideoMambaPretrain(cfg, teacher_dim=8, return_layers=2, interval=interval).eval()
        assert pre.return_index == [shallow, 2]

        def stream_entering(block):                # via a backbone cut after `block`
            sub = vm.VideoMamba(cfg.replace(depth=block + 1)).eval()
            sub.load_state_dict({k: v for k, v in pre.state_dict().items() if k in sub.state_dict()})
            return sub.forward_features(x, return_hidden=True)[1]

        feats = pre.aligned_features(x, mask)
        torch.testing.assert_close(feats[0], pre.norm_f(stream_entering(shallow + 1)))
        torch.testing.assert_close(feats[1], stream_entering(2))
        out = pre(x, mask)
        assert out.shape == (2, 2, 17, 8)
        pos = pre._table(16, x.device)[pre.sequence_positions(mask) + 1]
        torch.testing.assert_close(out[0], pre.clip_decoder[0](feats[0] + pos))
    # norm_f trains when it feeds an aligned layer; the last block never does
    frozen = {n.split(".")[0] + "." + n.split(".")[1] for n, p in pre.named_parameters() if not p.requires_grad}
    assert frozen == {"layers.2"}


def test_losses_by_hand():
    p = F.normalize(torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    t = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1)) * 3
    tn = t / t.norm(dim=-1, keepdim=True)
    assert alignment_loss(p, t, "cosine").item() == pytest.approx((2 - 2 * (p * tn).sum(-1)).mean().item(), rel=1e-5)
    assert alignment_loss(p, t, "mse").item() == pytest.approx(((p - tn) ** 2).mean().item(), rel=1e-5)
    d = (p - tn).abs()
    sl1 = torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()
    assert alignment_loss(p, t, "smooth_l1").item() == pytest.approx(sl1.item(), rel=1e-5)
    with pytest.raises(ValueError, match="alignment loss"):
        alignment_loss(p, t, "l1")


class _TwoLayerTeacher(torch.nn.Module):
    dim, has_attention = 8, False

    def forward(self, x, grid, need_attention=False):
        t, h, w = grid
        g = torch.Generator().manual_seed(3)
        layers = [(torch.randn(x.shape[0], t * h * w, 8, generator=g), torch.randn(x.shape[0], 8, generator=g))
                  for _ in range(2)]
        return TeacherOutput(tokens=layers[-1][0], cls=layers[-1][1], layers=layers)


def test_multi_layer_step_averages_layers_and_weights_the_loss():
    torch.manual_seed(0)
    pre = VideoMambaPretrain(vm.get_config("videomamba_tiny", **SMALL), teacher_dim=8, return_layers=2)
    x = torch.randn(2, 3, 4, 32, 32)
    teacher = _TwoLayerTeacher()
    g = torch.Generator().manual_seed(5)
    out = masked_alignment_step(pre, teacher, x, "random_row", 0.5, generator=g, loss="mse", loss_weight=0.5)
    mask = out["mask"]
    pred = pre(x, mask)                                                     # (2, B, Lv, C)
    tout = teacher(x, pre.token_grid(x))
    from videomamba.models.pretrain import alignment_targets
    tg = torch.stack([alignment_targets(pre, TeacherOutput(tokens=tk, cls=c), mask)[0] for tk, c in tout.layers])
    expected = 0.5 * F.mse_loss(pred, F.normalize(tg, dim=-1))
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    assert pre.norm_f.weight.grad is not None and pre.clip_decoder[1].head.weight.grad is not None


def test_pretraining_on_a_label_free_list_with_the_release_options(tmp_path):
    """train() with a path-only list, an OpenAI-layout CLIP file, random_row masks, 2 layers, MSE."""
    from videomamba.data.synthetic import make_synthetic
    from videomamba.engine.trainer import train

    import transformers

    torch.manual_seed(0)
    cfg = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1,
                                        image_size=32, patch_size=16, projection_dim=24)
    clip = tmp_path / "vit_b16_like.pth"                     # 64-channel heads, as OpenAI's
    torch.save(openai_layout(transformers.CLIPVisionModelWithProjection(cfg)), clip)
    data = make_synthetic(tmp_path / "d", per_class=4, frames=4, size=32, classes=["move_left", "move_right"])
    videos = sorted(str(p) for p in (tmp_path / "d").rglob("*.mp4"))
    lst = tmp_path / "unlabelled.txt"
    lst.write_text("\n".join(videos) + "\n")
    res = train(None, {"model.embed_dim": 16, "model.depth": 3, "model.patch_size": 16, "data.train": str(lst),
                       "data.num_frames": 4, "data.img_size": 32, "data.batch_size": 2, "data.num_workers": 0,
                       "augment.preset": "pretrain", "optim.lr": 1e-3, "optim.epochs": 1, "optim.warmup_steps": 0,
                       "pretrain.teacher": str(clip), "pretrain.mask_type": "random_row", "pretrain.mask_ratio": 0.5,
                       "pretrain.return_layers": 2, "pretrain.loss": "mse", "pretrain.teacher_final_norm": False,
                       "pretrain.teacher_input": "imagenet", "train.out_dir": str(tmp_path / "run"),
                       "train.amp": "none", "train.plots": False, "train.progress": "none"})
    assert res.step >= 1 and (tmp_path / "run/model/model.safetensors").is_file()
    assert res.test is None                                        # pretraining has no test
