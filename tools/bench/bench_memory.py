"""Memory over a long stream where people come and go, as a camera sees them: does it level off?

    python tools/bench/bench_memory.py [--scenes 48] [--per-scene 12] [--head 56]
                                       [--restore-processes 1] [--every 4] [--json FILE]

A stream of `--scenes` shots, each a held-out public-domain portrait over its own background for
`--per-scene` frames (each shot's person a new track; the one before ends when the tracker gives
it up or a cut ends it, as people come and go in a camera's day), runs through
`FaceProcessor.process` at default settings (privacy guard on). Small heads (`--head` px) make the
guard search in full, as on real footage, where most tracks try every candidate. Every `--every`
shots the resident memory (VmRSS) of this process and of each restore process is printed; the
summary compares the last half's growth per 10 tracks with the first half's.

Before the seventeenth session each ended track left its new face's canvases (one per candidate the guard
tried, ~5 MB a searched track) in the restore process; a camera running all day kept every one.
"""
from __future__ import annotations

import argparse
import os
import time
from fractions import Fraction

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from common import background, emit_json  # noqa: E402  (adds tests/ to the path)
from footage import _paste, portrait_head  # noqa: E402
from ideud.stream.pipeline import FaceProcessor, Options  # noqa: E402
from ideud.stream.types import Frame  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--per-scene", type=int, default=12)
    ap.add_argument("--head", type=int, default=56, help="head size in px (small: the guard searches in full)")
    ap.add_argument("--restore-processes", type=int, default=1)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args()
    proc = FaceProcessor(Options(seed=1, restore_processes=a.restore_processes))
    kids = [p.pid for p in getattr(proc.restorer, "_procs", [])]
    rows, index, t0 = [], 0, time.perf_counter()
    try:
        for s in range(a.scenes):
            bg, head = background(480, 270, seed=s), portrait_head(s % 40, a.head)
            for i in range(a.per_scene):
                img = bg.copy()
                _paste(img, head, 240 + 2 * i, 135, 1.0, 0.0)
                proc.process(Frame(index=index, pts=index, time_base=Fraction(1, 25), pix_fmt="rgb", full_range=True,
                                   planes=[np.ascontiguousarray(img[..., c]) for c in range(3)], time=index / 25))
                index += 1
            if (s + 1) % a.every == 0 or s + 1 == a.scenes:
                row = {"scenes": s + 1, "frames": index, "tracks": len(proc.track_stats),
                       "main_mb": round(rss_mb(os.getpid()), 1), "restore_mb": [round(rss_mb(k), 1) for k in kids],
                       "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(row, flush=True)
    finally:
        proc.close()
    half = rows[len(rows) // 2]

    def per10(a_row, b_row, key):
        total = (lambda r: r[key] if key == "main_mb" else sum(r[key]))
        n = max(b_row["tracks"] - a_row["tracks"], 1)
        return round(10 * (total(b_row) - total(a_row)) / n, 2)
    summary = {"rows": rows, "growth_mb_per_10_tracks": {
        key: {"first_half": per10(rows[0], half, key), "second_half": per10(half, rows[-1], key)}
        for key in ("main_mb", "restore_mb")}}
    return emit_json(summary, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
