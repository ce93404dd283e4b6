"""The restore process's work on its own: every call a default run makes to it (render, occluder
cut, prior restorer; stream/face_work.py), recorded once from `bench_speed.py`'s clip and replayed
here in one process, with nothing else on the machine's cores and no pipe in between.

    python tools/bench/bench_restore_process.py [--clip 360p_4people] [--frames 150] [--rounds 3]
                                               [--calls FILE.pkl] [--profile FILE.prof]

A change to the face path can be timed on the same inputs before and after (the recording holds
frame crops: keep it out of the repository), and the digest of every answer says whether the
output stayed bit for bit the same. The default run on 2 cores keeps this process ~80 % busy, so
time saved here is time the frame can use.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench_speed import make_clip  # noqa: E402  (adds tests/ to the path)
from ideud.stream import blas_threads  # noqa: E402
from ideud.stream import restore_processes as rp  # noqa: E402
from ideud.stream.occlusion import OcclusionStage  # noqa: E402
from ideud.stream.pipeline import Options, deidentify  # noqa: E402
from ideud.stream.restore import make_restorer  # noqa: E402


def record(clip: str, frames: int, folder: str) -> list:
    """(process, (op, arg), drops) of every call a default run of the clip makes, in order."""
    calls = []
    send = rp.RestoreProcesses._call

    def _call(self, msgs):
        with self._drops_lock:  # the drops as they will go with this call
            drops = {i: list(self._drops.get(i, [])) for i in msgs}
        calls.extend((i, msg, drops[i]) for i, msg in msgs.items())
        return send(self, msgs)

    rp.RestoreProcesses._call = _call
    try:
        src = make_clip(folder, clip, frames)
        deidentify(src, os.path.join(folder, f"{clip}.restore_bench.mp4"), Options(seed=1, force=True))
    finally:
        rp.RestoreProcesses._call = send
    return calls


def replay(calls: list) -> tuple[float, str]:
    """Seconds for all calls, one fresh restorer and occlusion stage per process, and a digest of the answers."""
    states = {i: (make_restorer("prior", sigma=Options().scale), OcclusionStage()) for i, _, _ in calls}
    for restorer, _ in states.values():
        restorer.warmup()
    h = hashlib.sha256()

    def digest(x):
        if isinstance(x, np.ndarray):
            h.update(str((x.shape, x.dtype)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, (list, tuple)):
            for v in x:
                digest(v)
        elif hasattr(x, "__dict__"):
            for v in vars(x).values():
                digest(v)
        else:
            h.update(repr(x).encode())

    t = time.perf_counter()
    for i, (op, arg), drops in calls:
        restorer, occlusion = states[i]
        answer = rp._answer_call(restorer, occlusion, op, arg, drops)
        if op != "cpu":  # the process's CPU seconds so far: a clock, not an output (it moved every digest)
            digest(answer)
    return time.perf_counter() - t, h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="360p_4people")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--out", default="/tmp/ideud_bench_restore")
    ap.add_argument("--calls", help="the recording: made here if missing, reused if there")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", help="cProfile the first round into this file")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    path = a.calls or os.path.join(a.out, f"{a.clip}_{a.frames}.calls.pkl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            calls = pickle.load(f)
    else:
        calls = record(a.clip, a.frames, a.out)
        with open(path, "wb") as f:
            pickle.dump(calls, f)
    faces = sum(len(arg) for _, (op, arg), _ in calls if op == "restore")
    blas_threads.acquire(1)
    print(f"{a.clip}, {a.frames} frames: {len(calls)} calls, {faces} faces and candidates ({path})")
    for k in range(a.rounds):
        if a.profile and k == 0:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            seconds, digest = replay(calls)
            prof.disable()
            prof.dump_stats(a.profile)
        else:
            seconds, digest = replay(calls)
        print(f"  round {k + 1}: {seconds:.2f} s, {seconds / max(a.frames, 1) * 1e3:.1f} ms a frame, "
              f"{seconds / max(faces, 1) * 1e3:.1f} ms a face; answers {digest}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
