"""The per-face render and Step II in worker processes: their CPU work off this process's interpreter lock.

The embedded restorers spend ~15 ms of Python and numpy per face (prior), the warp and the occluder
cut ~8 more. On the restore worker's thread they shared the interpreter lock with Step I, so a
2-core machine ran the whole face path on about one core. `RestoreProcesses` runs the same
restorer, built by name, in `n` processes; the pipeline hands it each face as a `RenderRequest`
(the frame's crop, the landmarks and their perturbed positions), and the track's process warps it,
cuts its occluders out (its own OcclusionStage) and restores it (stream/face_work.py, the code the
pipeline runs in this process otherwise). The privacy guard's candidates come as `RestoreItem`s.

A track's faces always go to process `track_id mod n`, so the per-track state (the prior's pick of
the new face, its canvas, the glasses frames, the occlusion reference) lives in one place, and each
process sees a track's faces in the order this process would: the output is the single-process
output bit for bit (tests/test_restore_processes.py). Face crops (~100 KB a face) go through a
pipe; frames never leave this process.

It is a `Restorer` (restore, warmup, forget, picks_of, preset_picks) and synchronous: the pipeline
wraps it in the restore worker's thread (stream/restore_worker.py), which waits on the pipes while
Step I goes on with the next frame. A process that cannot start (it could not build the
restorer, or no Python interpreter can be run: a frozen application) is noticed before the first
face, and the restorer then runs in this process, as with `restore_processes=0`. A process that
dies later, or stays silent for ANSWER_DEADLINE_S on one call, raises `RestoreProcessLost`: that
call's faces fail closed (obfuscated by the pipeline), and so do every later call's; switching to
this process mid-run would give a track a second new face.

Each process is a fresh interpreter (`python -c`, a socket pair for the pipe), not a
multiprocessing child: fork would copy the parent's decoder and model threads half-locked, and
"spawn" runs the caller's main script again, which a library caller's script without an
`if __name__ == "__main__":` guard does not survive. The CLI starts them before its own imports
(`start_early`), a library caller's run when it builds its processor; either way they import and warm
up while the parent loads its own models, and the first call waits for them. They ignore Ctrl-C
(the parent closes them) and exit when the parent's end of the pipe closes.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Optional, Sequence

log = logging.getLogger("ideud")

ANSWER_DEADLINE_S = 120.0  # a process silent this long on one call is taken as hung
MAX_AUTO = 4  # "auto": at most this many restore processes


class RestoreProcessLost(RuntimeError):
    """A restore process died or hung: its faces cannot be restored."""


def auto_count(restorer, cores: Optional[int] = None) -> int:
    """Restore processes for a restorer built from options when none is asked for: one per two
    cores (at least 1 on 2 cores), none for a light restorer (classic: its pipe would cost more
    than its work), a GPU restorer (one engine, batched on the restore worker's thread), or on one core."""
    cores = cores or os.cpu_count() or 1
    if (getattr(restorer, "on_gpu", False) or not getattr(restorer, "cpu_heavy", False) or cores < 2
            or getattr(sys, "frozen", False) or os.name != "posix"):  # no interpreter to start, no fd passing
        return 0
    return max(1, min(MAX_AUTO, cores // 2))


_CHILD = "import sys; from ideud.stream.restore_processes import serve; serve(int(sys.argv[1]), sys.argv[2])"


def serve(fd: int, spec: str) -> None:
    """A restore process: builds the restorer, answers calls until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent closes us
    from ideud.stream import blas_threads, occlusion_judge
    from ideud.stream.occlusion import OcclusionStage
    from ideud.stream.restore import make_restorer

    conn = Connection(fd)
    blas_threads.acquire(1)  # as in the parent: tiny matrices, no BLAS pool
    occlusion = OcclusionStage()  # the occlusion state of this process's tracks
    try:
        args = json.loads(spec)
        restorer = make_restorer(args["name"], **args["kwargs"])
        restorer.warmup()  # before the parent's first call, which may be a while off (`start_early`)
        occlusion_judge.warmup()
    except BaseException as e:  # the parent restores in its own process instead
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            op, arg, drops = conn.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            return
        try:
            conn.send(("ok", _answer_call(restorer, occlusion, op, arg, drops)))
        except BaseException as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _answer_call(restorer, occlusion, op: str, arg, drops: list):
    """One call, where the restorer runs (a restore process, or this one when they could not start)."""
    from ideud.stream.face_work import run_entries

    for track_id in drops:  # tracks that ended: their occlusion state and the restorer's picks go
        occlusion.drop(track_id)
        restorer.forget(track_id)
    if op == "restore":
        return run_entries(arg, restorer, occlusion)
    if op == "warmup":
        return restorer.warmup()
    if op == "cpu":  # this process's CPU seconds so far (the run's report: which process bounds it)
        return time.process_time()
    fn = getattr(restorer, op, None)  # forget, picks_of, preset_picks: per-track state, where kept
    return fn(*arg) if fn is not None else ({} if op == "picks_of" else None)


def _spec(name: str, kwargs: dict) -> str:
    return json.dumps({"name": name, "kwargs": kwargs}, sort_keys=True)


def _start(spec: str) -> tuple[Connection, subprocess.Popen]:
    here, there = socket.socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the caller's import path, as it is now
    try:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(there.fileno()), spec],
                                pass_fds=[there.fileno()], stdin=subprocess.DEVNULL, env=env)
    finally:
        there.close()
    return Connection(here.detach()), proc


def wanted(options, restorer) -> int:
    """How many restore processes a `FaceProcessor` built from `options` runs `restorer` in (the one
    it built from them): none for the GAN tier, an explicit --restore-processes, else `auto_count`."""
    if options.track_only or options.restorer == "gan" or getattr(restorer, "on_gpu", False):
        return 0
    return options.restore_processes if options.restore_processes is not None else auto_count(restorer)


def rebuild_kwargs(options) -> dict:
    """What a restore process needs, beside the restorer's name, to build the restorer `options` ask
    for (`FaceProcessor` and `start_early` alike: the processes they start must match)."""
    return {"sigma": options.scale}


_EARLY: dict[str, list] = {}  # spec -> [(connection, process)] started by `start_early`, not yet taken


def start_early(options) -> None:
    """Start now the restore processes a run with `options` will ask for, before this process loads
    its own models: each imports and builds its restorer (~0.5 s, more on busy cores) beside this
    process's imports and model loads (~1 s), where it started after them before and the first face
    waited for it. `RestoreProcesses` takes them when asked for the same restorer; `stop_early`
    ends those nobody took. Nothing is started where the restorer is not known without loading
    torch or a model (the GAN tier)."""
    from ideud.stream.restore import cpu_restorer_for  # cv2 and numpy (~0.2 s): the run needs them anyway

    restorer = cpu_restorer_for(options)
    n = 0 if restorer is None else wanted(options, restorer)
    spec = _spec(restorer.name, rebuild_kwargs(options)) if n else ""
    try:
        for _ in range(n - len(_EARLY.get(spec, ()))):
            _EARLY.setdefault(spec, []).append(_start(spec))
    except (OSError, ValueError):
        pass  # RestoreProcesses tries again, and says why


def stop_early() -> None:
    """End the processes `start_early` started that no run took (they hold no state: killed)."""
    for started in _EARLY.values():
        for conn, proc in started:
            conn.close()
            proc.kill()
            proc.wait()
    _EARLY.clear()


def _take_or_start(spec: str) -> tuple[Connection, subprocess.Popen]:
    early = _EARLY.get(spec)
    return early.pop(0) if early else _start(spec)


class RestoreProcesses:
    """A `Restorer` whose work runs in `n` processes, one track always in the same one."""

    def __init__(self, restorer, n: int, **kwargs):
        """`restorer`: the same restorer built here (its name and model, for whoever inspects it:
        the guard's inversion reads the prior); `kwargs`: what make_restorer needs to build it again."""
        if n < 1:
            raise ValueError(f"need at least one restore process, not {n}")
        self.restorer = restorer
        self.name = restorer.name
        self.on_gpu = False
        self.max_batch = getattr(restorer, "max_batch", 16)
        self._lock = threading.Lock()  # one call at a time (restore worker's thread, batch picks)
        self._lost: Optional[str] = None
        self._started = False  # every process said it is ready (checked at the first call)
        self.in_process = False  # they could not start: the restorer runs here
        self._count = int(n)
        self._occlusion = None  # the occlusion stage, where the processes could not start
        self._drops: dict[int, list] = {}  # process -> tracks ended since its last call
        self._drops_lock = threading.Lock()
        self._conns, self._procs = [], []
        self._cpu_at_close: Optional[list] = None
        try:
            for _ in range(n):
                conn, proc = _take_or_start(_spec(restorer.name, kwargs))
                self._conns.append(conn)
                self._procs.append(proc)
        except (OSError, ValueError) as e:  # no interpreter to run, no fd passing: in this process
            self._give_up(f"{type(e).__name__}: {e}")

    @property
    def processes(self) -> int:
        return 0 if self.in_process else self._count

    def _give_up(self, why: str) -> None:
        from ideud.stream.occlusion import OcclusionStage

        log.warning("restore processes could not start (%s): restoring in this process", why)
        self._occlusion = OcclusionStage()
        self.in_process = True
        self._stop()

    def _start_check(self) -> None:
        """Before the first face: every process ready, else the restorer runs in this process."""
        self._started = True
        for i in range(len(self._conns)):
            try:
                status, why = self._answer(i, raw=True)
            except (RestoreProcessLost, EOFError, OSError) as e:
                status, why = "failed", str(e) or type(e).__name__
            if status != "ready":
                self._give_up(why)
                return

    def _of(self, track_id: int) -> int:
        return int(track_id) % self._count

    def _call(self, calls: dict) -> dict:
        """{process: (op, arg)} -> {process: answer}; all sent first, then all answers collected."""
        with self._lock:
            if not self._started and not self.in_process:
                self._start_check()
            if self.in_process:
                return {i: _answer_call(self.restorer, self._occlusion, *msg, self._take_drops(i))
                        for i, msg in calls.items()}
            if self._lost is not None:
                raise RestoreProcessLost(self._lost)
            try:
                for i, msg in calls.items():
                    self._conns[i].send((*msg, self._take_drops(i)))
                return {i: self._answer(i) for i in calls}
            except (EOFError, OSError) as e:
                self._lost = f"restore process lost ({type(e).__name__})"
                raise RestoreProcessLost(self._lost) from None
            except RestoreProcessLost as e:
                self._lost = str(e)
                raise

    def _take_drops(self, i: int) -> list:
        with self._drops_lock:
            return self._drops.pop(i, [])

    def drop_track(self, track_id: int) -> None:
        """A track ended: its occlusion state and the restorer's per-track state (its new face's
        canvases, picks) go with the next call to its process (no wait here)."""
        with self._drops_lock:
            self._drops.setdefault(self._of(track_id), []).append(int(track_id))

    def _answer(self, i: int, raw: bool = False):
        conn, proc, waited = self._conns[i], self._procs[i], 0.0
        while not conn.poll(1.0):
            waited += 1.0
            if proc.poll() is not None:
                raise RestoreProcessLost(f"restore process {i} died (exit code {proc.returncode})")
            if waited >= ANSWER_DEADLINE_S:
                proc.kill()
                raise RestoreProcessLost(f"restore process {i} did not answer in {ANSWER_DEADLINE_S:.0f} s")
        status, out = conn.recv()
        if raw:
            return status, out
        if status != "ok":
            raise RuntimeError(out)
        return out

    def restore(self, items: Sequence) -> list:
        """Restored crops for `RestoreItem`s; `RenderAnswer`s for `RenderRequest`s (rendered, occluders
        cut and restored in the track's process: stream/face_work.py)."""
        items = list(items)
        if not items:
            return []
        groups: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            groups.setdefault(self._of(it.track_id), []).append(k)
        answers = self._call({i: ("restore", [items[k] for k in ks]) for i, ks in groups.items()})
        out: list = [None] * len(items)
        for i, ks in groups.items():
            if len(answers[i]) != len(ks):
                raise RuntimeError("restorer returned a different number of faces")
            for k, face in zip(ks, answers[i]):
                out[k] = face
        return out

    def warmup(self) -> None:
        self._call({i: ("warmup", None) for i in range(self._count)})

    def forget(self, track_id: int) -> None:
        self._call({self._of(track_id): ("forget", (int(track_id),))})

    @property
    def settles(self) -> bool:
        return bool(getattr(self.restorer, "settles", False))

    def settle(self, track_id: int, keep: bool) -> None:
        """Keep or take back what the track's provisional items fixed, in its process (restore_prior.py)."""
        self._call({self._of(track_id): ("settle", (int(track_id), bool(keep)))})

    def picks_of(self, track_id: int) -> dict:
        return self._call({self._of(track_id): ("picks_of", (int(track_id),))})[self._of(track_id)] or {}

    def preset_picks(self, track_id: int, picks: dict) -> None:
        self._call({self._of(track_id): ("preset_picks", (int(track_id), dict(picks)))})

    def cpu_seconds(self) -> list[float]:
        """Each restore process's CPU seconds so far, or at its close ([] where they run in this
        process or were lost)."""
        if self._cpu_at_close is not None:
            return self._cpu_at_close
        if self.in_process or not self._started or self._lost is not None:
            return []
        try:
            answers = self._call({i: ("cpu", None) for i in range(self._count)})
        except (RestoreProcessLost, RuntimeError):
            return []
        return [round(float(answers[i]), 3) for i in range(self._count)]

    def close(self) -> None:
        if self._cpu_at_close is None:
            self._cpu_at_close = self.cpu_seconds()  # (the run's report is made after its processes stop)
        with self._lock:
            self._stop()
            self._lost = self._lost or "closed"

    def _stop(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("stop", None, []))
            except OSError:
                pass
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


def cpu_report(restorer) -> dict:
    """CPU seconds so far of this process (all its threads) and of each restore process: against the
    run's wall clock they tell which one bounds it (docs/measured.md, fiftieth session)."""
    return {"this_process": round(time.process_time(), 3),
            "restore_processes": restorer.cpu_seconds() if isinstance(restorer, RestoreProcesses) else []}
