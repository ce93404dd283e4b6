"""File runs on one process: face detection a frame or two ahead, on its own thread.

The same idea as the live path's detection thread (stream/live_detect.py) for `deidentify`
with `processes` = 1 on a machine with more than one core: while the main thread runs the face
stages of frame N, this thread detects frame N+1 (onnxruntime releases the GIL), on the core
the restorer, decoder and encoder leave free. The runner drives it like the detection worker
processes (stream/runner.py `_DetectFirst`): `submit` in decode order, then `faces` in the same
order. The processor's own detector is called, one frame at a time and in decode order, so its
state (the verifier's memory of confirmed finds) and every answer are what the main thread
would have got: the faces and every frame handed to the encoder are the same. A detection that
raises is raised again from `faces`, where the processor hides that frame whole, as for a
detection on the main thread.

Off by default (`stream.runner.DETECT_THREAD`): with it, the encoded file was not always the same
bytes (tenth session: in about one round in ten of tests/test_batch.py's three clips; the encoder's
input was identical, and it read heap memory it had not written: stream/heap_fill.py). `tools/bench/bench_speed.py --detect-thread` measures it.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from ideud.stream.types import Face, Frame
from ideud.stream.workers import detect_upright


class DetectThread:
    """The processor's `ahead` hook (`faces(frame, detector)`, `forget(frame)`) backed by one thread."""

    def __init__(self, detector, depth: int = 2):
        self.detector = detector
        self.depth = depth  # frames submitted and not yet handed to the processor
        self.lost = None  # a thread cannot be lost like a process; the runner asks
        self.worker_seconds = 0.0
        self.answered = 0
        self._waiting: dict[int, Future] = {}  # id(frame) -> its detection
        # one worker: frames are detected one at a time, in the order submitted
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ideud-detect")

    def open(self, slot_bytes: int) -> None:
        """Nothing to set up (the worker processes' shared block has no counterpart here)."""

    def submit(self, frame: Frame) -> None:
        if frame.small is None:
            return
        self._waiting[id(frame)] = self._pool.submit(self._detect, frame)

    def _detect(self, frame: Frame) -> list[Face]:
        t = time.perf_counter()
        try:
            return detect_upright(self.detector, frame.small, frame.small_scale, frame.rotation)
        finally:
            self.worker_seconds += time.perf_counter() - t

    def faces(self, frame: Frame, local_detector) -> list[Face]:
        """The faces of a submitted frame (waits for them); a frame never submitted is detected here."""
        found = self._waiting.pop(id(frame), None)
        if found is None:
            return detect_upright(local_detector, frame.small, frame.small_scale, frame.rotation)
        faces = found.result()  # re-raises the detection's exception: the frame is hidden
        self.answered += 1
        return faces

    def forget(self, frame: Frame) -> None:
        """The frame left without asking for its faces (its detection still runs, in order)."""
        self._waiting.pop(id(frame), None)

    def close(self) -> None:
        self._waiting.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
