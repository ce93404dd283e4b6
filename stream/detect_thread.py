"""File runs on one process: face detection ahead of the main thread, on its own thread.

The same idea as the live path's detection thread (stream/live_detect.py) for `deidentify`
with `processes` = 1 on a machine with more than one core: while the main thread runs the face
stages of frame N, this thread detects frame N+1 (onnxruntime releases the GIL), on the core
the restorer, decoder and encoder leave free. The runner drives it like the detection worker
processes (stream/runner.py `_DetectFirst`): `submit` in decode order, then `faces` in the same
order, or `forget` for a frame whose faces are not asked for.

The processor's own detector is called, one frame at a time and on exactly the frames the main
thread would detect, in the same order, so its state (the verifier's memory of confirmed finds)
and every answer are what the main thread would have got: the faces and every frame handed to
the encoder are the same. With a detection cadence (stream/cadence.py) a frame off the schedule is
detected only where no track is alive when the processor reaches it, which the frames before it
decide. So a frame starts once every frame before it is decided: at once on the schedule, else when
the processor asks for its faces (due) or forgets it (skipped; the processor says so as it decides,
so the next scheduled frame is detected while the main thread works on the skipped one). A
detection that raises is raised again from `faces`, where the processor hides that frame whole, as
for a detection on the main thread.

On by default (`stream.runner.DETECT_THREAD`; `IDEUD_DETECT_THREAD=0` turns it off for a
comparison). In the tenth session the encoded file was not always the same bytes with it (the
encoder read heap memory it had not written): a run with a fixed seed fills new heap blocks
(stream/heap_fill.py), which made them the same.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from ideud.stream.cadence import DetectCadence
from ideud.stream.types import Face, Frame
from ideud.stream.workers import detect_upright


class DetectThread:
    """The processor's `ahead` hook (`faces(frame, detector)`, `forget(frame)`) backed by one thread.
    `cadence`: the processor's (stream/cadence.py); its scheduled frames are always detected."""

    def __init__(self, detector, cadence: DetectCadence, depth: int = 2):
        self.detector = detector
        self.cadence = cadence
        self.depth = depth  # frames submitted and not yet handed to the processor
        self.lost = None  # a thread cannot be lost like a process; the runner asks
        self.worker_seconds = 0.0
        self.answered = 0
        self._held: deque = deque()  # submitted, not started: behind a frame not yet decided
        self._waiting: dict[int, Future] = {}  # id(frame) -> its detection
        # one worker: frames are detected one at a time, in the order started
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ideud-detect")

    def open(self, slot_bytes: int) -> None:
        """Nothing to set up (the worker processes' shared block has no counterpart here)."""

    def submit(self, frame: Frame) -> None:
        if frame.small is None:
            return  # never detected (the processor has no picture for the detector)
        self._held.append(frame)
        self._start_scheduled()

    def _start_scheduled(self) -> None:
        # a frame off the schedule may be skipped: it and the frames after it wait for the decision
        while self._held and self.cadence.scheduled(self._held[0].index):
            self._start(self._held.popleft())

    def _start(self, frame: Frame) -> None:
        self._waiting[id(frame)] = self._pool.submit(self._detect, frame)

    def _decided(self, frame: Frame, due: bool) -> None:
        """The processor reached `frame` (every frame before it was decided already)."""
        if any(f is frame for f in self._held):
            while self._held.popleft() is not frame:
                pass  # decided before it, without a word (a frame that failed before its decision)
            if due:
                self._start(frame)
        self._start_scheduled()

    def _detect(self, frame: Frame) -> list[Face]:
        t = time.perf_counter()
        try:
            return detect_upright(self.detector, frame.small, frame.small_scale, frame.rotation)
        finally:
            self.worker_seconds += time.perf_counter() - t

    def faces(self, frame: Frame, local_detector) -> list[Face]:
        """The faces of a submitted frame (waits for them); a frame never submitted is detected on the
        thread too, after what it has started (the detector's calls stay in frame order)."""
        self._decided(frame, due=True)
        found = self._waiting.pop(id(frame), None) or self._pool.submit(self._detect, frame)
        faces = found.result()  # re-raises the detection's exception: the frame is hidden
        self.answered += 1
        return faces

    def forget(self, frame: Frame) -> None:
        """The frame left, or is skipped, without asking for its faces (a detection started still runs, in order)."""
        self._decided(frame, due=False)
        self._waiting.pop(id(frame), None)

    def close(self) -> None:
        self._held.clear()
        self._waiting.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
