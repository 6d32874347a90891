"""Frame reorderings (KAIST §5, Table 1), generalised to any number of frames.

The paper defines them on 8 frames (1-indexed):

    original     [1, 2, 3, 4, 5, 6, 7, 8]
    block-wise   [5, 6, 7, 8, 1, 2, 3, 4]   the two halves swapped
    pairwise     [1, 2, 7, 8, 5, 6, 3, 4]   pairs kept intact (a tubelet of 2 stays whole)
    interleaved  [1, 8, 2, 7, 3, 6, 4, 5]   alternating from both ends

Rules for T frames (0-indexed here), chosen so that T = 8 gives the lists above exactly:

- block-wise: rotate by h = T // 2 -> [h, ..., T-1, 0, ..., h-1] (for odd T the first block is
  the longer one and moves to the end).
- pairwise: cut into pairs P_0, P_1, ..., P_{n-1} (the last one is a single frame when T is odd);
  keep P_0 first, then the other pairs in reverse order: P_0, P_{n-1}, P_{n-2}, ..., P_1.
- interleaved: first, last, second, second-to-last, ... : [0, T-1, 1, T-2, ...].

Each is a permutation ``order`` with ``new_clip[:, i] = clip[:, order[i]]``.
"""
from __future__ import annotations

import torch

REORDERINGS = ("original", "block-wise", "pairwise", "interleaved")
_ALIASES = {"blockwise": "block-wise", "block_wise": "block-wise", "block": "block-wise",
            "pair": "pairwise", "pair-wise": "pairwise", "interleave": "interleaved", "identity": "original"}


def canonical_reordering(name: str) -> str:
    n = _ALIASES.get(str(name).lower(), str(name).lower())
    if n not in REORDERINGS:
        raise ValueError(f"reordering {name!r} is not valid; expected one of {', '.join(REORDERINGS)}")
    return n


def frame_order(name: str, num_frames: int) -> list[int]:
    """The 0-indexed frame order of reordering ``name`` for ``num_frames`` frames."""
    name = canonical_reordering(name)
    T = int(num_frames)
    if T < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames!r}")
    idx = list(range(T))
    if name == "original":
        return idx
    if name == "block-wise":
        h = T // 2
        return idx[h:] + idx[:h]
    if name == "pairwise":
        pairs = [idx[i:i + 2] for i in range(0, T, 2)]
        return [f for p in pairs[:1] + pairs[:0:-1] for f in p]
    out = []                                                     # interleaved
    lo, hi = 0, T - 1
    while lo <= hi:
        out.append(lo)
        if hi != lo:
            out.append(hi)
        lo, hi = lo + 1, hi - 1
    return out


def reorder_frames(video: torch.Tensor, order) -> torch.Tensor:
    """Reorder the frame axis (dim -3) of (..., C, T, H, W) by ``order`` (a list or a name)."""
    T = video.shape[-3]
    if isinstance(order, str):
        order = frame_order(order, T)
    order = torch.as_tensor(order, dtype=torch.long, device=video.device)
    if order.numel() != T or not torch.equal(order.sort().values, torch.arange(T, device=video.device)):
        raise ValueError(f"order must be a permutation of {T} frames, got {order.tolist()}")
    return video.index_select(video.dim() - 3, order)


@torch.no_grad()
def evaluate_reorderings(model, batches, names=REORDERINGS, device="cpu", predict=None,
                         max_batches: int | None = None) -> dict[str, dict]:
    """Top-1 / top-5 accuracy (%) of ``model`` on the same clips under each reordering.

    ``batches``: an iterable of dicts with ``video`` (B, 3, T, H, W) or (B, V, 3, T, H, W) and
    ``label`` (B,). ``predict(model, video) -> (B, K)`` scores (default: softmax averaged over
    views). Every reordering sees exactly the same clips, so the differences are the order's alone.
    """
    names = [canonical_reordering(n) for n in names]
    was_training = model.training
    model.eval()

    def default_predict(m, v):
        B = v.shape[0]
        x = v.reshape(-1, *v.shape[-4:])                                          # (B*V, 3, T, H, W)
        return torch.softmax(m(x).float(), -1).reshape(B, x.shape[0] // B, -1).mean(1)

    predict = predict or default_predict
    top1 = {n: 0 for n in names}
    top5 = {n: 0 for n in names}
    total = 0
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            video = batch["video"].to(device)
            y = torch.as_tensor(batch["label"]).to(device).long()
            for n in names:
                scores = predict(model, reorder_frames(video, n))
                k = min(5, scores.shape[-1])
                pred = scores.topk(k, -1).indices
                top1[n] += int((pred[:, 0] == y).sum())
                top5[n] += int((pred == y[:, None]).any(-1).sum())
            total += y.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("no clips to evaluate (the dataset or loader is empty)")
    return {n: {"top1": 100.0 * top1[n] / total, "top5": 100.0 * top5[n] / total, "count": total,
                "order": [i + 1 for i in frame_order(n, video.shape[-3])]} for n in names}


def format_reorder_table(results: dict[str, dict]) -> str:
    """A plain-text table: reordering, 1-indexed order, top-1, top-5, clips."""
    lines = [f"{'reordering':12s} {'frame order (1-indexed)':32s} {'top-1':>7s} {'top-5':>7s} {'clips':>6s}"]
    for n, r in results.items():
        order = ",".join(str(i) for i in r["order"])
        if len(order) > 32:
            order = order[:29] + "..."
        lines.append(f"{n:12s} {order:32s} {r['top1']:7.2f} {r['top5']:7.2f} {r['count']:6d}")
    return "\n".join(lines)
