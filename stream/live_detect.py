"""Live streams: face detection one frame ahead of the face stage, on its own thread.

Detection has no per-frame state the face stage needs (stream/workers.py), so while the face
stage works on frame N this thread detects frame N+1 on the other core (onnxruntime releases the
GIL), taking ~15-20 ms a frame of CenterFace off the face stage's thread. It is not a degrade step:
the output is the same, one frame later at most. Opt-in (`LiveOptions.detect_ahead`): on the shared
2-core machine it was measured only under heavy load (load average ~8), where it was slower
(49 vs 40 ms a frame at degrade level 4, the same CPU time: each frame waits for a thread that the
busy machine may not be running); a quiet machine or more cores is where it can pay off.

Only one frame is ever held here (taken from the drop queue, detected, waiting to be taken):
everything else waits in the drop queue, so the drop queue stays the one place frames are
dropped, and the oldest unprocessed frame is still the one that goes. A detection that fails is
handed to the processor as that frame's detection failure (the whole frame is hidden: fail
closed), through the processor's `ahead` hook (`faces(frame, detector)`, `forget(frame)`).
"""
from __future__ import annotations

import threading
import time
from typing import Optional

from ideud.stream.decode import attach_small
from ideud.stream.live_io import END, DropQueue
from ideud.stream.types import Face, Frame
from ideud.stream.workers import detect_upright


class LiveDetect:
    """The detection thread between the drop queue and the face stage (`get` replaces the drop
    queue's `get` for the face stage)."""

    def __init__(self, frames_q: DropQueue, detector, detect_size, stop: threading.Event):
        self.frames_q, self.detector, self.detect_size, self.stop = frames_q, detector, detect_size, stop
        self._ready: Optional[object] = None  # the one detected item waiting for the face stage
        self._cv = threading.Condition()
        self._found: dict[int, object] = {}  # id(frame) -> list[Face] or the exception detection raised
        self.seconds = 0.0  # detection time on this thread
        self.frames = 0
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="ideud-live-detect", daemon=True)

    def start(self) -> "LiveDetect":
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        """Frames waiting for the face stage: the drop queue's and the one detected here."""
        with self._cv:
            held = self._ready is not None and isinstance(self._ready, tuple)
        return self.frames_q.waiting + held

    def get(self, timeout: float):
        """The next item for the face stage (a detected frame, or a marker), or None after `timeout` s."""
        with self._cv:
            if self._ready is None and not self._cv.wait_for(lambda: self._ready is not None, timeout):
                return None
            item, self._ready = self._ready, None
            self._cv.notify_all()
            return item

    # ------------------------------------------------------------------ the processor's `ahead` hook
    def faces(self, frame: Frame, local_detector) -> list[Face]:
        found = self._found.pop(id(frame), None)
        if found is None:  # not seen by the thread (a caller's own frame): same code, here
            return detect_upright(local_detector, frame.small, frame.small_scale, frame.rotation)
        if isinstance(found, BaseException):
            raise found  # the processor hides the whole frame
        return found

    def forget(self, frame: Frame) -> None:
        self._found.pop(id(frame), None)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                with self._cv:  # at most one frame held here: the rest stay droppable in the queue
                    if not self._cv.wait_for(lambda: self._ready is None or self.stop.is_set(), 0.1):
                        continue
                if self.stop.is_set():
                    break
                item = self.frames_q.get(0.1)
                if item is None:
                    continue
                if isinstance(item, tuple):
                    self._detect(item[0])
                self._hand(item)
                if item is END:
                    return
        except BaseException as e:
            self.error = e
            self._hand(END)  # the face stage must not wait forever; it raises `error`

    def _detect(self, frame: Frame) -> None:
        t = time.perf_counter()
        try:
            attach_small(frame, self.detect_size)
            found = (detect_upright(self.detector, frame.small, frame.small_scale, frame.rotation)
                     if frame.small is not None else [])
        except Exception as e:
            found = e
        self._found[id(frame)] = found
        self.seconds += time.perf_counter() - t
        self.frames += 1

    def _hand(self, item) -> None:
        with self._cv:
            self._ready = item
            self._cv.notify_all()
