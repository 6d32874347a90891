"""Scratch buffers that the blocks of one inference pass share instead of allocating anew.

Each mixer needs a few (B, E, L) temporaries: the in-projection ``xz`` (2E rows), the backward
branch's conv output and each direction's ``delta``. Allocated fresh, every one of them is a new
mapping that the process faults in page by page (glibc maps any block of 32 MiB or more, and
returns most freed blocks above its trim threshold to the system). At 64 frames (12545 tokens) a
VideoMamba-Ti forward spent about a third of its time that way. The blocks run one after another,
so one set of buffers serves them all.

``with inference_workspace():`` around a forward makes :func:`current` return a
:class:`Workspace` (nested calls share the outer one); the buffers are freed when the outermost
block ends, so nothing outlives the pass. Only code that runs without autograd may use it: a
buffer is overwritten by the next block.
"""
from __future__ import annotations

import contextlib
import threading

import torch

_local = threading.local()


class Workspace:
    """Named flat buffers, grown on demand and handed out as views of the asked shape."""

    def __init__(self):
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
        """A contiguous tensor of ``shape`` and ``dtype`` on ``device``: the buffer ``name``, whose
        content is undefined. The previous tensor handed out under ``name`` shares its memory."""
        n = 1
        for s in shape:
            n *= int(s)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.device != torch.device(device) or buf.numel() < n:
            self._bufs.pop(name, None)  # free the old one before the new one exists
            buf = torch.empty(n, dtype=dtype, device=device)
            self._bufs[name] = buf
        return buf[:n].view(shape)

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._bufs.values())


def current() -> Workspace | None:
    """The workspace of the enclosing :func:`inference_workspace`, or None."""
    return getattr(_local, "ws", None)


def _may_share() -> bool:
    """Buffers may be shared only without autograd and outside torch.compile / torch.export
    tracing (a traced graph plans its own memory)."""
    return not (torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def usable() -> Workspace | None:
    """:func:`current` where a caller may use it (see :func:`_may_share`), else None."""
    return current() if _may_share() else None


def for_pass():
    """The context a model opens around its blocks: :func:`inference_workspace` where the buffers
    may be shared, else a context that does nothing."""
    return inference_workspace() if _may_share() else contextlib.nullcontext()


@contextlib.contextmanager
def inference_workspace():
    """Opens a :class:`Workspace` for this thread unless one is open; yields it."""
    outer = current()
    if outer is not None:
        yield outer
        return
    _local.ws = ws = Workspace()
    try:
        yield ws
    finally:
        _local.ws = None
