"""Detection in worker processes (stream/workers.py): the same output as one process, bit for bit,
and a worker killed mid-run stops the run with nothing written (the frame it owed is hidden)."""
from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

from clips import moving_faces, read_planes, write_clip
from ideud.stream.errors import UsageError
from ideud.stream.pipeline import FaceProcessor, Options, deidentify
from ideud.stream.workers import WorkerLost, resolve_processes

FRAMES = 14
# lossless output and no guard (its cost is not what is tested; it runs in the main process anyway)
FAST = dict(seed=7, codec="ffv1", audio=False, privacy="off", restorer="classic", force=True)


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workers")
    return folder, write_clip(folder / "two.mp4", moving_faces(FRAMES, 480, 270, size=120, faces=2), audio=False)


def test_more_processes_give_the_single_process_output(two_faces):
    folder, src = two_faces
    one = deidentify(src, str(folder / "one.mkv"), Options(**FAST))
    assert one["processes"] == 1 and "detect_workers" not in one["timing"]
    # the faces were de-identified, not just hidden: the comparisons below are of real work
    assert one["face_frames"] >= FRAMES and one["fallback_face_frames"] < one["face_frames"] // 2
    ins, a = read_planes(src), read_planes(folder / "one.mkv")
    assert any(not np.array_equal(p, q) for p, q in zip(ins[FRAMES // 2], a[FRAMES // 2]))
    for n in (2, 3):  # one detection worker; two, taking frames in turn
        rep = deidentify(src, str(folder / f"n{n}.mkv"), Options(**FAST, processes=n))
        assert rep["processes"] == n and rep["frames"] == FRAMES
        # every frame the detector ran on (stream/cadence.py) was detected by a worker, the same frames as one process's
        assert rep["detect_skipped_frames"] == one["detect_skipped_frames"] > 0
        assert rep["timing"]["detect_workers"]["calls"] == FRAMES - one["detect_skipped_frames"]
        for i, (fa, fb) in enumerate(zip(a, read_planes(folder / f"n{n}.mkv"))):
            for pa, pb in zip(fa, fb):
                assert np.array_equal(pa, pb), f"frame {i} differs between 1 and {n} processes"
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("ideud-detect")]


def test_frames_that_skip_detection_give_back_their_slots(two_faces):
    """A detect fault hides the frame before its faces are asked for: with more such frames than
    slots in flight, the run still matches one process (and no later frame gets stale faces)."""
    folder, src = two_faces
    faults = {"detect": list(range(2, 12))}  # the detector asked on every frame, so each of them fails
    a = deidentify(src, str(folder / "f1.mkv"), Options(**FAST, inject_faults=faults, detect_every=1))
    b = deidentify(src, str(folder / "f3.mkv"), Options(**FAST, processes=3, inject_faults=faults, detect_every=1))
    assert a["failed_frames"] == b["failed_frames"] == 10
    assert b["timing"]["detect_workers"]["calls"] == 4  # frames 0, 1, 12, 13: the slots came back
    for fa, fb in zip(read_planes(folder / "f1.mkv"), read_planes(folder / "f3.mkv")):
        assert all(np.array_equal(pa, pb) for pa, pb in zip(fa, fb))


def test_a_killed_worker_stops_the_run_and_writes_nothing(two_faces):
    folder, src = two_faces
    dst = folder / "killed.mkv"
    killed = []

    def kill_a_worker(done: int, _total: int) -> None:
        if done == 3 and not killed:
            workers = [p for p in multiprocessing.active_children() if p.name == "ideud-detect-1"]
            assert workers, "no detection worker to kill"
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)

    o = Options(**FAST, processes=3, frame_log=True)  # two workers: kill one
    proc = FaceProcessor(o)
    try:
        with pytest.raises(WorkerLost):
            deidentify(src, str(dst), o, on_frame=kill_a_worker, processor=proc)
    finally:
        proc.close()
    assert killed
    assert not dst.exists()
    assert not [f for f in os.listdir(folder) if f.startswith(".") or "killed" in f]  # no temp file left
    # the frame whose detection was lost was hidden whole, as a failed detection is
    assert any(str(e.get("failed", "")).startswith("detect: WorkerLost") for e in proc.frame_log)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("ideud-detect")]


def test_process_counts():
    assert Options().processes == 1
    assert resolve_processes(1) == 1 and resolve_processes("3") == 3
    assert resolve_processes("auto", cores=2) == 1  # a 2-core laptop: no workers
    assert resolve_processes("auto", cores=16) == 4
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(UsageError):
            resolve_processes(bad)
