"""Whole files: `deidentify(src, dst, options)` runs a video or an image through a FaceProcessor.

A video runs on three threads: decode and encode each on their own, with bounded queues between
them and the main thread, which prepares and finishes frames (stream/processor.py). Frames may
wait for the restorer and are held for the look-back (`frames_held`: stream/look_back.py), but
they and the audio packets between them reach the encoder in decode order. The output is written
to a temp file and renamed when complete (stream/encode.py); on any failure it is removed. With
`processes` > 1, worker processes detect faces a few frames ahead (stream/workers.py); with one
process on several cores, a thread does (stream/detect_thread.py), taking each frame from the
decode thread; everything else with state stays on the main thread.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from typing import Callable, Optional

from ideud.stream import animated, image_metadata
from ideud.stream.decode import AudioPacket, VideoInfo, VideoSource, attach_small, is_image, read_image
from ideud.stream.encode import VideoSink
from ideud.stream.errors import InputError, OutputError, UsageError
from ideud.stream.detect_thread import DetectThread
from ideud.stream.image_out import write_image
from ideud.stream.options import Options, options_report
from ideud.stream.processor import FaceProcessor, PendingFrame
from ideud.stream.types import Frame
from ideud.stream.workers import DetectAhead, WorkerLost, resolve_processes

log = logging.getLogger("ideud")

QUEUE_FRAMES = 8  # frames between decode and the processor, and between it and encode
# ... between decode and the processor with the detection thread, which works through them while the
# main thread waits (a new track's search): as many as fit this many bytes, at most AHEAD_FRAMES
AHEAD_BYTES = 64 << 20
AHEAD_FRAMES = 48
# detection ahead on a thread (stream/detect_thread.py) for one process on several cores; the
# environment's IDEUD_DETECT_THREAD=0 turns it off (benchmarks compare the two)
DETECT_THREAD = True


def check_paths(src: str, dst: str, force: bool) -> None:
    if src != "-" and "://" not in src and not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    if src != "-" and "://" not in src and os.path.isdir(src):
        raise InputError(f"{src}: is a folder, not a video or image")
    if dst == "-" or "://" in dst:
        return
    if os.path.exists(dst):
        if os.path.exists(src) and os.path.samefile(src, dst):
            raise UsageError(f"{dst}: output is the input file; refusing to overwrite it")
        if not force:
            raise UsageError(f"{dst}: exists; use --force to replace it")
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise OutputError(f"{dst}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{dst}: folder {folder} is not writable")


def _detect_thread_wanted() -> bool:
    return DETECT_THREAD and os.environ.get("IDEUD_DETECT_THREAD", "1") != "0" and (os.cpu_count() or 1) > 1


def _ahead_frames(info: VideoInfo) -> int:
    frame_bytes = 3 * max(info.width * info.height, 1)  # RGB, or 10-bit 4:2:0
    return max(QUEUE_FRAMES, min(AHEAD_FRAMES, AHEAD_BYTES // frame_bytes))


_END = object()  # end of the stream, through both queues


class _Worker(threading.Thread):
    """A pipeline thread that hands its exception back to the caller."""

    def __init__(self, target, name):
        super().__init__(target=self._run, name=name, daemon=True)
        self._target_fn = target
        self.error: Optional[BaseException] = None

    def _run(self):
        try:
            self._target_fn()
        except BaseException as e:  # re-raised in the main thread
            self.error = e


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Encoder:
    """The encode thread: opens the sink at the first frame (its rotation and pixel format are
    known then), writes audio that came before it once it is open."""

    def __init__(self, dst: str, info: VideoInfo, o: Options, proc: FaceProcessor, stop: threading.Event):
        self.dst, self.info, self.o, self.proc, self.stop = dst, info, o, proc, stop
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.sink: Optional[VideoSink] = None
        self._early_audio: list = []

    def loop(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item is _END:
                return
            t = time.perf_counter()
            if isinstance(item, AudioPacket):
                if self.sink is not None:
                    self.sink.write_audio(item)
                else:
                    self._early_audio.append(item)  # audio before the first video frame
                continue
            if self.sink is None:
                self._open(item)
            self.sink.write(item)
            self.proc.timer.add("encode", time.perf_counter() - t)

    def _open(self, first: Frame) -> None:
        self.info.take_picture_of(first)
        o = self.o
        self.sink = VideoSink(self.dst, self.info, codec=o.codec, crf=o.crf, preset=o.preset,
                              keep_metadata=o.keep_metadata, audio=o.audio, fill_heap=o.seed is not None,
                              hdr_auto=True)
        for a in self._early_audio:
            self.sink.write_audio(a)
        self._early_audio.clear()


class InOrder:
    """Frames prepared but not finished (their faces may be with the restore worker) and the
    audio packets behind them, in decode order. `emit(limit)` finishes frames until at most
    `limit` wait, and hands everything finished to `put` in order."""

    def __init__(self, proc: FaceProcessor, put: Callable[[object], None],
                 on_frame: Optional[Callable[[int, int], None]], declared_frames: int):
        self.proc, self.put = proc, put
        self.on_frame, self.declared_frames = on_frame, declared_frames
        self.waiting: deque = deque()
        self.in_flight = 0  # PendingFrames in `waiting`
        self.frames = 0  # frames handed on

    def add(self, item) -> None:
        if isinstance(item, Frame):
            self.waiting.append(self.proc.prepare(item))
            self.in_flight += 1
        else:
            self.waiting.append(item)

    def emit(self, limit: int) -> None:
        while self.waiting and (self.in_flight > limit or not isinstance(self.waiting[0], PendingFrame)):
            item = self.waiting.popleft()
            if isinstance(item, PendingFrame):
                self.proc.finish(item)
                self.in_flight -= 1
                item = item.frame
                self.frames += 1
                if self.on_frame:
                    self.on_frame(self.frames, self.declared_frames)
            self.put(item)


class _DetectFirst:
    """With detection workers: each frame goes to them when decoded and into the processor up to
    `depth` frames later, so its faces are found while the frames before it are processed."""

    def __init__(self, ahead: DetectAhead, order: InOrder, limit: int, detect_size):
        self.ahead, self.order, self.limit, self.detect_size = ahead, order, limit, detect_size
        self.staged: deque = deque()
        self.frames = 0  # frames submitted, not yet handed to the processor

    def add(self, item) -> None:
        if isinstance(item, Frame):
            while self.frames >= self.ahead.depth:
                self._release_one()
            attach_small(item, self.detect_size)
            self.ahead.submit(item)
            self.frames += 1
        self.staged.append(item)

    def drain(self) -> None:
        while self.staged:
            self._release_one()

    def _release_one(self) -> None:
        while self.staged:
            item = self.staged.popleft()
            self.order.add(item)  # a lost worker: this frame is hidden whole (a failed detection)
            if isinstance(item, Frame):
                self.ahead.forget(item)
            if self.ahead.lost:
                raise WorkerLost(self.ahead.lost)  # and the run stops: its output is removed
            self.order.emit(self.limit)
            if isinstance(item, Frame):
                self.frames -= 1
                return


class _Submitted:
    """With the detection thread: each frame went to it from the decode thread as decoded (it detects
    ahead as far as the decoded queue reaches); here it goes into the processor, which asks for its faces."""

    def __init__(self, ahead: DetectThread, order: InOrder, limit: int):
        self.ahead, self.order, self.limit = ahead, order, limit

    def add(self, item) -> None:
        self.order.add(item)
        if isinstance(item, Frame):
            self.ahead.forget(item)  # a detection the processor did not ask for (a frame that failed) goes
        self.order.emit(self.limit)

    def drain(self) -> None:
        """Nothing staged here (the decoded queue holds the frames ahead)."""


def deidentify(src: str, dst: str, options: Optional[Options] = None,
               on_frame: Optional[Callable[[int, int], None]] = None, processor: Optional[FaceProcessor] = None) -> dict:
    """De-identify a video or image file. Returns the report (nothing identity-derived in it)."""
    o = options or Options()
    check_paths(src, dst, o.force)
    if is_image(src):
        return _deidentify_image(src, dst, o, processor)
    t0 = time.perf_counter()
    processes = resolve_processes(o.processes)
    # bad input fails here, before any model loads; --keep-metadata copies subtitle and data streams too
    source = VideoSource(src, audio=o.audio, other=o.keep_metadata)
    ahead, proc = None, None
    try:
        if processes > 1 and not o.track_only and (processor is None or processor.detector_from_options):
            # this process and processes - 1 detection workers (two frames in flight each), which
            # load their detector while this one loads the rest
            ahead = DetectAhead(processes - 1, o.detector, o.det_threshold, depth=2 * processes)
        proc = processor or FaceProcessor(o)
        if ahead is None and _detect_thread_wanted() and processes == 1 and not o.track_only:
            ahead = DetectThread(proc.detector, proc.cadence)
        if ahead is not None:
            dw, dh = proc.detect_size(source.info.width, source.info.height)
            ahead.open(slot_bytes=dw * dh * 3)
    except BaseException:
        source.close()
        if ahead is not None:
            ahead.close()
        if processor is None and proc is not None:
            proc.close()
        raise
    source.detect_size = proc.detect_size
    info = source.info
    stop = threading.Event()
    # the detection thread takes each frame from the decode thread; detection workers from this one (_DetectFirst)
    early = ahead if isinstance(ahead, DetectThread) else None
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES if early is None else _ahead_frames(info))
    encoder = _Encoder(dst, info, o, proc, stop)

    def decode_loop():
        t = time.perf_counter()
        for item in source.items():
            proc.timer.add("decode", time.perf_counter() - t, 1 if isinstance(item, Frame) else 0)
            if early is not None and isinstance(item, Frame):
                attach_small(item, proc.detect_size)
                early.submit(item)
            if not _put(decoded, item, stop):
                return
            t = time.perf_counter()
        _put(decoded, _END, stop)

    dec = _Worker(decode_loop, "ideud-decode")
    enc = _Worker(encoder.loop, "ideud-encode")

    def to_encoder(item) -> None:
        if not _put(encoder.queue, item, stop) or enc.error is not None:
            raise enc.error or RuntimeError("encoder stopped")

    order = InOrder(proc, to_encoder, on_frame, info.frames)
    feed = order
    if ahead is not None:
        feed = (_DetectFirst(ahead, order, proc.frames_held, proc.detect_size) if early is None
                else _Submitted(early, order, proc.frames_held))
        proc.ahead = ahead
    dec.start()
    enc.start()
    try:
        while True:
            try:
                item = decoded.get(timeout=0.1)
            except queue.Empty:
                for w in (dec, enc):
                    if w.error is not None:
                        raise w.error
                continue
            if item is _END:
                break
            if feed is order:
                order.add(item)
                order.emit(proc.frames_held)
            else:
                feed.add(item)
        if feed is not order:
            feed.drain()
        order.emit(0)
        _put(encoder.queue, _END, stop)
        enc.join()
        for w in (dec, enc):
            if w.error is not None:
                raise w.error
        if encoder.sink is None:
            raise InputError(f"{src}: no decodable video frames")
        encoder.sink.close()
    except BaseException:
        stop.set()
        # the encoder thread may be inside a frame's encode: closing the sink under it crashes FFmpeg
        enc.join(timeout=60)
        if encoder.sink is not None and not enc.is_alive():
            encoder.sink.abort()
        raise
    finally:
        stop.set()
        dec.join(timeout=5)
        enc.join(timeout=5)
        source.close()
        if ahead is not None:
            proc.ahead = None
            ahead.close()
        if processor is None:
            proc.close()
    wall = time.perf_counter() - t0
    report = proc.report()
    sink = encoder.sink
    report.update({
        "input": {"width": info.width, "height": info.height, "fps": float(info.rate) if info.rate else None,
                  "codec": info.codec, "frames_declared": info.frames, "audio_streams": len(source.audio_streams)},
        # (counted from the lists: the input's streams are gone with its closed container)
        "output": {"path": os.path.abspath(dst), "frames": sink.frames, "codec": sink.codec_name,
                   "audio_streams": sum(o is not None for o in sink.audio_out[:len(source.audio_streams)]),
                   "dropped_audio_streams": sink.dropped_audio_streams,
                   **({"resized_frames": sink.resized_frames} if sink.resized_frames else {}),
                   **({"timestamp_jumps": sink.video_clock.jumps} if sink.video_clock.jumps else {}),
                   **({"subtitle_and_data_streams": sink.other_streams} if source.other_streams else {})},
        "lost_packets": source.lost_packets, "decode_errors": source.errors,
        "options": options_report(o),
        "wall_s": round(wall, 3), "fps": round(order.frames / wall, 2) if wall > 0 else None,
        "processes": processes if ahead is not None else 1,  # this one and the detection workers
    })
    if ahead is not None:  # seconds the workers (or the thread) spent detecting, beside the main thread's wait
        name = "detect_thread" if isinstance(ahead, DetectThread) else "detect_workers"
        report["timing"][name] = {"total_s": round(ahead.worker_seconds, 4),
                                  "ms_per_frame": round(1000 * ahead.worker_seconds / max(proc.frames, 1), 3),
                                  "calls": ahead.answered}
    return report


def _deidentify_image(src: str, dst: str, o: Options, processor: Optional[FaceProcessor]) -> dict:
    if not is_image(dst):
        raise UsageError(f"{dst}: an image input needs an image output (.jpg, .png, ...)")
    if os.path.splitext(src)[1].lower() in animated.ANIMATED_OUTPUTS and animated.frame_count(src) > 1:
        return _deidentify_animation(src, dst, o, processor)
    pages = animated.frame_count(src, ("TIFF",)) if src.lower().endswith((".tif", ".tiff")) else 1
    if pages > 1 and dst.lower().endswith((".tif", ".tiff")):
        return _deidentify_pages(src, dst, o, processor, pages)
    if pages > 1:  # not silently: the other pages are not in the output
        log.warning("%s: a TIFF of %d pages: only its first page is written (a .tif output keeps them all)", src, pages)
    t0 = time.perf_counter()
    frame = read_image(src)
    proc = processor or FaceProcessor(o)
    try:
        proc.process(frame)
    finally:
        if processor is None:
            proc.close()
    meta = image_metadata.read(src) if o.keep_metadata else None
    lost = write_image(dst, frame, metadata=meta)
    kept = None if meta is None else [k for k in meta.kinds() if not any(x.startswith(k) for x in lost)]
    return _image_report(proc, o, dst, t0, {"width": frame.width, "height": frame.height,
                                            **({"pages": pages} if pages > 1 else {})}, 1, meta, kept, lost)


def _image_report(proc: FaceProcessor, o: Options, dst: str, t0: float, source: dict, frames: int,
                  meta, kept: Optional[list], lost: list) -> dict:
    """The report of a still or animated image run; the metadata by kind only, never what it says."""
    report = proc.report()
    if meta is not None:
        report["metadata"] = {"kept": kept, "left_out": meta.dropped + lost}
    report.update({"input": {**source, "image": True},
                   "output": {"path": os.path.abspath(dst), "frames": frames},
                   "options": options_report(o),
                   "wall_s": round(time.perf_counter() - t0, 3)})
    return report


def _each_frame(frames, o: Options, processor: Optional[FaceProcessor], separate: bool = False) -> tuple:
    """(the processor, every frame processed as a Pillow image) for an animation's frames or a TIFF's
    pages (`separate`: pictures of their own, every track ends between them, as after a scene cut)."""
    out = []
    proc = processor or FaceProcessor(o)
    try:
        for frame in frames:
            if separate and frame.index:
                proc.tracker.reset()
            proc.process(frame)
            out.append(animated.as_image(frame))  # the input frame goes: only what is written is held
    finally:
        if processor is None:
            proc.close()
    return proc, out


def _deidentify_pages(src: str, dst: str, o: Options, processor: Optional[FaceProcessor], pages: int) -> dict:
    """A multi-page TIFF, page by page (stream/animated.py, `_each_frame`)."""
    t0 = time.perf_counter()
    info = {}
    proc, out = _each_frame(animated.pages(src, info), o, processor, separate=True)
    meta = image_metadata.read(src) if o.keep_metadata else None
    lost = animated.write_pages(dst, out, info, meta)
    if lost:
        log.warning("%s: metadata not kept: %s", dst, "; ".join(lost))
    kept = None if meta is None else [k for k in meta.kinds() if not any(x.startswith(k) for x in lost)]
    return _image_report(proc, o, dst, t0, {"pages": pages, "width": out[0].width, "height": out[0].height},
                         len(out), meta, kept, lost)


def _deidentify_animation(src: str, dst: str, o: Options, processor: Optional[FaceProcessor]) -> dict:
    """An animated WebP or PNG, frame by frame with one processor (stream/animated.py)."""
    if os.path.splitext(dst)[1].lower() not in animated.ANIMATED_OUTPUTS:
        raise UsageError(f"{dst}: {src} is animated ({animated.frame_count(src)} frames); write it as .webp or .png")
    t0 = time.perf_counter()
    info = {}
    proc, out = _each_frame(animated.frames(src, info), o, processor)
    meta = image_metadata.read(src) if o.keep_metadata else None
    webp = dst.lower().endswith(".webp")
    animated.write(dst, out, info, exif=meta.exif if meta and webp else None, xmp=meta.xmp if meta and webp else None)
    kept = None if meta is None else [k for k in meta.kinds() if webp and k in ("exif", "xmp")]
    lost = [] if meta is None else [f"{k}: not in an animated output" for k in meta.kinds() if k not in kept]
    return _image_report(proc, o, dst, t0, {"width": info["size"][0], "height": info["size"][1], "animated": True,
                                            "frames": len(out)}, len(out), meta, kept, lost)
