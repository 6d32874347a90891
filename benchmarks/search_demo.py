"""Video search demo: find moments in a long video by text, with the retrieval demo's trained model.

1. Joins the retrieval demo's held-out clips whose captions are all distinct into one long video
   (each clip is one second: 8 frames at 8 fps), re-encoded as h264 like any user's footage;
2. indexes it with ``videomamba index`` (windows of 1 s every 1 s: one window per clip);
3. asks every clip's caption as a text query (``videomamba search``) and checks where the top
   moment is: the right second (R@1 over the whole video), and whether the top moment's clip has the
   query's motion ("moving to the left", "growing", ...), colour and shape.

Needs ``python benchmarks/retrieval_demo.py`` first (its data and model). Writes
``benchmarks/results/search_demo.json`` (repo-relative paths, the CPU model name).

    python benchmarks/search_demo.py [--demo videomamba-retrieval-demo]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the harness package next to this file
from harness.machine import cpu_name  # noqa: E402
from harness.paths import print_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="videomamba-retrieval-demo", help="the retrieval demo's work folder")
    ap.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "search_demo.json"))
    ap.add_argument("--no-result", action="store_true", help="print only")
    args = ap.parse_args(argv)

    import numpy as np

    from retrieval_demo import distinct_caption_set
    from videomamba.cli import main as cli
    from videomamba.data.synthetic import caption_parts
    from videomamba.data.video import open_video, write_video

    demo = Path(args.demo)
    data, model = demo / "data", demo / "run" / "model"
    if not (model / "config.json").is_file():
        print(f"no trained model at {model}: run python benchmarks/retrieval_demo.py first", file=sys.stderr)
        return 2
    items = distinct_caption_set(json.loads((data / "captions_val.json").read_text()))
    work = demo / "search"
    work.mkdir(parents=True, exist_ok=True)
    video = work / "footage" / "long.mp4"
    fps, starts, frames = 8, [], []
    for it in items:
        with open_video(data / it["video"]) as r:
            clip = r.get_frames(list(range(r.info.num_frames))).numpy()         # (T, H, W, 3) uint8
        starts.append(len(frames) / fps)
        frames.extend(clip)
    write_video(video, np.stack(frames), fps=fps)
    clip_s = len(frames) / fps / len(items)

    index = work / "long.index"
    if index.exists():
        import shutil
        shutil.rmtree(index)
    t0 = time.perf_counter()
    rc = cli(["index", str(video.parent), "-k", str(model), "-o", str(index), "--window", str(clip_s),
              "--stride", str(clip_s), "--no-progress"])
    index_s = time.perf_counter() - t0
    if rc:
        return rc

    from videomamba.apps.search import Index, load_embedder

    emb = load_embedder(model)
    hits_at, same = [], {"colour": 0, "shape": 0, "motion": 0}
    t0 = time.perf_counter()
    with Index.open(index) as ix:
        for i, it in enumerate(items):
            top = ix.search(it["caption"], topk=1, embedder=emb, merge=False)[0]
            j = int(round(top.start / clip_s))
            hits_at.append(j == i)
            want, got = caption_parts(it["caption"]), caption_parts(items[j]["caption"])
            for k in same:
                same[k] += want[k] == got[k]
    query_s = time.perf_counter() - t0
    n = len(items)
    result = {
        "task": "text queries for moments in one long video made of held-out captioned clips",
        "command": "python benchmarks/search_demo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "the retrieval demo's model (benchmarks/retrieval_demo.py)", "cpu": cpu_name(),
        "video_seconds": round(len(frames) / fps, 1), "windows": n, "window_s": clip_s,
        "index_time_s": round(index_s, 2), "query_time_ms_mean": round(1000 * query_s / n, 2),
        "queries": n, "chance_r1": round(100.0 / n, 2),
        "top1_right_second_pct": round(100.0 * sum(hits_at) / n, 2),
        "top1_same_attribute_pct": {k: round(100.0 * v / n, 2) for k, v in same.items()},
        "example": {"query": items[0]["caption"], "expected_start_s": starts[0]},
    }
    print_result(result, args.result, write=not args.no_result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
