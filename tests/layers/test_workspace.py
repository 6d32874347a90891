"""The inference workspace: blocks share their mixers' temporaries, with unchanged results."""
import pytest
import torch

from videomamba.layers import FULL_FLIP, BiMambaMixer, ScanOrder, Workspace, inference_workspace
from videomamba.layers import workspace as ws_mod
from videomamba.models import VideoMambaConfig, VideoMamba


def _small(**kw):
    torch.manual_seed(0)
    cfg = VideoMambaConfig(img_size=32, patch_size=8, embed_dim=32, depth=3, num_frames=4,
                           num_classes=5, **kw)
    return VideoMamba(cfg).eval()


def test_workspace_hands_out_views_of_one_buffer():
    ws = Workspace()
    a = ws.get("x", (2, 3, 4), torch.float32, "cpu")
    b = ws.get("x", (1, 3, 4), torch.float32, "cpu")       # smaller: same memory
    assert a.shape == (2, 3, 4) and b.shape == (1, 3, 4) and b.is_contiguous()
    assert a.data_ptr() == b.data_ptr()
    c = ws.get("x", (4, 3, 4), torch.float32, "cpu")       # larger: a new buffer replaces it
    assert c.numel() == 48 and ws.nbytes() == 48 * 4
    d = ws.get("x", (4, 3, 4), torch.bfloat16, "cpu")      # another dtype: replaced too
    assert d.dtype == torch.bfloat16 and ws.nbytes() == 48 * 2


def test_workspace_is_open_only_inside_the_block_and_nests():
    assert ws_mod.current() is None
    with inference_workspace() as outer:
        assert ws_mod.current() is outer
        with inference_workspace() as inner:
            assert inner is outer
        assert ws_mod.current() is outer
    assert ws_mod.current() is None


@pytest.mark.parametrize("batch", [1, 2])
def test_mixer_in_a_workspace_matches_the_autograd_path(batch):
    """Every kind of order, fp32 bitwise, and bf16 autocast bitwise against autocast's own casts."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(16).eval()
    x = torch.randn(batch, 9, 16)
    perm = torch.tensor([0, 1, 4, 2, 5, 3, 6, 8, 7])
    for order in (FULL_FLIP, ScanOrder(perm, None, True), ScanOrder(None, perm.flip(0), False)):
        for dtype in (None, torch.bfloat16):
            ac = torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)
            with ac:
                expected = mixer(x, order)
            with torch.inference_mode(), inference_workspace() as ws, ac:
                got = mixer(x, order)
                got2 = mixer(x, order)          # the buffers again, now holding the last call's data
            assert ws.nbytes() > 0
            assert got.dtype == expected.dtype
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            torch.testing.assert_close(got2, expected, rtol=0, atol=0)


def test_model_blocks_share_the_buffers(monkeypatch):
    """Every block's xz is the same memory, the pass frees it, and the logits are the autograd
    path's (bitwise, fp32 and bf16 autocast)."""
    m = _small()
    x = torch.randn(1, 3, 4, 32, 32)
    ptrs = {}
    real_get = Workspace.get

    def spy(self, name, shape, dtype, device):
        t = real_get(self, name, shape, dtype, device)
        ptrs.setdefault(name, set()).add(t.data_ptr())
        return t

    monkeypatch.setattr(Workspace, "get", spy)
    for dtype in (None, torch.bfloat16):
        ac = torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)
        with ac:
            expected = m(x)
        ptrs.clear()
        with torch.inference_mode(), ac:
            got = m(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert set(ptrs) == {"norm", "xz", "u_b", "x_dbl", "delta"} | ({"promoted"} if dtype else set())
        assert all(len(p) == 1 for p in ptrs.values()), ptrs
        assert ws_mod.current() is None
