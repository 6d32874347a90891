"""Parameter groups (weight-decay exclusions, layer decay reaching the blocks), lr rule, schedule."""
import math

import pytest
import torch

from videomamba import create_model
from videomamba.engine.optim import CosineSchedule, build_optimizer, param_groups, scaled_lr


@pytest.fixture(scope="module")
def model():
    return create_model("videomamba_tiny", embed_dim=32, depth=3, num_frames=4, img_size=32, patch_size=8,
                        num_classes=5)


def _by_name(groups):
    return {n: g for g in groups for n in g["param_names"]}


def test_weight_decay_exclusions(model):
    g = _by_name(param_groups(model, weight_decay=0.05, layer_decay=1.0))
    no_decay = {n for n, grp in g.items() if grp["weight_decay"] == 0.0}
    for n in ("pos_embed", "cls_token", "temporal_pos_embedding", "norm_f.weight", "head.bias",
              "patch_embed.proj.bias", "layers.0.mixer.A_log", "layers.0.mixer.A_b_log", "layers.0.mixer.D",
              "layers.0.mixer.D_b", "layers.0.norm.weight", "layers.0.mixer.dt_proj.bias",
              "layers.0.mixer.conv1d.bias"):
        assert n in no_decay, n
    for n in ("head.weight", "patch_embed.proj.weight", "layers.0.mixer.in_proj.weight",
              "layers.0.mixer.out_proj.weight", "layers.2.mixer.x_proj_b.weight", "layers.1.mixer.dt_proj.weight"):
        assert g[n]["weight_decay"] == 0.05, n
    assert set(g) == {n for n, _ in model.named_parameters()}          # every parameter in exactly one group


def test_layer_decay_reaches_every_block(model):
    d = 0.75
    g = _by_name(param_groups(model, 0.05, layer_decay=d))
    depth = model.cfg.depth                                              # layers: embed, 3 blocks, head -> 5
    assert g["head.weight"]["lr_scale"] == 1.0 and g["norm_f.weight"]["lr_scale"] == 1.0
    for i in range(depth):
        expected = d ** (depth - i)                                      # block i has layer id i + 1
        for suffix in ("mixer.in_proj.weight", "mixer.A_log", "norm.weight"):
            assert g[f"layers.{i}.{suffix}"]["lr_scale"] == pytest.approx(expected), (i, suffix)
    for n in ("patch_embed.proj.weight", "pos_embed", "cls_token", "temporal_pos_embedding"):
        assert g[n]["lr_scale"] == pytest.approx(d ** (depth + 1)), n
    # and the optimizer really applies it
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=d)
    sched = CosineSchedule(opt, lr=1e-3, total_steps=10)
    lr0 = {n: grp["lr"] for grp in opt.param_groups for n in grp["param_names"]}
    assert lr0["layers.0.mixer.in_proj.weight"] == pytest.approx(1e-3 * d ** depth)
    assert lr0["head.weight"] == pytest.approx(1e-3)
    sched.step()
    lr1 = {n: grp["lr"] for grp in opt.param_groups for n in grp["param_names"]}
    assert lr1["layers.1.mixer.out_proj.weight"] == pytest.approx(sched.lr_at(1) * d ** (depth - 1))


def test_lr_scaling_rule():
    # release: lr = base x batch x world x accum x clips-per-video / 256
    assert scaled_lr(2e-4, 16, world_size=8, accum_steps=1, repeat_aug=2) == pytest.approx(2e-4 * 256 / 256)
    assert scaled_lr(4e-4, 32, world_size=2, accum_steps=2, repeat_aug=1) == pytest.approx(4e-4 * 0.5)


def test_cosine_schedule_with_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr_scale": 0.5}], lr=0.0)
    s = CosineSchedule(opt, lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.01, warmup_lr=0.1)
    assert s.lr_at(0) == pytest.approx(0.1)
    assert s.lr_at(5) == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert s.lr_at(10) == pytest.approx(1.0)
    assert s.lr_at(60) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.lr_at(110) == pytest.approx(0.01)
    for _ in range(60):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * s.lr_at(60))   # lr_scale applied
    s2 = CosineSchedule(opt, lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.01, warmup_lr=0.1)
    s2.load_state_dict(s.state_dict())
    assert s2.step_count == 60 and opt.param_groups[0]["lr"] == pytest.approx(0.5 * s.lr_at(60))


def test_optimizer_steps_match_the_single_tensor_reference(model):
    """The built optimizer (the fused kernel on CPU) takes the steps torch's single-tensor AdamW
    takes with the same groups, within float rounding, and is bitwise repeatable."""
    def run(make):
        torch.manual_seed(0)
        m = create_model("videomamba_tiny", embed_dim=32, depth=2, num_frames=4, img_size=32, patch_size=8,
                         num_classes=5)
        opt = make(m)
        for step in range(5):
            for p in m.parameters():
                p.grad = torch.sin(p.detach() * (step + 1) + 0.3)          # deterministic, nonzero gradients
            opt.step()
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    built = lambda m: build_optimizer(m, lr=1e-2, weight_decay=0.05, layer_decay=0.8)   # noqa: E731

    def reference(m):
        groups = param_groups(m, weight_decay=0.05, layer_decay=0.8)
        for g in groups:
            g["lr"] = 1e-2 * g["lr_scale"]
        return torch.optim.AdamW(groups, lr=1e-2, foreach=False, fused=False)

    a, b = run(built), run(reference)
    assert build_optimizer(model, lr=1e-3).defaults["fused"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(a, run(built))
