"""The work units that run on Ray workers: plan, whole file, pass 1, pass 2, concat; and the progress actor.

Ray is imported only in `remote_functions()`, when a batch runs.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import logging
import os
import time
from typing import Iterator, Optional

import av
import numpy as np

from ideud.stream.batch.manifest import file_stamp
from ideud.stream.batch.plan import Plan, Segment, SegmentError, make_plan
from ideud.stream.batch.stitch import SeedPolicy
from ideud.stream.audio_transcode import output_stream
from ideud.stream.decode import VideoSource
from ideud.stream.encode import codec_for, temp_path_for
from ideud.stream.relink import picks_of
from ideud.stream.types import Frame

log = logging.getLogger("ideud")

PROGRESS_EVERY = 5  # frames between progress messages from a task


class Ticker:
    """Frame counts to the progress actor, a few at a time (fire and forget)."""

    def __init__(self, progress, key: str):
        self.progress, self.key, self.n = progress, key, 0
        if progress is not None:
            progress.start.remote(key, os.getpid())

    def __call__(self, k: int = 1):
        self.n += k
        if self.progress is not None and self.n >= PROGRESS_EVERY:
            self.progress.add.remote(self.key, self.n)
            self.n = 0

    def close(self):
        if self.progress is not None:
            if self.n:
                self.progress.add.remote(self.key, self.n)
            self.progress.end.remote(self.key)



def segment_frames(src: str, seg: Segment, detect_size) -> Iterator[Frame]:
    """Frames pre..end-1 of the segment, decoded from its keyframe, with their file-wide indices."""
    source = VideoSource(src, audio=False, detect_size=detect_size)
    index = {p: seg.pre + i for i, p in enumerate(seg.pts)}
    try:
        if seg.pre > 0:
            source.container.seek(seg.pts[0], stream=source.stream, backward=True, any_frame=False)
        expected = seg.pre
        for item in source.items():
            if not isinstance(item, Frame):
                continue
            i = index.get(item.pts)
            if i is None:
                if item.pts is not None and item.pts < seg.pts[0]:
                    continue  # decoded on the way to the keyframe
                if item.pts is not None and item.pts > seg.pts[-1]:
                    break
                raise SegmentError(f"frame with pts {item.pts} is not in the packet index")
            if i != expected:
                raise SegmentError(f"segment {seg.index}: frame {expected} missing (got {i})")
            item.index = i
            yield item
            expected += 1
            if expected >= seg.end:
                break
        if expected != seg.end:
            raise SegmentError(f"segment {seg.index}: decoded {expected - seg.pre} of {seg.window} frames")
    finally:
        source.close()


class RecordingDetector:
    """Pass 1: the real detector, keeping what each call returned (boxes, scores, keypoints)."""

    def __init__(self, detector):
        self.detector = detector
        self.calls: list = []
        # the processor judges on the frame what the verifier could not (stream/verify_frame.py);
        # the record becomes what it kept (`judged`), so pass 2 replays what pass 1 kept and softened
        self.verifier = detector if hasattr(detector, "is_false") else None

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.detector.input_size(width, height)

    def detect(self, image, scale=1.0):
        try:
            faces = self.detector.detect(image, scale)
        except Exception as e:
            self.calls.append(type(e).__name__)
            raise
        self.calls.append(copy.deepcopy(faces))
        return faces

    def judged(self, kept: list) -> None:
        """What the frame's pixels left of the last call's faces (some now soft: stream/soften.py)."""
        self.calls[-1] = copy.deepcopy(kept)


class ReplayDetector:
    """Pass 2: gives back pass 1's detections call by call (same frames, same order), so the
    segment is not detected twice and its tracks are spawned exactly where pass 1 saw them."""

    def __init__(self, calls: list, size: tuple[int, int]):
        self.calls, self.size, self.n = calls, tuple(size), 0

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.size

    def detect(self, image, scale=1.0):
        if self.n >= len(self.calls):
            raise SegmentError("pass 2 asked for more detections than pass 1 made")
        rec = self.calls[self.n]
        self.n += 1
        if isinstance(rec, str):
            raise RuntimeError(f"detector failed in pass 1 ({rec})")  # the frame fails closed again
        return copy.deepcopy(rec)


def _in_task(options) -> int:
    """Restore processes inside a batch task: none unless asked for (a task holds one of the
    cluster's CPUs; the cluster runs one task per CPU)."""
    n = getattr(options, "restore_processes", None)
    return 0 if n is None else int(n)


def pass1(src: str, seg: Segment, options, progress, key: str) -> tuple[dict, dict]:
    """Detect and track the segment window: boxes of every track in the two stitching zones, and
    the detections for pass 2 (returned as a second object that goes to pass 2, not the driver)."""
    from ideud.stream.detect import make_detector
    from ideud.models import facemesh as fm
    from ideud.stream.pipeline import FaceProcessor

    # with the privacy guard on, pass 1 renders too: the guard's choice for each track needs the
    # rendered face, and one choice per person is handed to every segment (stitch -> pass 2)
    guarded = getattr(options, "privacy", "off") != "off"
    # so does the ID stage (and the prior restorer), which pick the new face among seeded candidates by
    # how far they are from the person: the pick made where the person first appears serves every segment
    picking = getattr(options, "scale", 0.25) > 0
    # segments are processed apart: a person's return is not linked across them (stream/relink.py)
    o = dataclasses.replace(options, track_only=not (guarded or picking), frame_log=False, progress=False,
                            restore_processes=_in_task(options), relink=False)
    with fm.native_stderr_silenced():
        recorder = RecordingDetector(make_detector(o.detector, threshold=o.det_threshold))
    proc = FaceProcessor(o, detector=recorder)
    size = None
    tick = Ticker(progress, key)
    tracks: dict[int, dict] = {}
    zones = [(seg.pre, seg.start)] + ([(seg.next_pre, seg.end)] if seg.next_pre is not None else [])
    t0 = time.perf_counter()
    try:
        for frame in segment_frames(src, seg, proc.detect_size):
            if size is None:
                size = proc.detect_size(frame.width, frame.height)
            proc.process(frame)
            in_zone = any(lo <= frame.index < hi for lo, hi in zones)
            for tr in proc.tracker.tracks.values():
                if tr.last_frame != frame.index:
                    continue
                t = tracks.get(tr.id)
                if t is None:
                    t = tracks[tr.id] = {"first": frame.index, "first_box": [float(v) for v in tr.box],
                                         "last": frame.index, "boxes": {}}
                t["last"] = frame.index
                if not o.track_only:  # the picks only grow over a track's life (guard steps add some)
                    t["picks"] = _picks(proc, tr.id) or t.get("picks")
                if in_zone:
                    t["boxes"][frame.index] = [round(float(v), 2) for v in tr.box]
            tick()
    finally:
        tick.close()
        proc.close()
    if guarded:
        for t in proc.report()["tracks"]:
            if t["id"] in tracks:
                tracks[t["id"]]["choice"] = (t.get("privacy") or {}).get("choice")
    summary = {"segment": seg.index, "tracks": tracks, "frames": seg.window, "wall_s": round(time.perf_counter() - t0, 3)}
    return summary, {"calls": recorder.calls, "size": size}


def _picks(proc, track_id: int) -> Optional[dict]:
    """The track's picks among its seeded candidates so far (indices of random draws), or None."""
    picks = picks_of(proc.identity, proc.restorer, track_id)
    return picks if picks["shape"] else None


def segment_ext(codec: str) -> str:
    """Intermediate container: MOV keeps dts and the input's time base; MKV for codecs MOV refuses
    (or takes and then fails to finish: VP9, AV1)."""
    codec = codec_for(codec, ".mov")
    if codec in ("libvpx-vp9", "libvpx", "libsvtav1"):
        return ".mkv"
    try:
        with av.open(io.BytesIO(), "w", format="mov") as c:
            c.add_stream(codec, rate=25)
        return ".mov"
    except Exception:
        return ".mkv"


def pass2(src: str, seg: Segment, options, seeds: dict, detections: Optional[dict], seg_path: str, progress,
           key: str) -> dict:
    """Render the segment window with the global seeds; write frames start..end-1 to `seg_path`."""
    from ideud.stream.encode import VideoSink
    from ideud.stream.pipeline import FaceProcessor
    from ideud.stream.runner import InOrder

    # a spawn that matches no global track falls back to a generator of its own per segment
    seg_seed = None if options.seed is None else int(np.random.SeedSequence([options.seed, seg.index]).generate_state(1)[0])
    o = dataclasses.replace(options, seed=seg_seed, track_only=False, frame_log=False, progress=False,
                            restore_processes=_in_task(options), relink=False)
    replay = ReplayDetector(detections["calls"], detections["size"]) if detections else None
    proc = FaceProcessor(o, detector=replay)
    policy = SeedPolicy(seeds, guard=proc.guard, identity=proc.identity, restorer=proc.restorer)
    proc.tracker.seed_for = policy
    tick = Ticker(progress, key)
    sink = None
    t0 = time.perf_counter()
    try:
        with VideoSource(src, audio=False) as s:
            info = s.info
        info.audio = []

        def write(frame: Frame) -> None:
            nonlocal sink
            if frame.index >= seg.start:
                if sink is None:
                    info.take_picture_of(frame)
                    sink = VideoSink(seg_path, info, codec=o.codec, crf=o.crf, preset=o.preset, audio=False,
                                     fill_heap=o.seed is not None, hdr_auto=True)
                sink.write(frame)

        # frames held and finished in order as a whole run holds them (the look-back: stream/look_back.py)
        order = InOrder(proc, write, None, seg.window)
        for frame in segment_frames(src, seg, proc.detect_size):
            order.add(frame)
            order.emit(proc.frames_held)
            tick()
        order.emit(0)
        if replay is not None and replay.n != len(replay.calls):
            raise SegmentError(f"segment {seg.index}: pass 2 used {replay.n} of pass 1's {len(replay.calls)} detections")
        if sink is None or sink.frames != seg.written:
            raise SegmentError(f"segment {seg.index}: wrote {0 if sink is None else sink.frames} of {seg.written} frames")
        sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        tick.close()
        proc.close()
    rep = proc.report()
    local = {}
    for t in rep["tracks"]:
        rec = policy.by_local.get(t["id"])
        last = seg.pre + t.get("last_frame", t["first_frame"])
        # no seed and no noise: they go to the user's report, and with them Step I could be undone
        local[t["id"]] = {"track": None if rec is None else rec["global"], "local": t["id"],
                          "in_output": last >= seg.start,
                          "first_frame": seg.pre + t["first_frame"], "last_frame": last, "frames": t["frames"],
                          "fallback_frames": t["fallback_frames"], "sigma": t["sigma"]}
    return {"index": seg.index, "pre": seg.pre, "start": seg.start, "end": seg.end, "frames_written": seg.written,
            "tracks": list(local.values()), "unmatched_spawns": policy.unmatched,
            "face_frames": rep["face_frames"], "fallback_face_frames": rep["fallback_face_frames"],
            "failed_frames": rep["failed_frames"], "timing": rep["timing"],
            "wall_s": round(time.perf_counter() - t0, 3)}


def concat(src: str, seg_paths: list[str], dst: str, options, frames: int) -> dict:
    """Stream-copy the encoded segments, in order, and the input's audio (with --keep-metadata its
    subtitle and data streams too, as a single-process run copies them) into `dst` (via a temp file)."""
    from ideud.stream.encode import safe_tags, set_chapters

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = temp_path_for(dst)
    ins = [av.open(p) for p in seg_paths]
    source = VideoSource(src, audio=options.audio, other=options.keep_metadata)
    copied = source.audio_streams + source.other_streams
    written = 0
    try:
        extradata = {bytes(c.streams.video[0].codec_context.extradata or b"") for c in ins}
        if len(extradata) != 1:
            raise SegmentError("the segments' encoders disagree (codec headers differ)")
        info = source.info
        with av.open(tmp, "w") as out:
            if options.keep_metadata:
                out.metadata.update(info.container_metadata)
                set_chapters(out, info.chapters)
            vs = out.add_stream_from_template(ins[0].streams.video[0])
            vs.metadata.clear()
            vs.metadata.update(info.stream_metadata if options.keep_metadata else safe_tags(info.stream_metadata))
            audio_out, dropped, transcoders = {}, 0, {}
            for s in copied:
                a, tr = output_stream(out, s)  # AAC into .webm: Opus, as a single run writes it
                if a is None:
                    dropped += s.type != "audio"  # this container cannot hold that codec (as in a single-process run)
                    continue
                if tr is not None:
                    transcoders[s.index] = tr
                a.metadata.clear()
                a.metadata.update(dict(s.metadata) if options.keep_metadata else safe_tags(dict(s.metadata)))
                audio_out[s.index] = a

            def video():
                for c in ins:
                    for p in c.demux(c.streams.video[0]):
                        if p.size:
                            yield p

            def audio():
                if audio_out:
                    for p in source.container.demux(*[s for s in copied if s.index in audio_out]):
                        if p.dts is not None and p.size:
                            yield p

            def when(p):
                t = p.dts if p.dts is not None else p.pts
                return float(t * p.time_base) if t is not None else -1e18

            # interleave by time; within one stream the order is the files' own
            streams = [video(), audio()]
            heads = [next(g, None) for g in streams]
            while any(h is not None for h in heads):
                j = min((j for j, h in enumerate(heads) if h is not None), key=lambda j: when(heads[j]))
                p = heads[j]
                if j == 0:
                    p.stream = vs
                    out.mux(p)
                    written += 1
                else:
                    tr = transcoders.get(p.stream.index)
                    for q in (tr.encode(p) if tr is not None else [p]):
                        q.stream = audio_out[p.stream.index]
                        try:
                            out.mux(q)
                        except av.error.FFmpegError:
                            pass  # a packet the muxer refuses is lost, as in VideoSink.write_audio
                heads[j] = next(streams[j], None)
            for index, tr in transcoders.items():
                for q in tr.flush():
                    q.stream = audio_out[index]
                    out.mux(q)
        if written != frames:
            raise SegmentError(f"concatenated {written} frames, the input has {frames}")
        if dropped:
            log.warning("%s: %d subtitle or data stream(s) of the input cannot go into this container; not kept",
                        dst, dropped)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    finally:
        for c in ins:
            c.close()
        source.close()
    return {"frames": written, **file_stamp(dst)}


def whole(src: str, dst: str, options, progress, key: str) -> dict:
    """One file in one task: exactly the single-process pipeline."""
    from ideud.stream.pipeline import deidentify

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tick = Ticker(progress, key)
    last = [0]

    def on_frame(done, total):
        tick(done - last[0])
        last[0] = done

    try:
        rep = deidentify(src, dst, dataclasses.replace(options, force=True, progress=False,
                                                       restore_processes=_in_task(options)), on_frame=on_frame)
    finally:
        tick.close()
    rep.pop("frame_log", None)
    rep["stamp"] = file_stamp(dst)
    return rep


def plan_task(src: str, segment_seconds: float, overlap_seconds: float) -> Plan:
    return make_plan(src, segment_seconds, overlap_seconds)


class Progress:
    """Ray actor: frames done per task, the worker running it, and how often each task started."""

    def __init__(self):
        self.frames: dict = {}
        self.pids: dict = {}
        self.starts: dict = {}

    def start(self, key, pid):
        self.frames[key] = 0  # a retried task counts again from zero
        self.pids[key] = pid
        self.starts[key] = self.starts.get(key, 0) + 1

    def add(self, key, n):
        self.frames[key] = self.frames.get(key, 0) + n

    def end(self, key):
        self.pids.pop(key, None)

    def snapshot(self):
        return {"frames": sum(self.frames.values()), "task_frames": dict(self.frames), "running": dict(self.pids),
                "starts": dict(self.starts)}


_REMOTE: dict = {}


def remote_functions():
    """Ray remote versions of the work functions (Ray is imported only when a batch runs)."""
    if not _REMOTE:
        import ray

        _REMOTE.update(plan=ray.remote(plan_task), whole=ray.remote(whole), pass1=ray.remote(num_returns=2)(pass1),
                       pass2=ray.remote(pass2), concat=ray.remote(concat),
                       progress=ray.remote(num_cpus=0)(Progress))
    return _REMOTE

