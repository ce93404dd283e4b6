"""Face detection ahead of the pipeline, in worker processes.

Detection is the one per-frame stage with no state: it reads the frame's small detector copy and
gives boxes. `DetectAhead` runs it in N processes while the main process keeps everything with
state (tracking, landmarks, identity, guard, render, restore, blend) in frame order, so a track's
seed and codes live in one place and the output is the single-process output bit for bit.

Pixels go through one shared-memory block (a slot per frame in flight), never through a pipe;
only the slot number goes out and the boxes come back. Frame k goes to worker k mod N, so which
process saw which frame does not depend on timing. A worker that dies (killed, out of memory)
or stops answering ends the run with `WorkerLost`: the frame waiting for it is hidden whole by the
processor (a detection failure) and the runner aborts the output, so no face is written raw.

Workers are started with "spawn" (the parent already runs decoder and model threads, which fork
would copy half-locked), so a script that asks for processes > 1 needs the usual
`if __name__ == "__main__":` guard around its entry point.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.shared_memory import SharedMemory
from typing import Optional

import numpy as np

from ideud.stream.errors import UsageError
from ideud.stream.types import Face, Frame

MAX_AUTO_PROCESSES = 4  # "auto": cores - 1, at most this many (detection is ~10-20 ms a frame)
ANSWER_DEADLINE_S = 120.0  # a worker silent this long on one frame is taken as hung


class WorkerLost(RuntimeError):
    """A detection worker process died or hung: the run cannot go on safely."""


def resolve_processes(value, cores: Optional[int] = None) -> int:
    """Options.processes -> a count: an int >= 1, or "auto" (cores - 1, 1..MAX_AUTO_PROCESSES)."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            cores = cores or os.cpu_count() or 1
            return max(1, min(MAX_AUTO_PROCESSES, cores - 1))
        try:
            value = int(value)
        except ValueError:
            raise UsageError(f"--processes: expected a number or auto, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise UsageError(f"--processes must be auto or between 1 and 64, got {value!r}")
    return value


def quarter_turns(rotation: int) -> int:
    """np.rot90's k that turns a stored frame upright (its display matrix's `rotation`, degrees)."""
    return (rotation % 360) // 90 if rotation % 90 == 0 else 0


def detect_upright(detector, small: np.ndarray, small_scale: tuple, rotation: int) -> list[Face]:
    """Detect on the frame as it is displayed (phone videos are stored turned), boxes in stored
    full-frame pixels. The one implementation for the main process and the workers."""
    k = quarter_turns(rotation)
    if k == 0:
        return detector.detect(small, small_scale)
    h, w = small.shape[:2]
    faces = detector.detect(np.ascontiguousarray(np.rot90(small, k)), 1.0)
    sx, sy = small_scale

    def back(p: np.ndarray) -> np.ndarray:  # upright -> stored, then to full-frame pixels
        x, y = p[..., 0], p[..., 1]
        if k == 1:
            x, y = w - y, x
        elif k == 2:
            x, y = w - x, h - y
        else:
            x, y = y, h - x
        return np.stack([x * sx, y * sy], -1)

    for f in faces:
        corners = back(np.array([[f.box[0], f.box[1]], [f.box[2], f.box[3]]], float))
        f.box = np.r_[corners.min(0), corners.max(0)]
        if f.keypoints is not None:
            f.keypoints = back(np.asarray(f.keypoints, float))
    return faces


def _worker_main(conn, detector_name: str, threshold) -> None:
    """A detection process: (seq, block, offset, shape, scale, rotation) in, (seq, faces, seconds) out."""
    # Ctrl-C is the parent's to handle: it closes the pipe, and a closed pipe ends this loop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from ideud.stream.detect import make_detector

    detector = make_detector(detector_name, threshold=threshold)
    shm = None  # the parent's block, attached at the first frame (it is made once the size is known)
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                return
            seq, block, offset, shape, scale, rotation = msg
            t = time.perf_counter()
            try:
                if shm is None or shm.name != block:
                    shm = SharedMemory(name=block)
                small = np.ndarray(shape, np.uint8, buffer=shm.buf, offset=offset)
                faces = detect_upright(detector, small, scale, rotation)
                del small  # no view may outlive the block
                conn.send((seq, faces, time.perf_counter() - t))
            except Exception as e:  # the frame fails like a failed detection in the main process
                conn.send((seq, f"{type(e).__name__}: {e}", time.perf_counter() - t))
    except (EOFError, OSError):  # the parent is gone
        return
    finally:
        if shm is not None:
            shm.close()


class DetectAhead:
    """N detection processes and `depth` shared-memory slots for the frames in flight.

    The processes start loading their detector at once (seconds: start the pool before loading the
    other models); `open(slot_bytes)` makes the block once the frame size is known. The caller then
    submits frames in decode order (at most `depth` not yet collected) and collects their faces in
    the same order with `faces(frame)`.
    """

    def __init__(self, processes: int, detector_name: str, threshold, depth: int):
        self.depth = depth
        self.slot_bytes = 0
        self.shm: Optional[SharedMemory] = None
        self.free = list(range(depth))
        self.seq = 0
        self.waiting: dict[int, tuple] = {}  # id(frame) -> (seq, worker, slot) or (seq, None, None): local
        self.answers: dict[int, tuple] = {}
        self.discard: set[int] = set()  # frames that left without asking for their faces
        self.lost: Optional[str] = None
        self.worker_seconds = 0.0
        self.answered = 0  # frames whose faces a worker found (the rest: here)
        ctx = mp.get_context("spawn")  # no fork: the parent runs decoder, encoder and model threads
        self.conns, self.procs = [], []
        try:
            for i in range(processes):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(child, detector_name, threshold),
                                name=f"ideud-detect-{i}", daemon=True)
                p.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(p)
        except BaseException:
            self.close()
            raise

    def open(self, slot_bytes: int) -> None:
        self.slot_bytes = slot_bytes
        self.shm = SharedMemory(create=True, size=max(1, slot_bytes * self.depth))

    def submit(self, frame: Frame) -> None:
        """Copy the frame's detector image into a free slot and hand it to its worker."""
        if frame.small is None:
            return
        seq = self.seq
        self.seq += 1
        small = np.ascontiguousarray(frame.small, np.uint8)
        if self.shm is None or small.nbytes > self.slot_bytes or not self.free or self.lost:
            self.waiting[id(frame)] = (seq, None, None)  # detected in the caller's process
            return
        slot = self.free.pop()
        offset = slot * self.slot_bytes
        np.ndarray(small.shape, np.uint8, buffer=self.shm.buf, offset=offset)[...] = small
        w = seq % len(self.procs)
        self.waiting[id(frame)] = (seq, w, slot)
        try:
            self.conns[w].send((seq, self.shm.name, offset, small.shape, tuple(frame.small_scale), frame.rotation))
        except (OSError, ValueError):
            self.lost = self.lost or f"detection worker {w} is gone"

    def faces(self, frame: Frame, local_detector) -> list[Face]:
        """The faces of a submitted frame (blocking); WorkerLost if its worker died or hung."""
        seq, w, slot = self.waiting.pop(id(frame), (None, None, None))
        if w is None:  # not submitted, too large for a slot, or no slot free: same code, here
            return detect_upright(local_detector, frame.small, frame.small_scale, frame.rotation)
        try:
            answer = self._answer(seq, w)
        finally:
            self.free.append(slot)
        faces, seconds = answer
        self.worker_seconds += seconds
        self.answered += 1
        if isinstance(faces, str):
            raise RuntimeError(f"detection in worker {w}: {faces}")
        return faces

    def forget(self, frame: Frame) -> None:
        """The frame left the processor (its faces not asked for: a detect fault, say): its slot is
        free again (only main writes slots, so a worker still reading it can only spoil that
        frame's own answer, which is dropped) and no later frame can take its entry by id."""
        seq, w, slot = self.waiting.pop(id(frame), (None, None, None))
        if w is not None:
            if self.answers.pop(seq, None) is None:
                self.discard.add(seq)  # still to come: dropped when it does
            self.free.append(slot)

    def _answer(self, seq: int, w: int) -> tuple:
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        conn, proc = self.conns[w], self.procs[w]
        while seq not in self.answers:
            if self.lost:
                raise WorkerLost(self.lost)
            left = deadline - time.monotonic()
            if left <= 0:
                self.lost = f"detection worker {w} did not answer in {ANSWER_DEADLINE_S:.0f} s"
                raise WorkerLost(self.lost)
            ready = wait([conn, proc.sentinel], timeout=min(left, 1.0))
            if conn in ready:
                try:
                    s, faces, seconds = conn.recv()
                except (EOFError, OSError):
                    self.lost = f"detection worker {w} is gone (exit code {proc.exitcode})"
                    continue
                if s in self.discard:
                    self.discard.discard(s)
                else:
                    self.answers[s] = (faces, seconds)
            elif proc.sentinel in ready:
                proc.join(timeout=1)
                self.lost = f"detection worker {w} died (exit code {proc.exitcode})"
        return self.answers.pop(seq)

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []
        if self.shm is not None:
            self.shm.close()
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
            self.shm = None
