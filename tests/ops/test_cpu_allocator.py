"""The CPU allocator for large tensors that the compiled kernels install (csrc/cpu_allocator.cpp):
blocks of 1 MiB or more are mapped once and reused for requests of the same size, mapped bytes stay
under 1.25x the most bytes in use, smaller requests go to torch's own allocator."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from _requirements import require_cpu_kernel, skip_or_fail

from videomamba.ops import cpu_kernel

MB = 1 << 20


@pytest.fixture(autouse=True)
def _kernel():
    require_cpu_kernel()
    cpu_kernel.load()
    if not cpu_kernel.allocator_stats()["installed"]:
        skip_or_fail(f"the block allocator is off in this process: {cpu_kernel.allocator_state()}",
                     "unset VIDEOMAMBA_CPU_ALLOCATOR")


def _stats():
    return cpu_kernel.allocator_stats()


def test_a_freed_block_serves_the_next_request_of_its_size():
    cpu_kernel.allocator_empty_cache()
    a = torch.empty(3 * MB // 4, dtype=torch.float32)              # 3 MiB
    ptr = a.data_ptr()
    del a
    before = _stats()
    b = torch.ones(3 * MB // 4)
    after = _stats()
    assert b.data_ptr() == ptr
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    assert float(b.sum()) == 3 * MB // 4                          # the memory holds what is written


def test_a_block_serves_requests_down_to_seven_eighths_of_its_size():
    cpu_kernel.allocator_empty_cache()                             # no other block to choose from
    a = torch.empty(8 * MB, dtype=torch.uint8)
    ptr = a.data_ptr()
    del a
    b = torch.empty(7 * MB, dtype=torch.uint8)                     # 7/8: reuses the 8 MiB block
    assert b.data_ptr() == ptr
    del b
    before = _stats()
    c = torch.empty(6 * MB, dtype=torch.uint8)                     # 3/4: maps a block of its own
    assert c.data_ptr() != ptr and _stats()["misses"] == before["misses"] + 1


def test_small_tensors_go_to_torchs_allocator():
    before = _stats()
    xs = [torch.empty(MB // 8) for _ in range(20)]                  # 512 KiB each
    after = _stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
    assert len(xs) == 20


def test_ops_and_onednn_scratch_through_the_allocator():
    """oneDNN (conv2d) allocates and frees its scratch through the raw interface; results match a
    reference computed from unfolded patches."""
    x = torch.randn(2, 3, 64, 64)
    w = torch.randn(16, 3, 5, 5)
    got = F.conv2d(x, w, padding=2)
    cols = F.unfold(x, 5, padding=2)                               # (2, 75, 4096)
    want = (w.view(16, -1) @ cols).view(2, 16, 64, 64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_mapped_bytes_stay_under_the_mark_when_sizes_change():
    """A workload whose sizes keep changing (each tensor freed before the next) unmaps old blocks
    instead of keeping them on top of the new: mapped <= 1.25 x the most bytes in use."""
    r = _run("""
        import torch
        from videomamba.ops import cpu_kernel
        cpu_kernel.load()
        worst = 0.0
        for mb in range(2, 60):
            t = torch.empty(mb << 20, dtype=torch.uint8)
            del t
            s = cpu_kernel.allocator_stats()
            worst = max(worst, (s["in_use_bytes"] + s["cached_bytes"]) / s["peak_in_use_bytes"])
        s = cpu_kernel.allocator_stats()
        print(worst, s["unmapped"], s["peak_mapped_bytes"] / s["peak_in_use_bytes"])
        cpu_kernel.allocator_empty_cache()
        print(cpu_kernel.allocator_stats()["cached_bytes"])
    """)
    assert r.returncode == 0, r.stderr
    (worst, unmapped, peak_ratio), (cached,) = (line.split() for line in r.stdout.split("\n")[:2])
    assert float(worst) <= 1.25 and float(peak_ratio) <= 1.25
    assert int(unmapped) > 0 and int(cached) == 0


def test_forked_children_allocate_and_free():
    """After fork (DataLoader workers) a child uses the same allocator state safely."""
    r = _run("""
        import multiprocessing as mp, torch
        from videomamba.ops import cpu_kernel
        cpu_kernel.load()
        keep = torch.ones(1 << 20)
        def work(i):
            torch.set_num_threads(1)  # as DataLoader workers do: OpenMP's pool does not survive fork
            tot = 0.0
            for _ in range(5):
                t = torch.full((1 << 20,), float(i))
                tot += float(t.sum())
                del t
            return tot
        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(work, [1, 2, 3]))
        print(float(keep.sum()))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [str([5.0 * (1 << 20) * i for i in (1, 2, 3)]), str(float(1 << 20))]


def test_system_choice_and_a_bad_value():
    r = _run("""
        from videomamba.ops import cpu_kernel
        cpu_kernel.load()
        print(cpu_kernel.allocator_state(), cpu_kernel.allocator_stats())
    """, VIDEOMAMBA_CPU_ALLOCATOR="system")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("system (VIDEOMAMBA_CPU_ALLOCATOR=system)") and "'installed': False" in r.stdout
    r = _run("""
        from videomamba.ops import cpu_kernel
        cpu_kernel.load()
    """, VIDEOMAMBA_CPU_ALLOCATOR="jemalloc")
    assert r.returncode != 0
    assert "VIDEOMAMBA_CPU_ALLOCATOR must be 'blocks' or 'system', got 'jemalloc'" in r.stderr
