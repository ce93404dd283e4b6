"""File runs on one process: face detection ahead of the main thread, on its own thread.

The same idea as the live path's detection thread (stream/live_detect.py) for `deidentify`
with `processes` = 1 on a machine with more than one core: while the main thread runs the face
stages of frame N, this thread detects frame N+1 (onnxruntime releases the GIL), on the core
the restorer, decoder and encoder leave free. The runner's decode thread `submit`s every frame as
it is decoded; the processor then asks for the `faces` of each in the same order, or `forget`s
one whose faces it does not ask for (stream/runner.py `_Submitted`).

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

The network's pass itself has no state (`CenterFaceDetector.forward`): a frame on the schedule held
behind an undecided one has it computed while it waits, when the thread has nothing due (`_early`),
and its detection then uses it (`given`). While the main thread is held up (a new track's search
waits on the restore process), the thread so works through the frames the decoder has ready, and
the detections they need later cost little: as far ahead as the decoded queue reaches
(runner.AHEAD_BYTES).

On by default (`stream.runner.DETECT_THREAD`; `IDEUD_DETECT_THREAD=0` turns it off for a
comparison). In the tenth session the encoded file was not always the same bytes with it (the
encoder read heap memory it had not written): a run with a fixed seed fills new heap blocks
(stream/heap_fill.py), which made them the same.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from concurrent.futures import Future

from ideud.stream.cadence import DetectCadence
from ideud.stream.types import Face, Frame
from ideud.stream.workers import detect_upright, quarter_turns


class DetectThread:
    """The processor's `ahead` hook (`faces(frame, detector)`, `forget(frame)`) backed by one thread.
    `cadence`: the processor's (stream/cadence.py); its scheduled frames are always detected.
    `submit` may come from another thread (the decoder's) than the rest (the main thread's)."""

    def __init__(self, detector, cadence: DetectCadence):
        self.detector = detector
        self.cadence = cadence
        self.lost = None  # a thread cannot be lost like a process; the runner asks
        self.worker_seconds = 0.0
        self.answered = 0
        self._cv = threading.Condition()
        self._held: deque = deque()  # submitted, not started: behind a frame not yet decided
        self._waiting: dict[int, Future] = {}  # id(frame) -> its detection, started
        self._calls: deque = deque()  # (frame, future): the detector's calls, in frame order
        self._early: deque = deque()  # held frames on the schedule: their network pass may run now
        self._passes: dict[int, tuple] = {}  # id(frame) -> (its picture, the network's outputs)
        self._closed = False
        self._forward = getattr(detector, "forward", None)  # CenterFace's; other detectors have none
        # one thread: frames are detected one at a time, in the order started
        self._thread = threading.Thread(target=self._loop, name="ideud-detect_0", daemon=True)
        self._thread.start()

    def open(self, slot_bytes: int) -> None:
        """Nothing to set up (the worker processes' shared block has no counterpart here)."""

    def submit(self, frame: Frame) -> None:
        if frame.small is None:
            return  # never detected (the processor has no picture for the detector)
        with self._cv:
            if self._closed:
                return  # the run stopped while this frame was being decoded
            self._held.append(frame)
            self._start_scheduled()
            if self._held and self._held[-1] is frame and self._early_pass(frame):
                self._early.append(frame)
                self._cv.notify()

    def _early_pass(self, frame: Frame) -> bool:
        # a turned frame is detected on a turned copy (workers.detect_upright): no pass of it ahead
        return self._forward is not None and self.cadence.scheduled(frame.index) and quarter_turns(frame.rotation) == 0

    def _start_scheduled(self) -> None:
        # a frame off the schedule may be skipped: it and the frames after it wait for the decision
        while self._held and self.cadence.scheduled(self._held[0].index):
            frame = self._held.popleft()
            self._waiting[id(frame)] = self._start(frame)

    def _is_held(self, frame: Frame) -> bool:
        return any(f is frame for f in self._held)

    def _start(self, frame: Frame) -> Future:
        """Queue the frame's detection after those started before it."""
        found: Future = Future()
        self._calls.append((frame, found))
        self._cv.notify()
        return found

    def _decided(self, frame: Frame, due: bool) -> None:
        """The processor reached `frame` (every frame before it was decided already)."""
        if self._is_held(frame):
            while True:
                f = self._held.popleft()
                if f is frame:
                    break
                self._passes.pop(id(f), None)  # decided before it, without a word (a frame that failed)
            if due:
                self._waiting[id(frame)] = self._start(frame)
            else:
                self._passes.pop(id(frame), None)
        self._start_scheduled()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._calls or self._early or self._closed):
                    self._cv.wait()
                if self._closed:
                    return
                call = self._calls.popleft() if self._calls else None
                frame = call[0] if call is not None else self._early.popleft()
                if call is None and not self._is_held(frame):
                    continue  # started or decided meanwhile: its detection runs the network itself
            if call is None:
                self._early_pass_of(frame)
                continue
            if call[1].set_running_or_notify_cancel():
                try:
                    call[1].set_result(self._detect(frame))
                except BaseException as e:  # raised again from `faces`: the frame is hidden
                    call[1].set_exception(e)

    def _early_pass_of(self, frame: Frame) -> None:
        t = time.perf_counter()
        try:
            outputs = self._forward(frame.small)
        except Exception:  # the frame's own detection runs the network again, and fails where it fails
            return
        finally:
            self.worker_seconds += time.perf_counter() - t
        with self._cv:
            if self._is_held(frame):
                self._passes[id(frame)] = (frame.small, outputs)

    def _detect(self, frame: Frame) -> list[Face]:
        t = time.perf_counter()
        with self._cv:
            done = self._passes.pop(id(frame), None)
        ready = done is not None and done[0] is frame.small  # its network pass, run while it waited
        try:
            with self.detector.given(frame.small, done[1]) if ready else contextlib.nullcontext():
                return detect_upright(self.detector, frame.small, frame.small_scale, frame.rotation)
        finally:
            self.worker_seconds += time.perf_counter() - t

    def faces(self, frame: Frame, local_detector) -> list[Face]:
        """The faces of a submitted frame (waits for them); a frame never submitted is detected on the
        thread too, after what it has started (the detector's calls stay in frame order)."""
        with self._cv:
            self._decided(frame, due=True)
            found = self._waiting.pop(id(frame), None) or self._start(frame)
        faces = found.result()  # re-raises the detection's exception: the frame is hidden
        self.answered += 1
        return faces

    def forget(self, frame: Frame) -> None:
        """The frame left, or is skipped, without asking for its faces (a detection started still runs, in order)."""
        with self._cv:
            self._decided(frame, due=False)
            self._waiting.pop(id(frame), None)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._held.clear()
            self._early.clear()
            self._passes.clear()
            for _, found in self._calls:
                found.cancel()
            self._calls.clear()
            self._waiting.clear()
            self._cv.notify_all()
        self._thread.join()
