"""Live I/O: what a live run reads from and writes to, and the two buffers between.

Sources (network, device, pipe): open, wait for at start, read frames. The output clock (source time
-> output time, monotonic across outages). The drop queue (the only place frames are dropped). The
sink: container and muxer options per output kind, one file, rolling segments, a URL or stdout.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Optional

import av

from ideud.stream.decode import AudioPacket, VideoInfo, VideoSource
from ideud.stream.encode import VideoSink, codec_for
from ideud.stream.errors import InputError
from ideud.stream.live_audio import adts_config, adts_stream, needs_raw_aac, without_adts
from ideud.stream.types import Frame

if TYPE_CHECKING:
    from ideud.stream.pipeline import Options

log = logging.getLogger("ideud.live")

Emit = Callable[..., None]  # emit(kind, **fields): the live run's structured events


def no_event(kind: str, **fields) -> None:
    pass

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


def is_recording(src: str, timeout: float = 10.0) -> bool:
    """An http(s) URL to a file with an end (its container says how long it is; an HLS playlist
    that is complete): a recording, to run as a file, every frame. As a live stream it was paced,
    dropped frames when behind, and at its end reconnected and read it again, without end. False
    for any other source, a stream without a length (a camera's MJPEG, a live playlist) and a URL
    that does not answer (the live path's waits and errors apply)."""
    if scheme(src) not in ("http", "https"):
        return False
    import av

    try:
        with av.open(src, timeout=timeout) as c:
            return bool(c.duration and c.duration > 0)
    except Exception:
        return False


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
    degrade: bool = True  # when behind, the degrade steps (stream/degrade.py) before dropping frames
    degrade_steps: int = 4  # the last degrade step used (1-4; benchmarks compare them)
    # detection one frame ahead on its own thread (stream/live_detect.py). Off by default: on the
    # shared 2-core machine (load ~8) it was slower (49 vs 40 ms a frame at level 4, same CPU time)
    detect_ahead: bool = False
    # the face stage holds one frame while the restore worker restores its faces and prepares the next
    # meanwhile (~one frame more latency); without it the stage waits for each frame's restore. On
    # the 2-core machine, 4 faces at 360p: 93.6 against 91.7 % of frames written (five runs each)
    hold: bool = True
    # a network source that cannot be opened at start is retried (backoff) this long; 0: fail at
    # once (a mistyped URL says so), math.inf: wait for the camera however long it takes
    start_wait: float = 0.0
    # structured events (kind, **fields) from the reader, face stage and writer threads: "source_down",
    # "source_lost", "reconnected", "frame_written", "output_gap", "segment_opened", "segment_closed",
    # "stopped" (see stream/live.py); must be quick and thread-safe. Not part of any report.
    on_event: Optional[Callable[..., None]] = None


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

    def audio_time(self, src_time: float) -> Optional[float]:
        """Output time of an audio packet at `src_time` on this connection's source clock: the
        offset of its latest video frame (None before the connection's first one: dropped)."""
        return None if self.offset is None else src_time + self.offset



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

    @property
    def waiting(self) -> int:
        """Frames waiting (markers not counted)."""
        with self._cv:
            return self._frames

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

def open_source(src: str, lo: LiveOptions, audio: bool = False) -> VideoSource:
    """Open a live input (with its audio streams where `audio`); InputError (one line) when it cannot be."""
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
        source = VideoSource(url, options=opts, timeout=(lo.open_timeout, lo.read_timeout), audio=audio, fmt=fmt)
    except InputError as e:
        raise InputError(redact(str(e))) from None  # a camera's password stays out of logs
    source.stream.thread_type = "SLICE"  # frame threads would hold frames back (latency)
    return source


def open_waiting(src: str, lo: LiveOptions, stop: threading.Event, emit: Emit = no_event,
                 audio: bool = False) -> VideoSource:
    """`open_source`, retried with exponential backoff for up to `lo.start_wait` seconds when a
    network source is not up yet (a camera still booting, a server restarting); each failed try is
    a "source_down" event."""
    if lo.start_wait <= 0 or src == "-" or not is_live_source(src) or is_device(src):
        return open_source(src, lo, audio)
    deadline = time.monotonic() + lo.start_wait
    attempt = 0
    while True:
        try:
            return open_source(src, lo, audio)
        except InputError as e:
            attempt += 1
            wait = min(max(lo.reconnect, 1.0), 0.5 * 2 ** attempt)
            if time.monotonic() + wait > deadline or stop.wait(0):
                raise
            emit("source_down", attempt=attempt, retry_in_s=round(wait, 3))
            (log.warning if attempt == 1 else log.info)("source not available yet (%s); try %d again in %.1f s",
                                                        e, attempt + 1, wait)
            if stop.wait(wait):
                raise


def read_frames(source: VideoSource, stop: threading.Event):
    """(frame or AudioPacket, arrival time) pairs until the source ends; returns why it ended."""
    audio = {s.index: i for i, s in enumerate(source.audio_streams)}
    demux = source.container.demux(source.stream, *source.audio_streams)
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
        if packet.stream.index in audio:
            if packet.pts is not None and packet.size:
                yield AudioPacket(packet, audio[packet.stream.index]), arrived
            continue
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            source.lost_packets += 1  # one bad packet is not an outage
            continue
        for f in frames:
            yield source.to_frame(f, 0), arrived
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
    """Encodes frames as they come: one file, rolling segments, a URL or stdout.
    Each file is a "segment_opened" event, and "segment_closed" (with its frames) once closed."""

    def __init__(self, dst: str, options: "Options", lo: LiveOptions, rate: Optional[Fraction],
                 emit: Emit = no_event):
        self.dst, self.o, self.lo, self.emit = dst, options, lo, emit
        self.file_frames = 0  # frames in the current file
        self.rate = rate or Fraction(25)
        self.sink: Optional[VideoSink] = None
        self.size: Optional[tuple[int, int]] = None
        self.start = 0.0  # output time of the current file's first frame
        self.files: list[str] = []
        self.frames = 0
        # audio: the current connection's input streams, the templates of a file's audio streams
        # (None between connections: a closed container's streams must never be touched)
        self._templates: Optional[list] = None
        self._templates_lock = threading.Lock()
        self._audio_last: dict[int, int] = {}  # per audio stream of the open file, its last packet's pts (OUT_TB)
        self.audio_packets = 0
        self.audio_dropped = 0  # packets not written: before a file's first frame, behind the clock, or refused
        self._adts_config: dict[int, bytes] = {}  # per copied stream: the AAC config its ADTS headers give
        self._strip: set[int] = set()  # copied streams of the open file written as raw AAC (ADTS headers off)
        self._out_of: dict[int, int] = {}  # copied stream -> its stream in the open file

    def note_audio(self, item: AudioPacket) -> None:
        """Called by the reader for every audio packet: keeps the AAC configuration of an ADTS stream
        (MPEG-TS, a camera), which an MP4 or FLV file needs in its header before the first packet."""
        if item.stream_index not in self._adts_config:
            config = adts_config(bytes(item.packet))
            if config is not None:
                self._adts_config[item.stream_index] = config

    def set_audio(self, streams: Optional[list]) -> None:
        """The audio streams of the connection being read (None: it is closing)."""
        with self._templates_lock:
            self._templates = list(streams) if streams is not None else None

    def write_audio(self, item: AudioPacket, t: float) -> None:
        """Copy an audio packet at output time `t` into the open file (VideoSink encodes it once where
        the file cannot hold its codec); dropped when
        no file is open yet, when it would start before the file, or go back in time (a re-anchored clock)."""
        k = self._out_of.get(item.stream_index) if self.sink is not None else None
        out = None if k is None else self.sink.audio_out[k]
        pts = round((t - self.start) / OUT_TB)
        packet = item.packet
        if item.stream_index in self._strip:
            packet = without_adts(packet)
        if out is None or packet is None or pts < 0 or pts <= self._audio_last.get(k, -1):
            self.audio_dropped += 1
            return
        if packet.duration and packet.time_base:
            packet.duration = max(1, round(packet.duration * packet.time_base / OUT_TB))
        packet.time_base = OUT_TB
        packet.pts = packet.dts = pts
        self._audio_last[k] = pts
        self.sink.write_audio(AudioPacket(packet, k))
        self.audio_packets += 1

    def _open(self, frame: Frame, t: float) -> None:
        path = segment_name(self.dst, time.time()) if self.lo.segment else self.dst
        if self.lo.segment:
            stem, ext = os.path.splitext(path)
            n = 1
            while path in self.files or os.path.exists(path):  # two segments in one second
                path, n = f"{stem}-{n}{ext}", n + 1
        url, fmt, copts = container_for(path, self.lo)
        info = info_for(frame, self.rate)
        gop = max(1, round(float(self.rate) * self.lo.gop))
        vopts = {"bf": "0", "g": str(gop)}
        if codec_for(self.o.codec, path, fmt) in ("libx264", "libx265"):
            vopts["tune"] = "zerolatency"
        raw_aac = needs_raw_aac(url, fmt)
        with self._templates_lock:  # the streams must not be closed under the sink being built
            streams = list(self._templates or []) if self.o.audio else []
            # an ADTS stream (MPEG-TS, a camera) goes into an MP4 or FLV file as raw AAC with its
            # configuration in the header: known from its packets, else that file goes without it
            adts = {i for i, st in enumerate(streams) if raw_aac and adts_stream(st)}  # (read under the lock)
            wanted = [i for i in range(len(streams)) if i not in adts or i in self._adts_config]
            info.audio = [streams[i] for i in wanted]
            self.sink = VideoSink(url, info, codec=self.o.codec, crf=self.o.crf, preset=self.o.preset,
                                  keep_metadata=False, audio=self.o.audio, fmt=fmt, container_options=copts,
                                  codec_options=vopts, temp=False)
        self._out_of = {i: k for k, i in enumerate(wanted) if self.sink.audio_out[k] is not None}
        self._audio_last.clear()
        self._strip = {i for i in self._out_of if i in adts}
        for i in self._strip:
            self.sink.audio_out[self._out_of[i]].codec_context.extradata = self._adts_config[i]
        self.size = (frame.width, frame.height)
        self.start = t
        self.files.append(path)
        self.file_frames = 0
        if self.lo.segment:
            log.info("writing %s", path)
        self.emit("segment_opened", path=path, index=len(self.files) - 1)

    def write(self, frame: Frame, t: float) -> None:
        if self.sink is not None:
            rotate = self.lo.segment and t - self.start >= self.lo.segment
            if rotate or (self.lo.segment and (frame.width, frame.height) != self.size):
                self.close()
        if self.sink is None:
            self._open(frame, t)
        frame.pts, frame.time_base = round((t - self.start) / OUT_TB), OUT_TB
        self.sink.write(frame)
        self.frames += 1
        self.file_frames += 1

    def gap(self) -> None:
        """After an outage a segmented output starts a new file; a single file stays open."""
        if self.lo.segment:
            self.close()

    def close(self) -> None:
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()
            self.emit("segment_closed", path=self.files[-1], index=len(self.files) - 1, frames=self.file_frames)


def info_for(frame: Frame, rate: Fraction) -> VideoInfo:
    return VideoInfo(width=frame.width, height=frame.height, rate=rate, time_base=OUT_TB, frames=0,
                     rotation=0, codec="", pix_fmt=frame.pix_fmt).take_picture_of(frame)


def redact(url: str) -> str:
    """No credentials of the camera in reports."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)

