"""Live streams: network/webcam/pipe input, crash-safe or live output, reconnect, bounded latency.

`run_live(src, dst, options, live)` runs three threads:

    reader (demux+decode, reconnect) ─► drop queue ─► face stage (this thread) ─► encode queue ─► writer

The drop queue is the only place frames are dropped: when the face stage
falls behind, the oldest *unprocessed* frame goes, so latency and memory stay
bounded and no frame ever reaches the writer without passing
`FaceProcessor.process` (fail closed). Output timestamps follow the source
clock, bridged over outages by wall time, and never go backwards.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ideud.stream.decode import InputError, VideoInfo, VideoSource
from ideud.stream.encode import OutputError, VideoSink
from ideud.stream.pipeline import FaceProcessor, Options, UsageError, check_paths
from ideud.stream.types import Frame

log = logging.getLogger("ideud.live")

NETWORK_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "udp", "tcp", "srt", "rtp"}
OUT_TB = Fraction(1, 90000)  # output time base: fine enough for any frame rate, what MPEG-TS/RTP use
MIN_STEP = 0.001  # s: successive output frames are at least 1 ms apart (Matroska's tick)
MAX_JUMP = 5.0  # s: a source clock jump beyond this is re-anchored to the wall clock


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_device(url: str) -> bool:
    return url.startswith("/dev/video")


def is_live_source(src: str) -> bool:
    return src == "-" or is_device(src) or scheme(src) in NETWORK_SCHEMES


def is_live_output(dst: str) -> bool:
    return dst == "-" or "://" in dst


def parse_duration(text: str) -> float:
    """'10m', '30s', '1h', '1.5' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(ms|s|m|min|h)?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 10m, 1h)")
    unit = {"ms": 0.001, None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * unit


@dataclass
class LiveOptions:
    reconnect: float = 30.0  # longest wait between reconnect tries (s); 0: end at the first loss
    rtsp_transport: str = "tcp"
    open_timeout: float = 10.0  # s
    read_timeout: float = 5.0  # s without data = an outage
    segment: Optional[float] = None  # s per output file (rolling, time-stamped names)
    duration: Optional[float] = None  # stop after this many seconds
    queue: int = 3  # frames waiting for the face stage; beyond this the oldest is dropped
    stats: bool = False  # log a stats line every `stats_every` s
    stats_every: float = 5.0
    input_format: Optional[str] = None  # FFmpeg demuxer (e.g. mpegts for stdin); default: probed
    output_format: Optional[str] = None  # FFmpeg muxer; default: from the URL or extension
    realtime: bool = True  # drop frames when behind (live); False: every frame, the input waits (a pipe)
    gop: float = 2.0  # s between keyframes (fragment length of an MP4, join delay of a live output)
    delay_ms: float = 0.0  # test hook: extra time per frame in the face stage (a slow pipeline)
    # a network source that cannot be opened at start is retried (backoff) this long; 0: fail at
    # once (a mistyped URL says so), math.inf: wait for the camera however long it takes
    start_wait: float = 0.0


# ---------------------------------------------------------------------- clock

class OutputClock:
    """Source time -> output time (s): follows the source clock, monotonic, outages bridged by wall time."""

    def __init__(self, frame_step: float = 0.04):
        self.step = frame_step
        self.offset: Optional[float] = None  # output - source time, for the current connection
        self.prev_src: Optional[float] = None
        self.last: Optional[float] = None  # last output time
        self.last_wall: Optional[float] = None
        self.epoch_frames = 0
        self.reanchored = 0

    def new_epoch(self) -> None:
        """The next frame comes from a new connection: its source clock starts anew."""
        self.offset = self.prev_src = None
        self.epoch_frames = 0

    def __call__(self, src_time: Optional[float], wall: float) -> float:
        if src_time is None and self.prev_src is not None:
            src_time = self.prev_src + self.step  # a frame without a timestamp: one frame on
        if self.last is None:
            t = 0.0
        elif self.offset is None:
            # first timed frame of a connection: after an outage the gap in wall time, else one frame on
            t = self.last + (self.step if self.epoch_frames else max(wall - self.last_wall, self.step))
        else:
            t = src_time + self.offset
            if t < self.last + MIN_STEP or t > self.last + MAX_JUMP:
                t = self.last + max(wall - self.last_wall, MIN_STEP)  # the source clock went back or jumped
                self.reanchored += 1
        if src_time is not None:
            self.offset = t - src_time
        self.prev_src = src_time
        self.epoch_frames += 1
        self.last, self.last_wall = t, wall
        return t


# ---------------------------------------------------------------------- drop queue

class _Marker:
    pass


@dataclass
class Gap(_Marker):
    """The source was lost and is back: `seconds` without frames."""

    seconds: float


END = _Marker()


class DropQueue:
    """Frames waiting for the face stage. When full, the oldest waiting frame is dropped:
    it was never processed, so it is never written. Markers are never dropped.
    With `drop=False` (a pipe read at its own pace) a full queue makes `put` wait instead."""

    def __init__(self, size: int, on_drop=None, drop: bool = True, stop: Optional[threading.Event] = None):
        self.size = max(1, size)
        self.on_drop, self.drop, self.stop = on_drop, drop, stop
        self._items: deque = deque()
        self._frames = 0
        self._cv = threading.Condition()
        self.dropped = 0
        self.peak = 0

    def put(self, item) -> None:
        with self._cv:
            if not isinstance(item, _Marker):
                while not self.drop and self._frames >= self.size:
                    if self.stop is not None and self.stop.is_set():
                        return
                    self._cv.wait(0.1)
                if self._frames >= self.size:
                    self._drop_oldest()
                self._frames += 1
                self.peak = max(self.peak, self._frames)
            self._items.append(item)
            self._cv.notify_all()

    def _drop_oldest(self) -> None:
        for i, old in enumerate(self._items):
            if not isinstance(old, _Marker):
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop()
                return

    def get(self, timeout: float):
        """The oldest item, or None after `timeout` s."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            if not isinstance(item, _Marker):
                self._frames -= 1
                self._cv.notify_all()
            return item


# ---------------------------------------------------------------------- source

def open_source(src: str, lo: LiveOptions) -> VideoSource:
    """Open a live input; InputError (one line) when it cannot be."""
    url, fmt, opts = src, lo.input_format, {}
    if src == "-":
        url = "pipe:0"
    elif is_device(src):
        fmt = fmt or "v4l2"
    s = scheme(src)
    if s in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = lo.rtsp_transport
    if s in NETWORK_SCHEMES:
        opts["analyzeduration"] = "500000"  # start within half a second; the SDP usually says enough
    try:
        source = VideoSource(url, options=opts, timeout=(lo.open_timeout, lo.read_timeout), audio=False, fmt=fmt)
    except InputError as e:
        raise InputError(_redact(str(e))) from None  # a camera's password stays out of logs
    source.stream.thread_type = "SLICE"  # frame threads would hold frames back (latency)
    return source


def open_waiting(src: str, lo: LiveOptions, stop: threading.Event) -> VideoSource:
    """`open_source`, retried with exponential backoff for up to `lo.start_wait` seconds when a
    network source is not up yet (a camera still booting, a server restarting)."""
    if lo.start_wait <= 0 or src == "-" or not is_live_source(src) or is_device(src):
        return open_source(src, lo)
    deadline = time.monotonic() + lo.start_wait
    attempt = 0
    while True:
        try:
            return open_source(src, lo)
        except InputError as e:
            attempt += 1
            wait = min(max(lo.reconnect, 1.0), 0.5 * 2 ** attempt)
            if time.monotonic() + wait > deadline or stop.wait(0):
                raise
            (log.warning if attempt == 1 else log.info)("source not available yet (%s); try %d again in %.1f s",
                                                        e, attempt + 1, wait)
            if stop.wait(wait):
                raise


def read_frames(source: VideoSource, stop: threading.Event):
    """(frame, arrival time) pairs until the source ends; returns why it ended."""
    demux = source.container.demux(source.stream)
    while not stop.is_set():
        try:
            packet = next(demux)
        except StopIteration:
            return "end of stream"
        except av.error.EOFError:
            return "end of stream"
        except av.error.FFmpegError as e:
            return e.strerror or type(e).__name__
        arrived = time.monotonic()
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            source.lost_packets += 1  # one bad packet is not an outage
            continue
        for f in frames:
            yield source._frame(f, 0), arrived
    return "stopped"


# ---------------------------------------------------------------------- sink

def segment_name(dst: str, wall: float) -> str:
    """dst with the segment's start time: strftime codes in dst, or '-YYYYmmdd-HHMMSS' before the extension."""
    if "%" in dst:
        return time.strftime(dst, time.localtime(wall))
    stem, ext = os.path.splitext(dst)
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(wall))}{ext}"


def container_for(dst: str, lo: LiveOptions) -> tuple[str, Optional[str], dict]:
    """(path or URL for FFmpeg, muxer, muxer options) for a live output."""
    if dst == "-":
        return "pipe:1", lo.output_format or "mpegts", {"flush_packets": "1"}  # a reader waits on each frame
    s = scheme(dst)
    if s in ("rtsp", "rtsps"):
        return dst, lo.output_format or "rtsp", {"rtsp_transport": lo.rtsp_transport}
    if s in ("rtmp", "rtmps", "rtmpt"):
        return dst, lo.output_format or "flv", {}
    if s in ("udp", "srt", "tcp", "rtp"):
        return dst, lo.output_format or ("rtp" if s == "rtp" else "mpegts"), {}
    if s:
        return dst, lo.output_format, {}
    ext = os.path.splitext(dst)[1].lower()
    flush = {"flush_packets": "1"}  # no 256 KiB of output waiting in a buffer when the process dies
    if ext in (".mp4", ".m4v", ".mov"):
        # fragmented (at each keyframe, at least every second): a killed run leaves a playable file
        return dst, lo.output_format, {**flush, "movflags": "frag_keyframe+empty_moov+default_base_moof",
                                       "frag_duration": "1000000"}
    if ext in (".mkv", ".mka", ".webm"):
        return dst, lo.output_format, {**flush, "cluster_time_limit": "1000"}  # a cluster a second
    return dst, lo.output_format, flush  # .ts, ...: written as they go


class LiveSink:
    """Encodes frames as they come: one file, rolling segments, a URL or stdout."""

    def __init__(self, dst: str, options: Options, lo: LiveOptions, rate: Optional[Fraction]):
        self.dst, self.o, self.lo = dst, options, lo
        self.rate = rate or Fraction(25)
        self.sink: Optional[VideoSink] = None
        self.size: Optional[tuple[int, int]] = None
        self.start = 0.0  # output time of the current file's first frame
        self.files: list[str] = []
        self.frames = 0

    def _open(self, frame: Frame, t: float) -> None:
        path = segment_name(self.dst, time.time()) if self.lo.segment else self.dst
        if self.lo.segment:
            stem, ext = os.path.splitext(path)
            n = 1
            while path in self.files or os.path.exists(path):  # two segments in one second
                path, n = f"{stem}-{n}{ext}", n + 1
        url, fmt, copts = container_for(path, self.lo)
        info = _info_for(frame, self.rate)
        gop = max(1, round(float(self.rate) * self.lo.gop))
        vopts = {"bf": "0", "g": str(gop)}
        if self.o.codec in ("libx264", "libx265"):
            vopts["tune"] = "zerolatency"
        self.sink = VideoSink(url, info, codec=self.o.codec, crf=self.o.crf, preset=self.o.preset,
                              keep_metadata=False, audio=False, fmt=fmt, container_options=copts,
                              codec_options=vopts, temp=False)
        self.size = (frame.width, frame.height)
        self.start = t
        self.files.append(path)
        if self.lo.segment:
            log.info("writing %s", path)

    def write(self, frame: Frame, t: float) -> None:
        if self.sink is not None:
            rotate = self.lo.segment and t - self.start >= self.lo.segment
            if rotate or (self.lo.segment and (frame.width, frame.height) != self.size):
                self.close()
        if self.sink is None:
            self._open(frame, t)
        if (frame.width, frame.height) != self.size:
            _resize(frame, *self.size)  # the source changed size across a reconnect; one file keeps one size
        frame.pts, frame.time_base = round((t - self.start) / OUT_TB), OUT_TB
        self.sink.write(frame)
        self.frames += 1

    def gap(self) -> None:
        """After an outage a segmented output starts a new file; a single file stays open."""
        if self.lo.segment:
            self.close()

    def close(self) -> None:
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()


def _info_for(frame: Frame, rate: Fraction) -> VideoInfo:
    return VideoInfo(width=frame.width, height=frame.height, rate=rate, time_base=OUT_TB, frames=0,
                     rotation=frame.rotation, codec="", pix_fmt=frame.pix_fmt, work_fmt=frame.pix_fmt)


def _resize(frame: Frame, width: int, height: int) -> None:
    import cv2

    sw, sh = frame.planes[1].shape[1] / frame.width, frame.planes[1].shape[0] / frame.height
    frame.planes = [frame.planes[0] if frame.planes[0].shape[:2] == (height, width) else
                    cv2.resize(frame.planes[0], (width, height), interpolation=cv2.INTER_AREA)] + [
        cv2.resize(p, (max(1, round(width * sw)), max(1, round(height * sh))), interpolation=cv2.INTER_AREA)
        for p in frame.planes[1:]]


# ---------------------------------------------------------------------- stats

class Stats:
    """Rates, drops and receive-to-write latency (nothing about faces)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.received = 0
        self.written = 0
        self.latency: deque = deque(maxlen=100_000)  # s, the most recent frames
        self.latency_count = 0
        self.write_times: deque = deque(maxlen=100_000)  # monotonic s, paired with `latency`
        self.drop_times: deque = deque(maxlen=100_000)  # monotonic s of each drop
        self.outages: list[dict] = []
        self._lock = threading.Lock()
        self._mark = (self.t0, 0, 0, 0)  # for the periodic line: time, received, written, latency count

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._mark = (self.t0, self.received, self.written, self.latency_count)

    def dropped(self) -> None:
        self.drop_times.append(time.monotonic())

    def wrote(self, arrived: float) -> None:
        with self._lock:
            self.written += 1
            now = time.monotonic()
            self.latency.append(now - arrived)
            self.write_times.append(now)
            self.latency_count += 1

    def summary(self, dropped: int) -> dict:
        with self._lock:
            lat = np.array(self.latency) * 1000 if self.latency else np.zeros(0)
            wall = max(time.monotonic() - self.t0, 1e-9)
            return {"input_fps": round(self.received / wall, 2), "output_fps": round(self.written / wall, 2),
                    "received_frames": self.received, "written_frames": self.written, "dropped_frames": dropped,
                    "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
                    "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
                    "latency_ms_max": round(float(lat.max()), 1) if lat.size else None,
                    "outages": list(self.outages), "wall_s": round(wall, 3)}

    def line(self, dropped: int) -> str:
        """Since the last line: fps in/out, drops, latency p50/p95."""
        with self._lock:
            now = time.monotonic()
            t, r, w, n = self._mark
            dt = max(now - t, 1e-9)
            k = min(self.latency_count - n, len(self.latency))
            recent = np.array(list(self.latency)[len(self.latency) - k:]) * 1000
            self._mark = (now, self.received, self.written, self.latency_count)
            p = (f"{np.percentile(recent, 50):.0f}/{np.percentile(recent, 95):.0f} ms" if recent.size else "-")
            return (f"in {(self.received - r) / dt:.1f} fps, out {(self.written - w) / dt:.1f} fps, "
                    f"dropped {dropped}, latency p50/p95 {p}")


def format_summary(s: dict) -> str:
    p50, p95 = s.get("latency_ms_p50"), s.get("latency_ms_p95")
    lat = f"{p50:.0f}/{p95:.0f} ms" if p50 is not None else "-"
    return (f"input {s['input_fps']:.1f} fps, output {s['output_fps']:.1f} fps, dropped {s['dropped_frames']} "
            f"frames, latency p50/p95 {lat}, {len(s['outages'])} outages")


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


def run_live(src: str, dst: str, options: Optional[Options] = None, live: Optional[LiveOptions] = None,
             processor: Optional[FaceProcessor] = None, stop: Optional[threading.Event] = None,
             stats: Optional[Stats] = None) -> dict:
    """De-identify a live source into `dst` until it ends, `live.duration` passes, `stop` is set,
    or SIGINT/SIGTERM arrives (the output is then flushed and closed, and plays). Returns the report."""
    o, lo = options or Options(), live or LiveOptions()
    if lo.realtime and o.guard_per_frame is None:
        # a blocking guard search (~1 s) would stall the stream: spread it, one candidate a frame
        o = dataclasses.replace(o, guard_per_frame=1)
    check_live(src, dst, o, lo)
    stop = stop or threading.Event()
    source = open_waiting(src, lo, stop)  # a bad URL fails here, before any model loads
    try:
        proc = processor or FaceProcessor(o)
    except BaseException:
        source.close()
        raise
    info = source.info
    if is_live_source(src) and src != "-":
        # the stream went on while the models loaded: start afresh rather than from a stale backlog
        source.close()
        try:
            source = open_waiting(src, lo, stop)
        except BaseException:
            if processor is None:
                proc.close()
            raise
    rate = info.rate if info.rate and 1 <= info.rate <= 240 else Fraction(25)
    reconnectable = src != "-" and is_live_source(src) and lo.reconnect > 0
    paced = lo.realtime and not is_live_source(src)  # a file in --live mode plays in real time, like a camera
    stats = stats or Stats()  # a caller's own, to read every frame's latency afterwards (benchmark)
    frames_q = DropQueue(lo.queue, on_drop=stats.dropped, drop=lo.realtime, stop=stop)
    encode_q: queue.Queue = queue.Queue(maxsize=4)  # processed frames; a slow writer slows the face stage
    stats.start()
    clock = OutputClock(1 / float(rate))
    sink = LiveSink(dst, o, lo, rate)
    state = {"source": source, "ended": None}

    def reader():
        try:
            read_loop()
        finally:
            frames_q.put(END)  # even when the reader fails: the face stage must not wait forever

    def read_loop():
        src_now: Optional[VideoSource] = state["source"]
        attempt, lost_at = 0, None
        while not stop.is_set():
            if src_now is None:
                wait = min(lo.reconnect, 0.5 * 2 ** attempt)
                attempt += 1
                if stop.wait(wait):
                    break
                try:
                    src_now = open_source(src, lo)
                except InputError as e:
                    log.info("reconnect try %d failed: %s", attempt, e)
                    continue
                src_now.detect_size = proc.detect_size
                gap = time.monotonic() - lost_at
                log.warning("source back after %.1f s outage (%d tries)", gap, attempt)
                stats.outages.append({"at_s": round(lost_at - stats.t0, 3), "duration_s": round(gap, 3),
                                      "reason": state["lost_reason"]})
                frames_q.put(Gap(gap))
                clock.new_epoch()
                attempt = 0
            state["source"] = src_now
            last, first = time.monotonic(), None
            reason = "stopped"
            gen = read_frames(src_now, stop)
            while True:
                try:
                    frame, arrived = next(gen)
                except StopIteration as e:
                    reason = e.value or "end of stream"
                    break
                last = arrived
                if paced and frame.pts is not None:
                    if first is None:
                        first = (frame.time - arrived)
                    ahead = frame.time - first - arrived
                    if ahead > 0 and stop.wait(ahead):
                        break
                    arrived = time.monotonic()
                t = clock(frame.time if frame.pts is not None else None, arrived)
                frame.time = t  # the face stage's smoothing sees one monotonic clock
                with stats._lock:
                    stats.received += 1
                frames_q.put((frame, arrived, t))
            src_now.close()
            src_now = None
            if stop.is_set():
                break
            if not reconnectable:
                state["ended"] = reason
                break
            lost_at, state["lost_reason"] = last, reason
            log.warning("source lost (%s); reconnecting (max wait %g s)", reason, lo.reconnect)

    def writer():
        while True:
            item = encode_q.get()
            if item is END:
                return
            if isinstance(item, Gap):
                sink.gap()
                continue
            frame, arrived, t = item
            sink.write(frame, t)
            stats.wrote(arrived)
            if sink.frames == 1:
                log.info("first frame written (%.0f ms after it arrived)", 1000 * (time.monotonic() - arrived))

    source.detect_size = proc.detect_size
    log.info("source: %dx%d %s at %s fps", info.width, info.height, info.codec, float(info.rate) if info.rate else "?")
    stopped_by = _install_signals(stop)
    rd, wr = _Thread(reader, "ideud-live-read"), _Thread(writer, "ideud-live-write")
    rd.start()
    wr.start()
    deadline = time.monotonic() + lo.duration if lo.duration else None
    next_stats = time.monotonic() + lo.stats_every
    n = 0
    reset_gap = o.max_misses / float(rate)
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                stopped_by.setdefault("reason", "duration")
                break
            if lo.stats and time.monotonic() >= next_stats:
                log.info("%s", stats.line(frames_q.dropped))
                next_stats += lo.stats_every
            if wr.error is not None:
                raise wr.error
            item = frames_q.get(0.1)
            if item is None:
                continue
            if item is END:  # the source ended (or the reader failed: raised below)
                break
            if isinstance(item, Gap):
                if item.seconds > reset_gap:
                    proc.tracker.reset()  # people after a gap are new tracks, new identities
                _handoff(encode_q, item, stop)
                continue
            frame, arrived, t = item
            if lo.delay_ms:
                time.sleep(lo.delay_ms / 1000)
            frame.index = n  # consecutive over drops and reconnects, as the tracker expects
            proc.process(frame)
            n += 1
            _handoff(encode_q, item, stop)
    except BaseException:
        stop.set()
        _finish(sink, encode_q, wr, timeout=10, quiet=True)
        raise
    finally:
        stop.set()
        _restore_signals(stopped_by)
        if processor is None:
            proc.close()
    _finish(sink, encode_q, wr, timeout=60)  # everything already processed is still written
    rd.join(timeout=lo.read_timeout + 1)
    for th in (wr, rd):
        if th.error is not None:
            raise th.error
    if sink.frames == 0:
        raise InputError(f"{src}: no frames received")
    if not rd.is_alive() and state["source"] is not None:
        state["source"].close()
    summary = stats.summary(frames_q.dropped)
    # frames still queued when the run stopped were never processed, so never written
    summary.update(unwritten_at_stop=summary["received_frames"] - summary["written_frames"] - summary["dropped_frames"],
                   peak_queue=frames_q.peak, queue=lo.queue, reanchored_timestamps=clock.reanchored,
                   stopped_by=stopped_by.get("reason") or ("source ended" if state["ended"] else "stopped"))
    if lo.stats:
        log.info("%s", format_summary(summary))
    rep = proc.report()
    rep.update({
        "input": {"url": _redact(src), "width": info.width, "height": info.height,
                  "fps": float(info.rate) if info.rate else None, "codec": info.codec},
        "output": {"path": dst if is_live_output(dst) else os.path.abspath(dst), "files": sink.files,
                   "frames": sink.frames, "codec": o.codec},
        "live": summary,
        "options": {**{k: v for k, v in dataclasses.asdict(o).items() if k != "inject_faults"},
                    **{f"live_{k}": v for k, v in dataclasses.asdict(lo).items()}},
        "wall_s": summary["wall_s"], "fps": summary["output_fps"],
    })
    return rep


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


def _redact(url: str) -> str:
    """No credentials of the camera in reports."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


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
