"""How much of the machine a default run uses, and which side waits: the whole run, its first
seconds (each track's first privacy search) and the rest.

`python tools/bench/bench_cpu_use.py [--clip 360p_4people] [--frames 150] [--split 6] [--out DIR]`

Samples /proc every 0.5 s during one run of `deidentify` at default `Options()` (seed 1) on
bench_speed.py's clip: the machine's busy cores (all processes: run it on a quiet machine), this
process's CPU (main thread, decoder, encoder, model threads) and the restore processes' (its
children). Also the main thread's waits for the restore processes' answers (`_restore_review`) and
those processes' calls (time, busy share, the gaps between calls): a side that waits while the
other is busy is the pipeline's imbalance, idle cores the machine's. Linux only (/proc).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (the checkout's tests/ on the path)

from bench_speed import make_clip  # noqa: E402
from ideud.stream import processor as pr  # noqa: E402
from ideud.stream import restore_processes as rp  # noqa: E402
from ideud.stream.pipeline import Options, deidentify  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def machine() -> tuple[int, int]:
    """(all jiffies, idle jiffies) of the whole machine."""
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v), v[3] + v[4]


def cpu_seconds(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return 0.0


def children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


class Recorder:
    """The samples, and the restore calls and main-thread waits (by wrapping the two functions)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.samples, self.calls, self.waits = [], [], []
        self.stop = threading.Event()
        call, review = rp.RestoreProcesses._call, pr.FaceProcessor._restore_review
        rec = self

        def timed_call(this, calls):
            t = time.perf_counter()
            try:
                return call(this, calls)
            finally:
                rec.calls.append((t - rec.t0, time.perf_counter() - rec.t0))

        def timed_review(this, frame, p):
            if p.future is not None:
                t = time.perf_counter()
                try:
                    p.future.result()
                except Exception:
                    pass  # the review itself reports it
                rec.waits.append((t - rec.t0, time.perf_counter() - rec.t0))
            return review(this, frame, p)

        rp.RestoreProcesses._call, pr.FaceProcessor._restore_review = timed_call, timed_review
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = os.getpid()
        while not self.stop.is_set():
            total, idle = machine()
            self.samples.append((time.perf_counter() - self.t0, total, idle, cpu_seconds(me),
                                 sum(cpu_seconds(k) for k in children(me))))
            time.sleep(0.5)

    def phase(self, a: float, b: float) -> dict:
        s = [x for x in self.samples if a <= x[0] <= b]
        if len(s) < 2:
            return {}
        dt, total, idle = s[-1][0] - s[0][0], s[-1][1] - s[0][1], s[-1][2] - s[0][2]
        busy = [c for c in self.calls if a <= c[0] < b]
        waits = [w for w in self.waits if a <= w[0] < b]
        return {"seconds": round(dt, 2), "busy_cores": round(os.cpu_count() * (1 - idle / max(total, 1)), 2),
                "this_process_cores": round((s[-1][3] - s[0][3]) / dt, 2),
                "restore_processes_cores": round((s[-1][4] - s[0][4]) / dt, 2),
                "restore_calls_busy_share": round(sum(e - t for t, e in busy) / dt, 2),
                "main_waits_for_restore_s": round(sum(e - t for t, e in waits), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="360p_4people")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--split", type=float, default=6.0, help="seconds counted as the run's first phase")
    ap.add_argument("--out", default="/tmp/ideud_bench")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    src = make_clip(a.out, a.clip, a.frames)
    rec = Recorder()
    rec.thread.start()
    t = time.perf_counter()
    deidentify(src, os.path.join(a.out, f"{a.clip}.cpu.mp4"), Options(force=True, seed=1))
    wall = time.perf_counter() - t
    rec.stop.set()
    rec.thread.join()
    end = time.perf_counter() - rec.t0
    result = {"clip": a.clip, "frames": a.frames, "cores": os.cpu_count(), "wall_s": round(wall, 2),
              "fps": round(a.frames / wall, 2), "whole": rec.phase(0, end),
              f"first_{a.split:g}s": rec.phase(0, a.split), "rest": rec.phase(a.split, end)}
    return common.emit_json(result, a.json)


if __name__ == "__main__":
    sys.exit(main())
