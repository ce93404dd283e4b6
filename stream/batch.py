"""Scale-out on Ray: many files, and long files split into segments, one fake identity per person.

    run_batch(["archive/"], "out/", Options(seed=7))       # or: ideud-video batch archive/ --out out/

Work units (Ray tasks, retried by Ray when a worker dies; every one writes
through a temp file renamed into place, so a retry never duplicates output):

* probe:   demux the video packets (no decoding): frame count, every frame's
           pts, the keyframes; plan the segments.
* whole:   a short file (or an image) is one task: `pipeline.deidentify`, the
           very code a single-process run uses, so the output is the same bytes.
* pass 1:  per segment, detect + track + landmarks only (`Options.track_only`); with the
           privacy guard on, also render, so that the guard picks each track's new face
           over the segment plus a pre-roll of `overlap` seconds that starts at
           an earlier keyframe, inside the previous segment.
* stitch:  (driver) in each pre-roll the tracks of segment k and those of
           segment k-1 saw the same frames: tracks are matched on IoU over the
           frames either one was present (Hungarian), merged into global tracks
           (union-find), and each global track draws one seed from the run's
           generator (`Options.seed`), in order of first appearance.
* pass 2:  per segment the full pipeline from the same keyframe, with pass 1's
           detections replayed instead of detecting again (they go from task
           to task through Ray's object store, not via the driver): the
           segment's tracks are spawned again at the same frames and
           `Tracker.seed_for` hands each the seed of its global track. The
           pre-roll warms tracker, landmark smoothing and the ID fit and is
           not written; the segment's own frames are encoded into an
           intermediate file (every segment starts with a keyframe).
* concat:  the encoded segments are stream-copied, one after another, into the
           output with the input's audio (copied too): nothing is re-encoded
           twice, the output has the input's frame count and pts.

The driver appends one JSON line per finished file to `OUT/ideud-manifest.jsonl`:
done (size and SHA-256 of the first 64 KiB of the output, frames, seeds)
or failed (one-line error). A re-run skips a file whose last record is done
with the same pipeline options and whose output still has that size and
header hash. Nothing derived from a face's identity is written (seeds and
perturbations are random draws, not measurements).

Paths must be the same on the driver and every worker (a shared filesystem).
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import glob
import hashlib
import heapq
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av
import numpy as np

from ideud.stream.decode import IMAGE_EXTENSIONS, VideoSource, is_image
from ideud.stream.encode import temp_path_for
from ideud.stream.errors import InputError, OutputError, UsageError
from ideud.models.geometry import box_iou
from ideud.stream.types import Frame

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".wmv", ".flv", ".3gp", ".ogv", ".mxf"}
MANIFEST = "ideud-manifest.jsonl"
WORK_DIR = ".ideud-batch"  # intermediate segments, inside OUT
HEADER_BYTES = 65536
STITCH_MIN_SCORE = 0.3  # mean IoU over the pre-roll frames where either track is present
PROGRESS_EVERY = 5  # frames between progress messages from a task


class SegmentError(RuntimeError):
    """The file cannot be processed in segments (frames do not map to pts); it is redone whole."""


# ---------------------------------------------------------------------- inputs


@dataclass
class Item:
    src: str  # absolute input path
    rel: str  # path relative to its input root (posix), mirrored under OUT
    dst: str  # absolute output path


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_inputs(inputs: list[str], out_dir: str, ext: Optional[str] = None) -> list[Item]:
    """Files, folders (recursive: video and image files) and globs -> items with mirrored outputs."""
    out_abs = os.path.abspath(out_dir)
    wanted = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
    found: list[tuple[str, str]] = []

    def inside_out(p: str) -> bool:
        return os.path.commonpath([os.path.abspath(p), out_abs]) == out_abs

    for spec in inputs:
        if os.path.isfile(spec):
            found.append((os.path.abspath(spec), os.path.basename(spec)))
        elif os.path.isdir(spec):
            root = os.path.abspath(spec)
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not inside_out(os.path.join(folder, d)))
                for f in sorted(files):
                    p = os.path.join(folder, f)
                    if not f.startswith(".") and os.path.splitext(f)[1].lower() in wanted and not inside_out(p):
                        found.append((p, os.path.relpath(p, root)))
        elif _has_magic(spec):
            parts = spec.split(os.sep)
            base_parts = []
            for part in parts:
                if _has_magic(part):
                    break
                base_parts.append(part)
            base = os.path.abspath(os.sep.join(base_parts) or ".")
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p) and not inside_out(p))
            if not matches:
                raise InputError(f"{spec}: no file matches")
            found.extend((os.path.abspath(p), os.path.relpath(os.path.abspath(p), base)) for p in matches)
        else:
            raise InputError(f"{spec}: no such file or folder")
    items, seen, seen_src = [], {}, set()
    for src, rel in found:
        if src in seen_src:
            continue  # named twice (a folder and a glob): the first spelling decides where it goes
        seen_src.add(src)
        rel = rel.replace(os.sep, "/")
        if ext and not is_image(src):
            rel = os.path.splitext(rel)[0] + (ext if ext.startswith(".") else "." + ext)
        if rel in seen:
            raise UsageError(f"{src} and {seen[rel]} would both be written to {rel}")
        seen[rel] = src
        dst = os.path.join(out_abs, rel)
        if os.path.abspath(dst) == src:
            raise UsageError(f"{src}: output would replace the input; choose another --out")
        items.append(Item(src, rel, dst))
    return items


# ---------------------------------------------------------------------- probe and plan


@dataclass
class Segment:
    index: int
    pre: int  # first frame decoded and analysed (a keyframe; the pre-roll starts here)
    start: int  # first frame written by this segment (a keyframe)
    end: int  # one past the last frame written
    pts: list  # pts of frames pre..end-1, presentation order
    next_pre: Optional[int] = None  # where the next segment's pre-roll starts (tail zone for stitching)

    @property
    def written(self) -> int:
        return self.end - self.start

    @property
    def window(self) -> int:
        return self.end - self.pre


@dataclass
class Plan:
    frames: int
    image: bool = False
    segments: list = field(default_factory=list)  # empty: one whole-file task
    reason: str = ""  # why the file is not split

    @property
    def work_frames(self) -> int:
        """Frames analysed over all passes (what the progress bar counts)."""
        if not self.segments:
            return self.frames
        return sum(2 * s.window for s in self.segments)


def probe(src: str) -> tuple[list[int], list[int], Optional[Fraction]]:
    """Sorted frame pts and keyframe pts of the first video stream, from the packets alone."""
    source = VideoSource(src, audio=False)
    pts, keys = [], []
    ok = True
    try:
        for packet in source.container.demux(source.stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue  # (an edit list's discarded packets are never shown)
            if packet.pts is None:
                ok = False
                continue
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                keys.append(int(packet.pts))
        tb = source.stream.time_base
    except Exception:  # a broken container: the whole-file path copes with what is decodable
        ok = False
        tb = None
    finally:
        source.close()
    if not ok or len(set(pts)) != len(pts):
        return [], [], None
    return sorted(pts), sorted(keys), tb


def plan_segments(pts: list[int], keyframes: list[int], time_base: Fraction, segment_seconds: float,
                  overlap_seconds: float) -> list[Segment]:
    """Cut at keyframes every `segment_seconds` or more; each segment but the first gets a pre-roll.

    A tail shorter than half a segment stays with the segment before it. Returns [] when the file
    is one segment.
    """
    n = len(pts)
    if n < 2 or not keyframes or segment_seconds <= 0:
        return []
    t = np.asarray(pts, float) * float(time_base)
    index = {p: i for i, p in enumerate(pts)}
    kf = sorted(index[p] for p in keyframes if p in index)
    if not kf or kf[0] != 0:
        return []
    end_t = t[-1] + (t[-1] - t[-2])
    bounds = [0]
    for k in kf[1:]:
        if t[k] - t[bounds[-1]] >= segment_seconds - 1e-9 and end_t - t[k] >= segment_seconds / 2 - 1e-9:
            bounds.append(k)
    if len(bounds) < 2:
        return []
    segs = []
    for j, b in enumerate(bounds):
        end = bounds[j + 1] if j + 1 < len(bounds) else n
        if j == 0:
            pre = 0
        else:
            earlier = [k for k in kf if k < b and t[k] <= t[b] - overlap_seconds + 1e-9]
            pre = max(bounds[j - 1], earlier[-1] if earlier else bounds[j - 1])
            if overlap_seconds <= 0:
                pre = b
        segs.append(Segment(index=j, pre=pre, start=b, end=end, pts=list(pts[pre:end])))
    for j in range(len(segs) - 1):
        segs[j].next_pre = segs[j + 1].pre
    return segs


def make_plan(src: str, segment_seconds: float, overlap_seconds: float) -> Plan:
    if is_image(src):
        if not os.path.exists(src):
            raise InputError(f"{src}: no such file")
        return Plan(frames=1, image=True, reason="image")
    pts, keys, tb = probe(src)
    if not pts:
        # frames without pts or a broken container: count by the stream header, process whole
        with VideoSource(src, audio=False) as s:
            return Plan(frames=s.info.frames, reason="no usable packet timestamps")
    segs = plan_segments(pts, keys, tb, segment_seconds, overlap_seconds)
    return Plan(frames=len(pts), segments=segs, reason="" if segs else "short")


# ---------------------------------------------------------------------- stitching


def _zone_score(a: dict, b: dict, lo: int, hi: int) -> float:
    """Sum of IoU over frames both tracks are present, over frames either is present, in [lo, hi)."""
    fa = {f for f in a if lo <= f < hi}
    fb = {f for f in b if lo <= f < hi}
    either = fa | fb
    if not either:
        return 0.0
    return sum(box_iou(a[f], b[f]) for f in fa & fb) / len(either)


def stitch(segments: list[Segment], pass1: list[dict], seed: Optional[int],
           min_score: float = STITCH_MIN_SCORE) -> tuple[list[dict], list[dict]]:
    """Global tracks across segment boundaries and their seeds.

    `pass1[k]["tracks"]` maps a local track id (str or int) to {"first", "first_box", "last", "boxes":
    {frame: box}} with boxes in the pre-roll (head) and the next segment's pre-roll (tail).
    Returns (global tracks, per segment {local id: {"global", "seed", "first", "first_box"}}).
    """
    from scipy.optimize import linear_sum_assignment

    parent: dict = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    tracks = []
    for k, res in enumerate(pass1):
        tk = {int(lid): {**t, "boxes": {int(f): b for f, b in t["boxes"].items()}} for lid, t in res["tracks"].items()}
        tracks.append(tk)
        for lid in tk:
            parent[(k, lid)] = (k, lid)
    links = []
    for k in range(1, len(segments)):
        lo, hi = segments[k].pre, segments[k].start
        prev = [lid for lid, t in tracks[k - 1].items() if any(lo <= f < hi for f in t["boxes"])]
        cur = [lid for lid, t in tracks[k].items() if any(lo <= f < hi for f in t["boxes"])]
        if not prev or not cur:
            continue
        score = np.array([[_zone_score(tracks[k - 1][a]["boxes"], tracks[k][b]["boxes"], lo, hi) for b in cur]
                          for a in prev])
        rows, cols = linear_sum_assignment(-score)
        for r, c in zip(rows, cols):
            if score[r, c] >= min_score:
                ra, rb = find((k - 1, prev[r])), find((k, cur[c]))
                parent[rb] = ra
                links.append({"boundary": k, "from": prev[r], "to": cur[c], "score": round(float(score[r, c]), 3)})
    groups: dict = {}
    for key in parent:
        groups.setdefault(find(key), []).append(key)
    # global ids and seeds in order of first appearance (then segment, local id): reproducible with a seed
    order = sorted(groups.values(), key=lambda m: min((tracks[k][lid]["first"], k, lid) for k, lid in m))
    rng = np.random.default_rng(seed)
    glob_tracks, per_seg = [], [dict() for _ in segments]
    for gid, members in enumerate(order, start=1):
        s = int(rng.integers(0, 2**63 - 1))
        members = sorted(members)
        glob_tracks.append({"id": gid, "seed": s, "segments": sorted({k for k, _ in members}),
                            "members": [[k, lid] for k, lid in members],
                            "first_frame": min(tracks[k][lid]["first"] for k, lid in members),
                            "last_frame": max(tracks[k][lid]["last"] for k, lid in members)})
        # the privacy guard's choice made where the person first appears serves every segment
        choice = next((tracks[k][lid].get("choice") for k, lid in members if tracks[k][lid].get("choice")), None)
        for k, lid in members:
            t = tracks[k][lid]
            per_seg[k][lid] = {"global": gid, "seed": s, "first": t["first"], "first_box": t["first_box"],
                               "choice": choice}
    return glob_tracks, per_seg


class SeedPolicy:
    """`Tracker.seed_for` of a pass-2 segment: a spawned track gets its global track's seed.

    Pass 2 repeats pass 1's tracking, so a track is normally found by its local id, checked against
    the frame and box it started with; otherwise by frame and IoU. A spawn that matches nothing
    (pass 2 diverged) draws from the tracker's own generator and is counted.
    """

    def __init__(self, seeds: dict, guard=None):
        self.seeds = {int(k): v for k, v in seeds.items()}
        self.by_local: dict[int, dict] = {}
        self.unmatched = 0
        self.guard = guard

    def __call__(self, track_id: int, frame_index: int, box) -> Optional[int]:
        rec = self.seeds.get(track_id)
        if rec is None or rec["first"] != frame_index or box_iou(rec["first_box"], box) < 0.5:
            cands = [r for r in self.seeds.values() if r["first"] == frame_index]
            rec = max(cands, key=lambda r: box_iou(r["first_box"], box), default=None)
            if rec is not None and box_iou(rec["first_box"], box) < 0.5:
                rec = None
        if rec is None:
            self.unmatched += 1
            return None
        self.by_local[track_id] = rec
        if self.guard is not None and rec.get("choice"):
            self.guard.preset(track_id, int(rec["seed"]), rec["choice"])  # checked again at its first frame
        return int(rec["seed"])


# ---------------------------------------------------------------------- work (runs on Ray workers)


class _Ticker:
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


def file_stamp(path: str) -> dict:
    """Size and SHA-256 of the first 64 KiB: what a re-run checks before skipping a file."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    return {"size": os.path.getsize(path), "header_sha256": hashlib.sha256(head).hexdigest()}


def _segment_frames(src: str, seg: Segment, detect_size) -> Iterator[Frame]:
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


class _RecordingDetector:
    """Pass 1: the real detector, keeping what each call returned (boxes, scores, keypoints)."""

    def __init__(self, detector):
        self.detector = detector
        self.calls: list = []

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


class _ReplayDetector:
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


def _pass1(src: str, seg: Segment, options, progress, key: str) -> tuple[dict, dict]:
    """Detect and track the segment window: boxes of every track in the two stitching zones, and
    the detections for pass 2 (returned as a second object that goes to pass 2, not the driver)."""
    from ideud.stream.detect import make_detector
    from ideud.models import facemesh as fm
    from ideud.stream.pipeline import FaceProcessor

    # with the privacy guard on, pass 1 renders too: the guard's choice for each track needs the
    # rendered face, and one choice per person is handed to every segment (stitch -> pass 2)
    guarded = getattr(options, "privacy", "off") != "off"
    o = dataclasses.replace(options, track_only=not guarded, frame_log=False, progress=False)
    with fm.native_stderr_silenced():
        recorder = _RecordingDetector(make_detector(o.detector, threshold=o.det_threshold))
    proc = FaceProcessor(o, detector=recorder)
    size = None
    tick = _Ticker(progress, key)
    tracks: dict[int, dict] = {}
    zones = [(seg.pre, seg.start)] + ([(seg.next_pre, seg.end)] if seg.next_pre is not None else [])
    t0 = time.perf_counter()
    try:
        for frame in _segment_frames(src, seg, proc.detect_size):
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


def _segment_ext(codec: str) -> str:
    """Intermediate container: MOV keeps dts and the input's time base; MKV for codecs MOV refuses."""
    try:
        with av.open(io.BytesIO(), "w", format="mov") as c:
            c.add_stream(codec, rate=25)
        return ".mov"
    except Exception:
        return ".mkv"


def _pass2(src: str, seg: Segment, options, seeds: dict, detections: Optional[dict], seg_path: str, progress,
           key: str) -> dict:
    """Render the segment window with the global seeds; write frames start..end-1 to `seg_path`."""
    from ideud.stream.encode import VideoSink
    from ideud.stream.pipeline import FaceProcessor

    # a spawn that matches no global track falls back to a generator of its own per segment
    seg_seed = None if options.seed is None else int(np.random.SeedSequence([options.seed, seg.index]).generate_state(1)[0])
    o = dataclasses.replace(options, seed=seg_seed, track_only=False, frame_log=False, progress=False)
    replay = _ReplayDetector(detections["calls"], detections["size"]) if detections else None
    proc = FaceProcessor(o, detector=replay)
    policy = SeedPolicy(seeds, guard=proc.guard)
    proc.tracker.seed_for = policy
    tick = _Ticker(progress, key)
    sink = None
    t0 = time.perf_counter()
    try:
        with VideoSource(src, audio=False) as s:
            info = s.info
        info.audio = []
        for frame in _segment_frames(src, seg, proc.detect_size):
            proc.process(frame)
            if frame.index >= seg.start:
                if sink is None:
                    info.rotation, info.work_fmt = frame.rotation, frame.pix_fmt
                    sink = VideoSink(seg_path, info, codec=o.codec, crf=o.crf, preset=o.preset, audio=False)
                sink.write(frame)
            tick()
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
        local[t["id"]] = {"track": None if rec is None else rec["global"], "local": t["id"],
                          "seed": None if rec is None else rec["seed"], "in_output": last >= seg.start,
                          "first_frame": seg.pre + t["first_frame"], "last_frame": last, "frames": t["frames"],
                          "fallback_frames": t["fallback_frames"], "sigma": t["sigma"],
                          "perturbation": t["perturbation"]}
    return {"index": seg.index, "pre": seg.pre, "start": seg.start, "end": seg.end, "frames_written": seg.written,
            "tracks": list(local.values()), "unmatched_spawns": policy.unmatched,
            "face_frames": rep["face_frames"], "fallback_face_frames": rep["fallback_face_frames"],
            "failed_frames": rep["failed_frames"], "timing": rep["timing"],
            "wall_s": round(time.perf_counter() - t0, 3)}


def _concat(src: str, seg_paths: list[str], dst: str, options, frames: int) -> dict:
    """Stream-copy the encoded segments, in order, and the input's audio into `dst` (via a temp file)."""
    from ideud.stream.encode import _safe_tags

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = temp_path_for(dst)
    ins = [av.open(p) for p in seg_paths]
    source = VideoSource(src, audio=options.audio)
    written = 0
    try:
        extradata = {bytes(c.streams.video[0].codec_context.extradata or b"") for c in ins}
        if len(extradata) != 1:
            raise SegmentError("the segments' encoders disagree (codec headers differ)")
        info = source.info
        with av.open(tmp, "w") as out:
            if options.keep_metadata:
                out.metadata.update(info.container_metadata)
            vs = out.add_stream_from_template(ins[0].streams.video[0])
            vs.metadata.clear()
            vs.metadata.update(info.stream_metadata if options.keep_metadata else _safe_tags(info.stream_metadata))
            audio_out = {}
            for s in source.audio_streams:
                try:
                    a = out.add_stream_from_template(s)
                except (ValueError, av.error.FFmpegError):
                    continue  # this container cannot hold that codec (as in a single-process run)
                a.metadata.clear()
                a.metadata.update(dict(s.metadata) if options.keep_metadata else _safe_tags(dict(s.metadata)))
                audio_out[s.index] = a

            def video():
                for c in ins:
                    for p in c.demux(c.streams.video[0]):
                        if p.size:
                            yield p

            def audio():
                if audio_out:
                    for p in source.container.demux(*[s for s in source.audio_streams if s.index in audio_out]):
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
                    p.stream = audio_out[p.stream.index]
                    try:
                        out.mux(p)
                    except av.error.FFmpegError:
                        pass  # a packet the muxer refuses is lost, as in VideoSink.write_audio
                heads[j] = next(streams[j], None)
        if written != frames:
            raise SegmentError(f"concatenated {written} frames, the input has {frames}")
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


def _whole(src: str, dst: str, options, progress, key: str) -> dict:
    """One file in one task: exactly the single-process pipeline."""
    from ideud.stream.pipeline import deidentify

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tick = _Ticker(progress, key)
    last = [0]

    def on_frame(done, total):
        tick(done - last[0])
        last[0] = done

    try:
        rep = deidentify(src, dst, dataclasses.replace(options, force=True, progress=False), on_frame=on_frame)
    finally:
        tick.close()
    rep.pop("frame_log", None)
    rep["stamp"] = file_stamp(dst)
    return rep


def _plan_task(src: str, segment_seconds: float, overlap_seconds: float) -> Plan:
    return make_plan(src, segment_seconds, overlap_seconds)


class _Progress:
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


def _remote():
    """Ray remote versions of the work functions (Ray is imported only when a batch runs)."""
    if not _REMOTE:
        import ray

        _REMOTE.update(plan=ray.remote(_plan_task), whole=ray.remote(_whole), pass1=ray.remote(num_returns=2)(_pass1),
                       pass2=ray.remote(_pass2), concat=ray.remote(_concat),
                       progress=ray.remote(num_cpus=0)(_Progress))
    return _REMOTE


# ---------------------------------------------------------------------- manifest


def options_fingerprint(options) -> str:
    """Pipeline settings that change an output (not force/progress/logging)."""
    d = {k: v for k, v in dataclasses.asdict(options).items()
         if k not in ("force", "progress", "frame_log", "inject_faults", "track_only")}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(path: str) -> dict:
    """Last record per input (a torn last line from a crash is ignored)."""
    last = {}
    if not os.path.exists(path):
        return last
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "input" in rec:
                last[rec["input"]] = rec
    return last


def is_done(rec: Optional[dict], dst: str, fingerprint: str) -> bool:
    if not rec or rec.get("status") != "done" or rec.get("options") != fingerprint or not os.path.isfile(dst):
        return False
    try:
        stamp = file_stamp(dst)
    except OSError:
        return False
    return stamp["size"] == rec.get("size") and stamp["header_sha256"] == rec.get("header_sha256")


class _Manifest:
    def __init__(self, path: str):
        self.path = path
        self._lock = open(path + ".lock", "w")
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UsageError(f"{os.path.dirname(path)}: another batch is writing to this folder") from None
        except ImportError:
            pass
        # a torn last line (crash mid-write) must not swallow the next record
        if os.path.exists(path) and os.path.getsize(path):
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                with open(path, "a") as f:
                    f.write("\n")

    def append(self, rec: dict) -> None:
        rec = {**rec, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self):
        self._lock.close()
        try:
            os.remove(self.path + ".lock")
        except OSError:
            pass


# ---------------------------------------------------------------------- driver


@dataclass
class BatchResult:
    done: list = field(default_factory=list)  # rel paths processed in this run
    failed: dict = field(default_factory=dict)  # rel -> one-line error
    skipped: list = field(default_factory=list)  # rel paths already done (manifest + output check)
    reports: dict = field(default_factory=dict)  # rel -> report
    frames: int = 0  # input frames of the files done in this run
    wall_s: float = 0.0
    manifest: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


def one_line(e: BaseException) -> str:
    """The user-facing one-line error of a failed task."""
    cause = getattr(e, "cause", None)
    if cause is not None and cause is not e:
        e = cause
    if isinstance(e, (InputError, OutputError, UsageError)):
        msg = str(e)
    else:
        msg = f"{type(e).__name__}: {e}"
    line = next((s.strip() for s in msg.splitlines() if s.strip()), type(e).__name__)
    return line[:300]


@dataclass
class _FileJob:
    item: Item
    key: str
    plan: Optional[Plan] = None
    pass1: dict = field(default_factory=dict)
    detections: dict = field(default_factory=dict)  # segment -> ObjectRef of pass 1's detections
    pass2: dict = field(default_factory=dict)
    globals: list = field(default_factory=list)
    seg_dir: str = ""
    seg_ext: str = ".mov"
    whole: bool = False  # redone whole after a SegmentError
    t0: float = 0.0
    tasks: list = field(default_factory=list)  # task keys (for attempt counts)


def _cleanup_parts(dst: str) -> None:
    """Temp files a killed attempt left beside the output."""
    folder, name = os.path.split(dst)
    stem, ext = os.path.splitext(name)
    for p in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.*.part{glob.escape(ext)}")):
        if fnmatch.fnmatch(os.path.basename(p), f".{stem}.????????????.part{ext}"):
            try:
                os.remove(p)
            except OSError:
                pass


def run_batch(inputs: list[str], out_dir: str, options=None, *, address: Optional[str] = None,
              workers: Optional[int] = None, gpus_per_worker: float = 0.0, segment_seconds: float = 60.0,
              overlap_seconds: float = 3.0, max_retries: int = 3, ext: Optional[str] = None, progress: bool = False,
              on_poll: Optional[Callable[[dict], None]] = None, poll_s: float = 0.25) -> BatchResult:
    """De-identify every input file on Ray; see the module docstring.

    Uses the Ray instance this process is connected to, else `address` ("auto", "ray://host:port"),
    else starts a local one with `workers` CPUs. At most `workers` tasks run at once (default: what
    the cluster's CPUs, or GPUs with `gpus_per_worker`, allow). `on_poll(snapshot)` is called from
    the driver loop (tests use it to kill a worker mid-task).
    """
    try:
        import ray
    except ImportError:
        raise UsageError("batch needs Ray: pip install 'ideud-video[cluster]'") from None
    from ideud.stream.pipeline import Options

    options = options or Options()
    t_start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    out_abs = os.path.abspath(out_dir)
    items = expand_inputs(inputs, out_abs, ext)
    manifest = _Manifest(os.path.join(out_abs, MANIFEST))
    result = BatchResult(manifest=manifest.path)
    fp = options_fingerprint(options)
    previous = read_manifest(manifest.path)
    todo = []
    for it in items:
        if is_done(previous.get(it.rel), it.dst, fp):
            result.skipped.append(it.rel)
        else:
            todo.append(it)
    started_ray = False
    bar = None
    pending: dict = {}  # ObjectRef -> (file key, stage, segment)
    try:
        if not todo:
            return result
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            started_ray = True
        res = ray.cluster_resources()
        if gpus_per_worker > 0:
            cap = int(res.get("GPU", 0) / gpus_per_worker)
            if cap < 1:
                raise UsageError(f"the cluster has {res.get('GPU', 0):g} GPUs; --gpus-per-worker {gpus_per_worker:g} "
                                 "leaves no room for a worker")
        else:
            cap = int(res.get("CPU", 1))
        slots = max(1, min(workers or cap, cap))
        r = _remote()
        tracker = r["progress"].remote()
        task_opts = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        if gpus_per_worker > 0:
            task_opts["num_gpus"] = gpus_per_worker
        light = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        seg_ext = _segment_ext(options.codec)

        jobs = {}
        ready: list = []  # heap of (priority, seq, fn, args, (job key, stage, segment))
        seq = [0]

        def push(priority, remote_fn, opts, args, tag):
            seq[0] += 1
            heapq.heappush(ready, (priority, seq[0], remote_fn, opts, args, tag))

        for n, it in enumerate(todo):
            key = hashlib.sha1(it.rel.encode()).hexdigest()[:12]
            jobs[key] = _FileJob(it, key, seg_dir=os.path.join(out_abs, WORK_DIR, key), seg_ext=seg_ext)
            push((0, n), r["plan"], light, (it.src, segment_seconds, overlap_seconds), (key, "plan", None))
        total_work = [0]
        files_total = len(todo)
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=0, unit="frame", dynamic_ncols=True, file=sys.stderr, desc="batch")

        def finish(job: _FileJob, rec: dict, report: Optional[dict]):
            rel = job.item.rel
            try:  # how often this file's tasks started (a worker killed mid-task: 2)
                starts.update(ray.get(tracker.snapshot.remote(), timeout=10)["starts"])
                rec["attempts"] = attempts(job)
            except Exception:
                pass
            manifest.append(rec)
            if rec["status"] == "done":
                result.done.append(rel)
                result.frames += rec.get("frames", 0)
                if report is not None:
                    result.reports[rel] = report
            else:
                result.failed[rel] = rec["error"]
            _cleanup_parts(job.item.dst)
            shutil.rmtree(job.seg_dir, ignore_errors=True)
            jobs.pop(job.key, None)
            for ref, (k, *_rest) in list(pending.items()):
                if k == job.key:  # a failed file's other tasks are no longer needed
                    ray.cancel(ref, force=False)
                    del pending[ref]

        def fail(job: _FileJob, error: str):
            finish(job, {"input": job.item.rel, "output": os.path.relpath(job.item.dst, out_abs), "status": "failed",
                         "error": error, "options": fp, "attempts": attempts(job)}, None)

        starts: dict = {}

        def attempts(job: _FileJob) -> int:
            return max([starts.get(t, 1) for t in job.tasks] or [1])

        def submit_whole(job: _FileJob):
            tkey = f"{job.key}:whole"
            job.tasks.append(tkey)
            push((1, -job.plan.frames), r["whole"], task_opts, (job.item.src, job.item.dst, options, tracker, tkey),
                 (job.key, "whole", None))

        def on_plan(job: _FileJob, plan: Plan):
            job.plan = plan
            job.t0 = time.perf_counter()
            total_work[0] += plan.work_frames
            if bar is not None:
                bar.total = total_work[0]
                bar.refresh()
            if not plan.segments:
                return submit_whole(job)
            os.makedirs(job.seg_dir, exist_ok=True)
            for seg in plan.segments:
                tkey = f"{job.key}:p1:{seg.index}"
                job.tasks.append(tkey)
                push((1, -seg.window), r["pass1"], task_opts, (job.item.src, seg, options, tracker, tkey),
                     (job.key, "pass1", seg.index))

        def seg_path(job, k):
            return os.path.join(job.seg_dir, f"seg{k:05d}{job.seg_ext}")

        def on_pass1(job: _FileJob, k: int, res: dict):
            job.pass1[k] = res
            if len(job.pass1) < len(job.plan.segments):
                return
            segs = job.plan.segments
            job.globals, per_seg = stitch(segs, [job.pass1[i] for i in range(len(segs))], options.seed)
            for seg in segs:
                tkey = f"{job.key}:p2:{seg.index}"
                job.tasks.append(tkey)
                push((1, -seg.window), r["pass2"], task_opts,
                     (job.item.src, seg, options, per_seg[seg.index], job.detections[seg.index],
                      seg_path(job, seg.index), tracker, tkey),
                     (job.key, "pass2", seg.index))

        def on_pass2(job: _FileJob, k: int, res: dict):
            job.pass2[k] = res
            job.detections.pop(k, None)
            if len(job.pass2) < len(job.plan.segments):
                return
            n = len(job.plan.segments)
            push((1, 0), r["concat"], light,
                 (job.item.src, [seg_path(job, i) for i in range(n)], job.item.dst, options, job.plan.frames),
                 (job.key, "concat", None))

        def done_record(job: _FileJob, stamp: dict, rep: dict, segments: int) -> dict:
            tracks = rep.get("tracks", [])
            return {"input": job.item.rel, "output": os.path.relpath(job.item.dst, out_abs), "status": "done",
                    "size": stamp["size"], "header_sha256": stamp["header_sha256"], "frames": rep.get("frames", 0),
                    "segments": segments, "tracks": len(tracks),
                    "fallback_face_frames": rep.get("fallback_face_frames", 0),
                    "failed_frames": rep.get("failed_frames", 0), "attempts": attempts(job),
                    "wall_s": round(time.perf_counter() - job.t0, 3), "options": fp,
                    **({"redone_whole": job.plan.reason} if job.whole else {})}

        def on_whole(job: _FileJob, rep: dict):
            for t in rep.get("tracks", []):
                t.setdefault("seed", None)
            rep["segments"] = []
            finish(job, done_record(job, rep.pop("stamp"), rep, 1), rep)

        def on_concat(job: _FileJob, res: dict):
            segs = [{**job.pass2[i], "pass1_wall_s": job.pass1[i].get("wall_s")} for i in range(len(job.plan.segments))]
            rep = {"frames": res["frames"], "tracks": [{k: v for k, v in g.items() if k != "members"} for g in job.globals],
                   "segments": segs, "face_frames": sum(s["face_frames"] for s in segs),
                   "fallback_face_frames": sum(s["fallback_face_frames"] for s in segs),
                   "failed_frames": sum(s["failed_frames"] for s in segs),
                   "unmatched_spawns": sum(s["unmatched_spawns"] for s in segs)}
            finish(job, done_record(job, res, rep, len(segs)), rep)

        def poll(callback):
            try:
                snap = ray.get(tracker.snapshot.remote(), timeout=10)
            except Exception:
                return
            starts.update(snap["starts"])
            snap.update(files_done=len(result.done) + len(result.failed), files_total=files_total)
            if bar is not None:
                bar.n = min(snap["frames"], bar.total or snap["frames"])
                bar.set_postfix_str(f"files {snap['files_done']}/{files_total}", refresh=True)
            if callback is not None:
                callback(snap)

        handlers = {"plan": lambda j, k, v: on_plan(j, v), "whole": lambda j, k, v: on_whole(j, v),
                    "pass1": on_pass1, "pass2": on_pass2, "concat": lambda j, k, v: on_concat(j, v)}
        last_poll = 0.0
        while ready or pending:
            while ready and len(pending) < slots:
                _, _, fn, opts, args, tag = heapq.heappop(ready)
                if tag[0] not in jobs or (jobs[tag[0]].whole and tag[1] != "whole"):
                    continue  # its file failed, or is being redone whole
                ref = fn.options(**opts).remote(*args)
                if isinstance(ref, list):  # pass 1: (summary for the driver, detections for pass 2)
                    jobs[tag[0]].detections[tag[2]] = ref[1]
                    ref = ref[0]
                pending[ref] = tag
            if not pending:
                continue
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in finished:
                tag = pending.pop(ref, None)
                if tag is None:
                    continue
                key, stage, k = tag
                job = jobs.get(key)
                if job is None:
                    continue
                try:
                    value = ray.get(ref)
                except Exception as e:  # the task failed for good (its retries are spent)
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, SegmentError) and not job.whole and stage != "plan":
                        # frames do not map cleanly onto segments: redo this file in one piece
                        job.whole = True
                        for ref2, (k2, *_r) in list(pending.items()):
                            if k2 == key:
                                ray.cancel(ref2, force=False)
                                del pending[ref2]
                        shutil.rmtree(job.seg_dir, ignore_errors=True)
                        total_work[0] += job.plan.frames
                        job.plan = Plan(frames=job.plan.frames, reason=f"segments: {one_line(cause)}")
                        submit_whole(job)
                        continue
                    fail(job, one_line(e))
                    continue
                try:
                    handlers[stage](job, k, value)
                except Exception as e:  # stitching, or a file system error on the driver
                    fail(job, one_line(e))
            now = time.perf_counter()
            if now - last_poll >= poll_s:
                last_poll = now
                poll(on_poll)
        poll(None)
        return result
    except KeyboardInterrupt:
        for ref in list(pending):
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    finally:
        if bar is not None:
            bar.close()
        manifest.close()
        result.wall_s = round(time.perf_counter() - t_start, 3)
        if started_ray:
            ray.shutdown()
        try:
            os.rmdir(os.path.join(out_abs, WORK_DIR))
        except OSError:
            pass
