"""Seconds and calls per stage of a run, for the report (`--report`'s "timing")."""
from __future__ import annotations

import time
from collections import defaultdict


class StageTimer:
    """Seconds and calls per stage, for the report. `clock`: wall time by default; a benchmark
    passes `time.thread_time` to count the calling thread's CPU seconds instead."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.total = defaultdict(float)
        self.count = defaultdict(int)

    def add(self, stage: str, seconds: float, n: int = 1):
        self.total[stage] += seconds
        self.count[stage] += n

    def timed(self, stage: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = timer.clock()

            def __exit__(self, *exc):
                timer.add(stage, timer.clock() - self.t)
        return _Ctx()

    def summary(self, frames: int) -> dict:
        return {k: {"total_s": round(v, 4), "ms_per_frame": round(1000 * v / max(frames, 1), 3),
                    "calls": self.count[k]} for k, v in self.total.items()}
