"""Live streams: network/webcam/pipe input, crash-safe or live output, reconnect, bounded latency.

`run_live(src, dst, options, live)` runs three threads:

    reader (demux+decode, reconnect) ─► drop queue ─► face stage (this thread) ─► encode queue ─► writer

The drop queue is the only place frames are dropped: when the face stage
falls behind, the oldest *unprocessed* frame goes, so latency and memory stay
bounded and no frame ever reaches the writer without passing
`FaceProcessor.process` (fail closed). Output timestamps follow the source
clock, bridged over outages by wall time, and never go backwards.

The sources, sink, clock and drop queue are in `ideud.stream.live_io`; this module is the loop
(`LiveRun`) and its statistics. Structured events (`LiveOptions.on_event(kind, **fields)`, and as
`ideud-live-event {json}` lines on stderr when $IDEUD_LIVE_EVENTS=stderr, for a test driving the CLI):
"source_down" (attempt, retry_in_s), "source_lost" (reason), "reconnect_failed" (attempt),
"reconnected" (gap_s, tries), "frame_written" (n, t, file), "output_gap" (seconds),
"segment_opened" (path, index), "segment_closed" (path, index, frames), "stopped" (reason, written).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Optional

from ideud.stream.decode import AudioPacket, VideoSource
from ideud.stream.detect import make_detector
from ideud.stream.degrade import DegradeControl
from ideud.stream.encode import codec_for
from ideud.stream.errors import InputError, OutputError, UsageError
from ideud.stream.live_detect import LiveDetect
from ideud.stream.live_io import (END, MAX_JUMP, MIN_STEP, NETWORK_SCHEMES, OUT_TB, DropQueue, Emit, Gap, LiveOptions,
                                  LiveSink, OutputClock, container_for, is_device, is_live_output, is_live_source,
                                  is_recording, open_source, open_waiting, parse_duration, read_frames, redact, scheme,
                                  segment_name)
from ideud.stream.live_stats import Stats, format_summary
from ideud.stream.options import options_report
from ideud.stream.pipeline import FaceProcessor, Options, check_paths
from ideud.stream.warmup import warm_up

log = logging.getLogger("ideud.live")

__all__ = ["END", "MAX_JUMP", "MIN_STEP", "NETWORK_SCHEMES", "OUT_TB", "DropQueue", "Gap", "LiveOptions", "LiveRun",
           "LiveSink", "OutputClock", "Stats", "check_live", "container_for", "format_summary", "is_device",
           "is_live_output", "is_live_source", "is_recording", "open_source", "open_waiting", "parse_duration",
           "read_frames", "run_live", "scheme", "segment_name"]

AUDIO_QUEUE = 4096  # audio packets waiting for the video to catch up (~85 s of AAC); the oldest go beyond
# CenterFace's threads in a live run: the stream waits for every frame's detection (no frame is
# skipped), and once the degrade steps have shed the faces' work a core is free for it. With one
# thread detection held a 4-face 640x360 feed to ~20 of its 30 fps on 2 cores (the forty-first
# session); a file run keeps one (its cores are busy, and a thread costs ~10 % less CPU a call)
LIVE_DETECT_THREADS = 2
EVENTS_ENV = "IDEUD_LIVE_EVENTS"  # "stderr": every event also as one `ideud-live-event {json}` line
_stderr_lock = threading.Lock()


def event_emitter(lo: LiveOptions) -> Emit:
    """emit(kind, **fields) -> `lo.on_event` and/or stderr lines; a failing hook never stops the stream."""
    to_stderr = os.environ.get(EVENTS_ENV, "").strip().lower() == "stderr"
    hook = lo.on_event

    def emit(kind: str, **fields) -> None:
        if to_stderr:
            line = "ideud-live-event " + json.dumps({"kind": kind, **fields}, default=str)
            with _stderr_lock:
                print(line, file=sys.stderr, flush=True)
        if hook is not None:
            try:
                hook(kind, **fields)
            except Exception:
                log.exception("live event hook failed on %r", kind)

    return emit


# ---------------------------------------------------------------------- the run

class _Thread(threading.Thread):
    def __init__(self, fn, name):
        super().__init__(target=self._run, name=name, daemon=True)
        self.fn, self.error = fn, None

    def _run(self):
        try:
            self.fn()
        except BaseException as e:  # handed to the face stage's thread
            self.error = e


def check_live(src: str, dst: str, o: Options, lo: LiveOptions) -> None:
    if lo.segment is not None and (lo.segment <= 0 or is_live_output(dst)):
        raise UsageError("--segment needs a positive length and a file output")
    if lo.queue < 1:
        raise UsageError("--queue must be at least 1")
    check_paths(src, dst, o.force or bool(lo.segment))


class LiveRun:
    """One live run's state and its three loops: `read` (reader thread), `write` (writer thread) and
    `process` (the face stage, on the caller's thread). Built by `run_live` with the source open."""

    def __init__(self, src: str, dst: str, o: Options, lo: LiveOptions, source: VideoSource, info,
                 proc: FaceProcessor, stop: threading.Event, stats: Stats, emit: Emit):
        self.src, self.dst, self.o, self.lo = src, dst, o, lo
        self.source: Optional[VideoSource] = source  # the current connection (None while reconnecting)
        self.info, self.proc, self.stop, self.stats, self.emit = info, proc, stop, stats, emit
        self.rate = info.rate if info.rate and 1 <= info.rate <= 240 else Fraction(25)
        self.reconnectable = src != "-" and is_live_source(src) and lo.reconnect > 0
        self.paced = lo.realtime and not is_live_source(src)  # a file in --live mode plays in real time
        self.frames_q = DropQueue(lo.queue, on_drop=stats.dropped, drop=lo.realtime, stop=stop)
        self.encode_q: queue.Queue = queue.Queue(maxsize=4)  # processed frames; a slow writer slows the face stage
        self.clock = OutputClock(1 / float(self.rate))
        self.sink = LiveSink(dst, o, lo, self.rate, emit=emit)
        self.ended: Optional[str] = None  # why the source ended for good (not reconnectable)
        self.lost_at = 0.0  # arrival time of the last frame before an outage
        self.lost_reason = ""
        self.processed = 0  # frames through the face stage: the index the tracker sees next
        # a frame is held while its faces are restored (by a restore worker), and finished after the
        # next frame's Step I, as in file runs (stream/processor.py `_settle`)
        self.hold = lo.hold and proc.worker is not None
        # degrade before dropping: a pipe read at its own pace (not realtime) drops nothing, so never
        self.degrade = DegradeControl(lo.degrade_steps if lo.degrade and lo.realtime else 0,
                                      capacity=lo.queue - 1 + lo.detect_ahead)  # frames that can wait undropped
        self.stopped_by: dict = {}  # "reason" set by a signal or the duration
        self.detect: Optional[LiveDetect] = None  # detection one frame ahead, on its own thread
        # audio packets at their output time, from the reader to the writer (copied; encoded once only
        # where the output's container cannot hold them): they skip the face stage and are written
        # once the video reaches their time
        self.audio_q: deque = deque(maxlen=AUDIO_QUEUE)
        self.last_written: Optional[float] = None  # output time of the last frame written

    # ------------------------------------------------------------------ reader thread

    def read(self) -> None:
        try:
            self._read_connections()
        finally:
            self.frames_q.put(END)  # even when the reader fails: the face stage must not wait forever

    def _read_connections(self) -> None:
        while not self.stop.is_set():
            if self.source is None and not self._reconnect():
                break
            reason = self._read_connection(self.source)
            self.sink.set_audio(None)  # no file may take its streams as templates once it is closed
            self.source.close()
            self.source = None
            if self.stop.is_set():
                break
            if not self.reconnectable:
                self.ended = reason
                break
            self.lost_reason = reason
            log.warning("source lost (%s); reconnecting (max wait %g s)", reason, self.lo.reconnect)
            self.emit("source_lost", reason=reason)

    def _reconnect(self) -> bool:
        """Open the source again, with backoff; False when stopped meanwhile."""
        attempt = 0
        while True:
            wait = min(self.lo.reconnect, 0.5 * 2 ** attempt)
            attempt += 1
            if self.stop.wait(wait):
                return False
            try:
                source = open_source(self.src, self.lo, self.o.audio)
            except InputError as e:
                log.info("reconnect try %d failed: %s", attempt, e)
                self.emit("reconnect_failed", attempt=attempt)
                continue
            break
        source.detect_size = self.proc.detect_size
        gap = time.monotonic() - self.lost_at
        log.warning("source back after %.1f s outage (%d tries)", gap, attempt)
        self.stats.outages.append({"at_s": round(self.lost_at - self.stats.t0, 3), "duration_s": round(gap, 3),
                                   "reason": self.lost_reason})
        self.frames_q.put(Gap(gap))
        self.clock.new_epoch()
        self.sink.set_audio(source.audio_streams)
        self.source = source
        self.emit("reconnected", gap_s=round(gap, 3), tries=attempt)
        return True

    def _read_connection(self, source: VideoSource) -> str:
        """Frames of one connection into the drop queue; returns why it ended."""
        first = None
        self.lost_at = time.monotonic()  # a connection that yields no frame was lost when it opened
        frames = read_frames(source, self.stop)
        while True:
            try:
                frame, arrived = next(frames)
            except StopIteration as e:
                return e.value or "end of stream"
            if isinstance(frame, AudioPacket):
                self.sink.note_audio(frame)
                p = frame.packet
                t = self.clock.audio_time(float(p.pts * p.time_base))
                if t is not None:
                    self.audio_q.append((frame, t))
                continue
            self.lost_at = arrived
            if self.paced and frame.pts is not None:
                if first is None:
                    first = frame.time - arrived
                ahead = frame.time - first - arrived
                if ahead > 0 and self.stop.wait(ahead):
                    return "stopped"
                arrived = time.monotonic()
            t = self.clock(frame.time if frame.pts is not None else None, arrived)
            frame.time = t  # the face stage's smoothing sees one monotonic clock
            self.stats.received_one()
            self.frames_q.put((frame, arrived, t))

    # ------------------------------------------------------------------ writer thread

    def write(self) -> None:
        while True:
            item = self.encode_q.get()
            if item is END:
                if self.last_written is not None:  # the audio that goes with the last frame
                    self._write_audio(self.last_written + float(1 / self.rate))
                return
            if isinstance(item, Gap):
                self.sink.gap()
                self.emit("output_gap", seconds=round(item.seconds, 3))
                continue
            frame, arrived, t = item
            self._write_audio(t)  # before the frame: a segment that ends at this frame gets its audio
            self.sink.write(frame, t)
            self.last_written = t
            self.stats.wrote(arrived)
            if self.sink.frames == 1:
                log.info("first frame written (%.0f ms after it arrived)", 1000 * (time.monotonic() - arrived))
            self.emit("frame_written", n=self.sink.frames, t=round(t, 4), file=len(self.sink.files) - 1)

    def _write_audio(self, until: float) -> None:
        """The waiting audio packets before output time `until`, in the order they came."""
        q = self.audio_q
        while q and q[0][1] < until:
            item, t = q.popleft()
            self.sink.write_audio(item, t)

    # ------------------------------------------------------------------ face stage (caller's thread)

    def process(self, reader: _Thread, writer: _Thread) -> None:
        """Until the source ends, the duration passes or `stop` is set (a signal, the caller)."""
        lo = self.lo
        q = self.detect if self.detect is not None else self.frames_q
        deadline = time.monotonic() + lo.duration if lo.duration else None
        next_stats = time.monotonic() + lo.stats_every
        reset_gap = self.o.max_misses / float(self.rate)
        held = None  # (prepared frame, its queue item): finished after the next frame's Step I
        while not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                self.stopped_by.setdefault("reason", "duration")
                break
            if lo.stats and time.monotonic() >= next_stats:
                log.info("%s", self.stats.line(self.frames_q.dropped))
                next_stats += lo.stats_every
            if writer.error is not None:
                raise writer.error
            item = q.get(0.1)
            if item is None:
                continue
            if item is END:  # the source ended (or the reader failed: raised by the caller)
                if self.detect is not None and self.detect.error is not None:
                    raise self.detect.error
                break
            if isinstance(item, Gap):
                self._finish_frame(held)
                held = None
                if item.seconds > reset_gap:
                    self.proc.tracker.reset()  # people after a gap are new tracks, new identities
                _handoff(self.encode_q, item, self.stop)
                continue
            frame, arrived, t = item
            if lo.delay_ms:
                time.sleep(lo.delay_ms / 1000)  # test hook: a slow face stage
            frame.index = self.processed  # consecutive over drops and reconnects, as the tracker expects
            # behind: the degrade steps (stream/degrade.py) before the queue drops frames
            self.degrade.update(q.waiting)
            self.degrade.apply(self.proc)
            ready = (self.proc.prepare(frame), item)
            if self.hold:  # this one waits for its restore; the one held before is finished now
                ready, held = held, ready
            self._finish_frame(ready)
            self.processed += 1
        self._finish_frame(held)

    def _finish_frame(self, prepared) -> None:
        """Finish a prepared frame (None: none) and hand it to the writer."""
        if prepared is not None:
            self.proc.finish(prepared[0])
            _handoff(self.encode_q, prepared[1], self.stop)

    # ------------------------------------------------------------------ the report

    def report(self) -> dict:
        summary = self.stats.summary(self.frames_q.dropped)
        # frames still queued when the run stopped were never processed, so never written
        summary.update(unwritten_at_stop=summary["received_frames"] - summary["written_frames"]
                       - summary["dropped_frames"], peak_queue=self.frames_q.peak, queue=self.lo.queue,
                       reanchored_timestamps=self.clock.reanchored, degraded_frames=sum(self.degrade.frames_at[1:]),
                       degrade=self._degrade_report(),
                       detect_thread_ms_per_frame=(round(1000 * self.detect.seconds / max(self.detect.frames, 1), 2)
                                                   if self.detect is not None else None),
                       stopped_by=self.stopped_by.get("reason") or ("source ended" if self.ended else "stopped"))
        if self.lo.stats:
            log.info("%s", format_summary(summary))
        info, o = self.info, self.o
        rep = self.proc.report()
        rep.update({
            "input": {"url": redact(self.src), "width": info.width, "height": info.height,
                      "fps": float(info.rate) if info.rate else None, "codec": info.codec},
            "output": {"path": self.dst if is_live_output(self.dst) else os.path.abspath(self.dst),
                       "files": self.sink.files, "frames": self.sink.frames, "codec": codec_for(o.codec, self.dst),
                       "audio_packets": {"copied": self.sink.audio_packets, "dropped": self.sink.audio_dropped}},
            "live": summary,
            "options": {**options_report(o),
                        **{f"live_{f.name}": getattr(self.lo, f.name) for f in dataclasses.fields(self.lo)
                           if f.name != "on_event"}},  # (asdict would deep-copy the hook)
            "wall_s": summary["wall_s"], "fps": summary["output_fps"],
        })
        return rep

    def _degrade_report(self) -> dict:
        """How often each degrade step engaged (stream/degrade.py): frames at each level, faces."""
        r = self.proc.reuse
        return {"frames_at_level": {str(k): n for k, n in enumerate(self.degrade.frames_at) if n},
                "max_level": self.degrade.max_level, "reused_face_frames": r.reused,
                "reused_still_face_frames": r.reused_still, "new_track_obfuscated_face_frames": r.new_obfuscated}

    # ------------------------------------------------------------------ all of it

    def run(self, owns_processor: bool) -> dict:
        self.source.detect_size = self.proc.detect_size
        self.sink.set_audio(self.source.audio_streams)
        info = self.info
        log.info("source: %dx%d %s at %s fps", info.width, info.height, info.codec,
                 float(info.rate) if info.rate else "?")
        self.stats.start()
        self.stopped_by = _install_signals(self.stop)
        rd, wr = _Thread(self.read, "ideud-live-read"), _Thread(self.write, "ideud-live-write")
        ahead = self.proc.ahead
        if self.lo.detect_ahead:
            self.detect = LiveDetect(self.frames_q, self.proc.detector, self.proc.detect_size, self.stop)
            self.proc.ahead = self.detect.start()
        rd.start()
        wr.start()
        try:
            self.process(rd, wr)
        except BaseException:
            self.stop.set()
            _finish(self.sink, self.encode_q, wr, timeout=10, quiet=True)
            raise
        finally:
            self.stop.set()
            if self.detect is not None:
                self.detect.join(timeout=5)
            self.proc.ahead = ahead
            _restore_signals(self.stopped_by)
            if owns_processor:
                self.proc.close()
        _finish(self.sink, self.encode_q, wr, timeout=60)  # everything already processed is still written
        rd.join(timeout=self.lo.read_timeout + 1)
        for th in (wr, rd):
            if th.error is not None:
                raise th.error
        if self.sink.frames == 0:
            raise InputError(f"{self.src}: no frames received")
        if not rd.is_alive() and self.source is not None:
            self.sink.set_audio(None)
            self.source.close()
        rep = self.report()
        self.emit("stopped", reason=rep["live"]["stopped_by"], written=self.sink.frames)
        return rep


def live_detector(o: Options):
    """The detector `o` names, CenterFace with LIVE_DETECT_THREADS threads where the cores are there."""
    return make_detector(o.detector, threshold=o.det_threshold, threads=min(LIVE_DETECT_THREADS, os.cpu_count() or 1))


def run_live(src: str, dst: str, options: Optional[Options] = None, live: Optional[LiveOptions] = None,
             processor: Optional[FaceProcessor] = None, stop: Optional[threading.Event] = None,
             stats: Optional[Stats] = None) -> dict:
    """De-identify a live source into `dst` until it ends, `live.duration` passes, `stop` is set,
    or SIGINT/SIGTERM arrives (the output is then flushed and closed, and plays). Returns the report."""
    o, lo = options or Options(), live or LiveOptions()
    if lo.realtime and o.guard_per_frame is None:
        # a blocking guard search (~1 s) would stall the stream: spread it, one candidate a frame
        o = dataclasses.replace(o, guard_per_frame=1)
    # every frame detected: without a held frame (no restore worker) nothing could hide a face that
    # appeared on a frame without detection, and with one such a frame has no box to move a track's
    # last face to (the degrade steps: stream/degrade.py)
    o = dataclasses.replace(o, detect_every=1)
    check_live(src, dst, o, lo)
    stop = stop or threading.Event()
    emit = event_emitter(lo)
    source = open_waiting(src, lo, stop, emit, audio=o.audio)  # a bad URL fails here, before any model loads
    try:
        proc = processor or FaceProcessor(o, detector=live_detector(o))
        proc.cadence.every = 1  # a caller's processor too
        if processor is None and lo.realtime:
            warm_up(proc)  # models' first calls now, not as frames dropped at the stream's start
    except BaseException:
        source.close()
        raise
    info = source.info
    if is_live_source(src) and src != "-":
        # the stream went on while the models loaded: start afresh rather than from a stale backlog
        source.close()
        try:
            source = open_waiting(src, lo, stop, emit, audio=o.audio)
        except BaseException:
            if processor is None:
                proc.close()
            raise
    # a caller's own Stats, to read every frame's latency afterwards (benchmark)
    run = LiveRun(src, dst, o, lo, source, info, proc, stop, stats or Stats(), emit)
    return run.run(owns_processor=processor is None)


def _handoff(q: queue.Queue, item, stop: threading.Event) -> None:
    """Hand a processed frame to the writer; wait (bounded memory) while it is behind."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                return  # shutting down with the writer behind: this frame is not written


def _finish(sink: LiveSink, q: queue.Queue, writer: threading.Thread, timeout: float, quiet: bool = False) -> None:
    """Let the writer drain what was processed, then flush and close the output (so it plays)."""
    deadline = time.monotonic() + timeout
    while writer.is_alive() and time.monotonic() < deadline:
        try:
            q.put(END, timeout=0.1)
            break
        except queue.Full:
            continue
    writer.join(timeout=max(0.0, deadline - time.monotonic()))
    if writer.is_alive():
        log.warning("the output is stuck; left as written so far")  # closing it under the writer could crash
        return
    try:
        sink.close()
    except OutputError as e:
        if not quiet and writer.error is None:
            raise
        log.warning("%s", e)


def _install_signals(stop: threading.Event) -> dict:
    """SIGINT/SIGTERM end a live run cleanly (flush, close); a second one aborts at once."""
    state: dict = {"previous": {}}
    if threading.current_thread() is not threading.main_thread():
        return state

    def handler(signum, _frame):
        if stop.is_set() and "reason" in state:
            raise KeyboardInterrupt
        state["reason"] = signal.Signals(signum).name
        log.warning("%s: finishing the output", state["reason"])
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        state["previous"][sig] = signal.signal(sig, handler)
    return state


def _restore_signals(state: dict) -> None:
    for sig, prev in state.pop("previous", {}).items():
        signal.signal(sig, prev)
