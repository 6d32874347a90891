"""PatchEmbed under CPU bf16 autocast: the unfolded-patches matmul path against a conv3d oracle."""
import pytest
import torch
import torch.nn.functional as F

from videomamba.layers.embed import PatchEmbed


def _oracle(m: PatchEmbed, x: torch.Tensor) -> torch.Tensor:
    """What bf16 autocast's conv3d computes: bf16-rounded input and weight (bias stays fp32, as
    autocast casts it too), products summed in fp32, rounded to bf16 once."""
    w, b = m.proj.weight.bfloat16().float(), m.proj.bias.bfloat16().float()
    return F.conv3d(x.bfloat16().float(), w, b, stride=m.proj.stride).bfloat16()


@pytest.mark.parametrize("shape,tubelet,patch", [
    ((2, 3, 4, 32, 32), 1, 8),      # divides evenly
    ((1, 3, 5, 38, 35), 2, 8),      # leftovers in t, h and w: dropped, as the conv drops them
    ((1, 1, 2, 16, 16), 1, 16),     # one channel, one patch per frame
])
def test_bf16_autocast_matmul_path_matches_conv3d(shape, tubelet, patch):
    torch.manual_seed(0)
    m = PatchEmbed(patch, tubelet, shape[1], 24).eval()
    x = torch.randn(shape)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert m._as_matmul(x)
        out = m(x)
    want = _oracle(m, x)
    assert out.shape == want.shape and out.dtype == torch.bfloat16
    # one bf16 rounding apart at most (the sums run in another order)
    torch.testing.assert_close(out.float(), want.float(), rtol=2 ** -7, atol=2 ** -7 * want.float().abs().max().item())


def test_other_settings_keep_the_conv():
    torch.manual_seed(0)
    m = PatchEmbed(8, 1, 3, 16).eval()
    x = torch.randn(1, 3, 2, 16, 16)
    assert not m._as_matmul(x)                                   # fp32: the conv
    with torch.autocast("cpu", dtype=torch.float16):
        assert not m._as_matmul(x)                               # fp16 autocast: the conv
    overlapping = PatchEmbed(8, 1, 3, 16, stride=4).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not overlapping._as_matmul(x)                     # overlapping patches: the conv
    torch.testing.assert_close(m(x), F.conv3d(x, m.proj.weight, m.proj.bias, stride=m.proj.stride))


def test_bf16_autocast_input_smaller_than_a_patch_gets_the_convs_error():
    m = PatchEmbed(16, 1, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError):
        m(torch.randn(1, 3, 1, 8, 8))
