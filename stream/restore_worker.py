"""Step II on its own thread: the restorer (a GPU engine) works on frame t while Step I runs on t+1.

`RestoreWorker.submit(items)` returns a future. Submissions that are waiting
when the worker becomes free go into one `restorer.restore` call, so faces
of several frames share one GPU batch. The worker is also a restorer itself
(`restore(items)`, synchronous; `warmup()`), so every user of the model
(the privacy guard included) goes through the one thread and the engine is
never called from two threads at once.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Sequence

from ideud.stream.protocols import Restorer

_STOP = object()


class _Task:
    """A queue entry that is not a restore: a call to run on the worker's thread, in order with the
    restores queued before it (the restorer's warmup, its `settle`, its `forget`)."""

    def __init__(self, fn):
        self.fn = fn


class RestoreWorker:
    """A `Restorer` around another one, which only this worker's thread calls."""

    def __init__(self, restorer: Restorer, max_faces: int = 16):
        self.restorer = restorer
        self.name = restorer.name
        self.on_gpu = restorer.on_gpu
        self.max_faces = max(1, int(max_faces))
        self.max_batch = self.max_faces
        self._queue: queue.Queue = queue.Queue()
        self.calls = 0
        self.faces = 0
        self.max_faces_per_call = 0
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="ideud-restore", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence) -> Future:
        """Future of (restored crops, this submission's share of the call's seconds)."""
        fut: Future = Future()
        if not self._thread.is_alive():
            fut.set_exception(RuntimeError("restore worker is closed"))
            return fut
        self._queue.put((list(items), fut))
        return fut

    def restore(self, items: Sequence) -> list:
        return self.submit(items).result()[0]

    def waiting(self) -> int:
        """Submissions queued behind the call under way."""
        return self._queue.qsize()

    def warmup(self) -> None:
        """The restorer's warmup, run on the worker's thread; returns when it is done."""
        if not self._thread.is_alive():
            raise RuntimeError("restore worker is closed")
        self._on_thread(self.restorer.warmup).result()

    @property
    def settles(self) -> bool:
        return bool(getattr(self.restorer, "settles", False))

    def settle(self, track_id: int, keep: bool) -> None:
        """The restorer's `settle` after every restore submitted before it (no wait here). A failure
        is not reported: the restorer's next calls fail the same way, and fail closed."""
        if self._thread.is_alive():
            self._on_thread(lambda: self.restorer.settle(int(track_id), bool(keep)))

    def forget(self, track_id: int) -> None:
        """The restorer's `forget` after every restore submitted before it (no wait here); a
        failure is not reported (the state stays, as before the track ended)."""
        if self._thread.is_alive():
            self._on_thread(lambda: self.restorer.forget(int(track_id)))

    def _on_thread(self, fn) -> Future:
        fut: Future = Future()
        self._queue.put((_Task(fn), fut))
        return fut

    def _loop(self) -> None:
        held = None  # an entry that could not join the last call (a task or stop)
        while True:
            first, held = (held, None) if held is not None else (self._queue.get(), None)
            if first is _STOP:
                return
            if isinstance(first[0], _Task):
                self._task(*first)
                continue
            batch, n = [first], len(first[0])
            while n < self.max_faces:  # what else is waiting joins this call
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or isinstance(nxt[0], _Task):
                    held = nxt
                    break
                batch.append(nxt)
                n += len(nxt[0])
            self._run(batch, n)

    @staticmethod
    def _task(task: _Task, fut: Future) -> None:
        try:
            result = task.fn()
        except BaseException as e:
            fut.set_exception(e)
            return
        fut.set_result(result)

    def _run(self, batch: list, n: int) -> None:
        t0 = time.perf_counter()
        try:
            out = self.restorer.restore([it for items, _ in batch for it in items]) if n else []
            if len(out) != n:
                raise RuntimeError("restorer returned a different number of faces")
        except BaseException as e:  # every frame of the call fails closed (obfuscated by the pipeline)
            for _, fut in batch:
                fut.set_exception(e)
            return
        dt = time.perf_counter() - t0
        self.calls += 1
        self.faces += n
        self.max_faces_per_call = max(self.max_faces_per_call, n)
        self.seconds += dt
        i = 0
        for items, fut in batch:
            fut.set_result((out[i:i + len(items)], dt * len(items) / max(n, 1)))
            i += len(items)

    def stats(self) -> dict:
        return {"calls": self.calls, "faces": self.faces, "max_faces_per_call": self.max_faces_per_call,
                "faces_per_call": round(self.faces / max(self.calls, 1), 2), "seconds": round(self.seconds, 3)}

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
