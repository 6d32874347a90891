"""Every packaged recipe parses, and builds its model and optimiser (one training step on toy data at a
tiny width); a few recipes are checked value by value against the release's scripts."""
import pytest
import torch
import yaml

from videomamba.engine.config import CONFIG_DIR, list_configs, load_config
from videomamba.engine.trainer import train

from toy import ToyVideos

PREFIXES = ("k400_", "ssv2_", "breakfast_", "coin_", "lvu_", "in1k_", "kaist_")   # the release-reproduction recipes
RECIPES = [n for n in list_configs() if n.startswith(PREFIXES)]
TINY = {"model.embed_dim": 16, "model.depth": 2, "model.patch_size": 16, "data.img_size": 32, "data.batch_size": 2,
        "data.num_workers": 0, "optim.epochs": 1, "train.max_steps": 1, "train.amp": "none", "train.plots": False,
        "train.progress": "none", "train.final_test": False, "optim.accum_steps": 1}


class ToyImages(torch.utils.data.Dataset):
    classes = ["a", "b"]
    num_classes = 2

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"video": torch.randn(3, 32, 32), "label": i % 2, "index": i, "path": f"img_{i}.png"}


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A random 1-block CLIP visual encoder in OpenAI's layout (width 64: one 64-channel head)."""
    g = torch.Generator().manual_seed(0)
    w, p = 64, 16

    def r(*s):
        return torch.randn(*s, generator=g) * 0.02
    sd = {"conv1.weight": r(w, 3, p, p), "class_embedding": r(w), "positional_embedding": r(5, w),
          "ln_pre.weight": torch.ones(w), "ln_pre.bias": torch.zeros(w), "ln_post.weight": torch.ones(w),
          "ln_post.bias": torch.zeros(w), "proj": r(w, 24)}
    pre = "transformer.resblocks.0."
    sd.update({pre + "attn.in_proj_weight": r(3 * w, w), pre + "attn.in_proj_bias": torch.zeros(3 * w),
               pre + "attn.out_proj.weight": r(w, w), pre + "attn.out_proj.bias": torch.zeros(w),
               pre + "ln_1.weight": torch.ones(w), pre + "ln_1.bias": torch.zeros(w),
               pre + "ln_2.weight": torch.ones(w), pre + "ln_2.bias": torch.zeros(w),
               pre + "mlp.c_fc.weight": r(4 * w, w), pre + "mlp.c_fc.bias": torch.zeros(4 * w),
               pre + "mlp.c_proj.weight": r(w, 4 * w), pre + "mlp.c_proj.bias": torch.zeros(w)})
    path = tmp_path_factory.mktemp("clip") / "vit_b16.pth"
    torch.save(sd, path)
    return path


def test_every_recipe_has_a_description_and_a_source():
    from videomamba.commands.train import config_description, format_config_list

    for name in RECIPES:
        text = (CONFIG_DIR / f"{name}.yaml").read_text()
        assert config_description(CONFIG_DIR / f"{name}.yaml"), name
        assert "Source:" in text and "Reported:" in text, name
    listing = format_config_list().splitlines()
    assert len(listing) == len(list_configs())
    assert all(len(line.split(None, 1)) == 2 for line in listing if line.split()[0] in RECIPES)
    assert len(RECIPES) == 72


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_builds_and_steps(name, tmp_path, clip_file):
    cfg = load_config(name)                                     # the recipe as shipped parses and validates
    over = dict(TINY, **{"train.out_dir": str(tmp_path / "run")})
    frames = 4
    over["data.num_frames"] = frames
    over["data.short_side"] = None
    if cfg.model.params.get("num_classes"):
        over["model.num_classes"] = 4
    image = cfg.model.name.startswith("videomamba_image")
    if image:
        data = ToyImages()
        over["model.num_classes"] = 2
    else:
        data = ToyVideos(4, num_classes=4, frames=frames, size=32, regression=cfg.task.type == "regression")
    if cfg.pretrain.mask_type and name.endswith("_pretrain"):
        over["pretrain.teacher"] = str(clip_file)
    res = train(cfg, over, train_dataset=data)
    assert res.step == 1
    opt_cfg = load_config(name, over).optim
    # the recipe's optimiser settings reached the run
    ck = torch.load(res.checkpoint, weights_only=True)
    groups = ck["optimizer"]["param_groups"]
    assert all(tuple(g["betas"]) == tuple(opt_cfg.betas) for g in groups)
    if opt_cfg.layer_decay < 1 and opt_cfg.layer_decay_mode == "release":
        depth = 2                                               # the tiny override
        scales = sorted({round(g["lr_scale"], 12) for g in groups})
        assert scales == sorted({1.0, round(opt_cfg.layer_decay ** (depth + 1), 12)}), scales


def _yaml(name):
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


def test_recipes_match_the_release_scripts_by_hand():
    # video_sm/exp/k400/videomamba_tiny/run_f8x224.sh
    k = load_config("k400_tiny_f8")
    assert (k.optim.epochs, k.optim.base_lr, k.optim.weight_decay, k.model.params["drop_path_rate"]) == (70, 2e-4, 0.1, 0.1)
    assert k.augment.rand_augment == "rand-m5-n2-mstd0.25-inc1" and (k.data.test_clips, k.data.test_crops) == (4, 3)
    assert (k.data.batch_size, k.data.repeat_aug, k.optim.layer_decay_mode) == (64, 2, "release")
    # video_sm/exp/k400/videomamba_middle/run_f16x224.sh: lr 1e-4, drop path 0.8, 50 epochs, default RandAugment
    m = load_config("k400_middle_f16")
    assert (m.optim.base_lr, m.model.params["drop_path_rate"], m.optim.epochs) == (1e-4, 0.8, 50)
    assert m.augment.rand_augment == "rand-m7-n4-mstd0.5-inc1"
    # video_sm/exp/k400/videomamba_small/run_f64x224to384.sh: 384 px, update_freq 2, wd 1e-8, 6 epochs, 1 warm-up
    s = load_config("k400_small_f64_res384")
    assert (s.data.img_size, s.data.short_side, s.optim.accum_steps, s.optim.weight_decay) == (384, 384, 2, 1e-8)
    assert (s.optim.epochs, s.optim.warmup_epochs, s.optim.base_lr) == (6, 1.0, 5e-6)
    # SSv2: no flip, 2 x 3 views, lr 4e-4
    v = load_config("ssv2_small_f8")
    assert v.augment.flip is False and (v.data.test_clips, v.data.test_crops) == (2, 3) and v.optim.base_lr == 4e-4
    # mask fine-tunes: layer decay 0.8; COIN: 10 x 3 views
    assert load_config("k400_middle_mask_f8").optim.layer_decay == 0.8
    assert (load_config("coin_small_f32").data.test_clips, load_config("coin_small_f32").model.params["num_classes"]) == (10, 180)
    # LVU: windows 60 / 16 with the release's rule; regression without mixup
    lv = load_config("lvu_like")
    assert lv.task.type == "regression" and (lv.data.window, lv.data.window_stride, lv.data.window_scheme) == (60, 16, "release")
    # pretraining: attention masks 0.8, betas (0.9, 0.95), 40 warm-up epochs, release teacher targets
    p = load_config("k400_middle_mask_pretrain")
    assert (p.pretrain.mask_type, p.pretrain.mask_ratio, p.optim.betas, p.optim.warmup_epochs) == ("attention", 0.8, (0.9, 0.95), 40)
    assert (p.pretrain.teacher_final_norm, p.pretrain.teacher_input, p.augment.crop) == (False, "imagenet", "multiscale")
    # KAIST: 16 frames at stride 2, lr 3e-4, batch 64, 30 / 35 / 50 epochs
    for ds, ep in (("k400", 30), ("ssv2", 35), ("hmdb51", 50)):
        c = load_config(f"kaist_{ds}_f16")
        assert (c.data.num_frames, c.data.sampling, c.data.sample_stride, c.optim.lr, c.data.batch_size,
                c.optim.epochs) == (16, "dense", 2, 3e-4, 64, ep)
    # images: Ti 8 GPUs x 512 -> lr 5e-4 x 4096 / 512; M distilled from S, 2 x 8 GPUs x 128 -> 2e-3
    assert load_config("in1k_tiny").optim.lr == pytest.approx(4e-3)
    mi = load_config("in1k_middle")
    assert mi.optim.lr == pytest.approx(2e-3) and mi.distill.teacher_model == "videomamba_image_small"
    assert (mi.optim.warmup_epochs, mi.optim.min_lr, mi.optim.clip_grad) == (20, 5e-6, 5.0)
