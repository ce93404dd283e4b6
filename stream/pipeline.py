"""The stream processor: decode -> detect -> track -> identity -> render -> restore -> blend -> encode.

`FaceProcessor.process(frame)` de-identifies one frame in place (every face,
fail closed); `deidentify(src, dst, options)` runs a whole file or image with
decode and encode on their own threads and bounded queues between them.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream.errors import InputError, OutputError, UsageError
from ideud.stream.decode import AudioPacket, VideoSource, attach_small, image_exif, is_image, read_image
from ideud.stream.encode import VideoSink, write_image
from ideud.stream.identity import IdentityStage
from ideud.stream.render import crop_for, render
from ideud.stream.restore import auto_restorer, make_restorer
from ideud.stream.types import RestoreItem
from ideud.stream.restore_worker import RestoreWorker
from ideud.models.geometry import iou_matrix
from ideud.stream.track import Tracker
from ideud.stream.types import Face, Frame, Track


log = logging.getLogger("ideud")


class FaceFault(RuntimeError):
    """Raised by the fault-injection hook (tests of the fail-closed paths)."""


@dataclass
class Options:
    scale: float = 0.25  # sigma of the ID-code perturbation
    seed: Optional[int] = None  # fixes every track's seed (reproducible runs)
    min_face: int = 12  # faces smaller than this (px) are obfuscated, not re-rendered
    det_threshold: Optional[float] = None  # None: the detector's own (CenterFace 0.3, chosen for recall)
    detector: str = "auto"
    restorer: str = "auto"  # auto: the GAN tier with weights and a GPU, else the embedded tier
    gan_engine: str = "auto"  # how the GAN runs (stream/restore_gan.py GAN_ENGINES)
    privacy: str = "balanced"  # privacy guard (stream/guard.py): off | balanced | strict
    # guard candidates tried per frame during a search; None: the whole search in one frame (files).
    # Live streams spread it (the face stays obfuscated meanwhile) to keep latency bounded.
    guard_per_frame: Optional[int] = None
    fallback: str = "pixelate"  # obfuscation for faces that cannot be de-identified
    codec: str = "libx264"
    crf: Optional[int] = 18
    preset: Optional[str] = "veryfast"
    audio: bool = True
    keep_metadata: bool = False
    force: bool = False
    max_misses: int = 12  # frames a track survives without detection (predicted box processed)
    smooth: bool = True
    frame_log: bool = False  # per-frame face list in the report (boxes and status only)
    progress: bool = False
    # pass 1 of a segmented batch run: detect, track and fit landmarks only. No pixel is
    # changed, so frames processed this way must never be written (stream/batch.py)
    track_only: bool = False
    # frames whose faces may wait for the restorer while Step I runs on the next ones (the
    # restorer on its own thread, faces of waiting frames in one batch). None: 2 with a GPU
    # restorer, else 0 (everything on one thread: the CPU restorers share the cores anyway)
    restore_ahead: Optional[int] = None
    # test hook: stage name -> frame indices on which that stage raises
    inject_faults: dict = field(default_factory=dict)


class StageTimer:
    def __init__(self):
        self.total = defaultdict(float)
        self.count = defaultdict(int)

    def add(self, stage: str, seconds: float, n: int = 1):
        self.total[stage] += seconds
        self.count[stage] += n

    def timed(self, stage: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.add(stage, time.perf_counter() - self.t)
        return _Ctx()

    def summary(self, frames: int) -> dict:
        return {k: {"total_s": round(v, 4), "ms_per_frame": round(1000 * v / max(frames, 1), 3),
                    "calls": self.count[k]} for k, v in self.total.items()}


@dataclass
class _FaceState:
    """Per-track memory of the face stage (not identity: that lives in IdentityStage)."""

    landmarks: Optional[np.ndarray] = None
    last_frame: int = -1
    box_rel: Optional[np.ndarray] = None  # detector box relative to the landmark box


@dataclass
class PendingFrame:
    """A frame between Step I (`prepare`) and Step II + paste-back (`finish`)."""

    frame: Frame
    number: int  # the processor's count of this frame (report), not the decoder's index
    pairs: list = field(default_factory=list)  # (track, face or None)
    jobs: list = field(default_factory=list)
    items: list = field(default_factory=list)  # RestoreItems of the rendered faces
    rendered: list = field(default_factory=list)  # (job, render output), one per item
    future: Optional[Future] = None  # the restore worker's answer
    finished_tracks: list = field(default_factory=list)  # dropped once this frame is done
    error: Optional[BaseException] = None  # a whole-frame stage failed in prepare
    done: bool = False  # nothing left to do (detection failed: the frame is hidden)


def _landmark_box(lm: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, float(max(hi - lo))


def _box_from_landmarks(lm: np.ndarray, rel: np.ndarray) -> np.ndarray:
    centre, size = _landmark_box(lm)
    return np.r_[centre, centre] + rel * size


def _relation(lm: np.ndarray, box: np.ndarray) -> np.ndarray:
    centre, size = _landmark_box(lm)
    return (np.asarray(box, float) - np.r_[centre, centre]) / max(size, 1e-6)


class FaceProcessor:
    """De-identifies frames in place. Holds the models and every track's state."""

    def __init__(self, options: Options, detector=None, restorer=None):
        self.o = options
        if options.fallback not in bl.FALLBACKS:
            raise ValueError(f"unknown fallback {options.fallback!r}; choose one of {', '.join(bl.FALLBACKS)}")
        from ideud.stream.detect import make_detector

        self.detector = detector or make_detector(options.detector, threshold=options.det_threshold)
        self.mesh = fm.FaceMesh()
        self.identity = IdentityStage(sigma=options.scale, smooth=options.smooth)
        if restorer is None:
            if options.restorer == "auto":
                restorer = auto_restorer(log.info, options.gan_engine)
            elif options.restorer == "gan":
                from ideud.stream.restore_gan import gan_engine_options

                restorer = make_restorer("gan", **gan_engine_options(options.gan_engine))
            else:
                restorer = make_restorer(options.restorer)
        self.restorer = restorer
        from ideud.stream.guard import PrivacyGuard

        self.guard = PrivacyGuard.create(options.privacy, identity=self.identity, restorer=self.restorer,
                                         mesh=self.mesh, sigma=options.scale, per_frame=options.guard_per_frame)
        if getattr(restorer, "on_gpu", False) and hasattr(restorer, "warmup"):
            restorer.warmup()  # seconds now rather than a stall at the first faces of a stream
        self.restore_ahead = (options.restore_ahead if options.restore_ahead is not None
                              else (2 if getattr(restorer, "on_gpu", False) else 0))
        self.worker: Optional[RestoreWorker] = None
        if self.restore_ahead > 0 and not options.track_only:
            engine = getattr(restorer, "engine", None)
            self.worker = RestoreWorker(restorer, max_faces=getattr(engine, "max_batch", 16))
            if self.guard is not None:
                self.guard.restorer = self.worker  # one thread calls the model
        rng = np.random.default_rng(options.seed)  # seed None: fresh OS entropy every run
        self.tracker = Tracker(max_misses=options.max_misses, seed_rng=rng)
        self.timer = StageTimer()
        self._faces: dict[int, _FaceState] = {}
        self.track_stats: dict[int, dict] = {}
        self.frames = 0
        self.face_frames = 0
        self.fallback_face_frames = 0
        self.frame_failures = 0
        self.frame_log: list = []

    def detect_size(self, width: int, height: int) -> tuple[int, int]:
        return self.detector.input_size(width, height)

    # ------------------------------------------------------------------ faults
    def _fault(self, stage: str, frame: Frame):
        if frame.index in self.o.inject_faults.get(stage, ()):
            raise FaceFault(f"injected fault in {stage} at frame {frame.index}")

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> None:
        """De-identify every face of `frame` in place; never leaves a detected face raw."""
        self.finish(self.prepare(frame))

    def prepare(self, frame: Frame) -> PendingFrame:
        """Detect, track, Step I and render; the faces go to the restorer (the worker, if any).

        Frames must be finished in the order they were prepared.
        """
        self.frames += 1
        p = PendingFrame(frame, self.frames - 1)
        if frame.small is None:
            attach_small(frame, self.detect_size) if frame.is_rgb else None
        try:
            with self.timer.timed("detect"):
                self._fault("detect", frame)
                faces = self._detect_upright(frame) if frame.small is not None else []
        except Exception as e:
            # without detections we cannot know where faces are: hide the whole frame
            self._fail_frame(frame, None, f"detect: {type(e).__name__}")
            p.done = True
            return p
        with self.timer.timed("track"):
            p.pairs = self.tracker.update(faces, frame.index)
            # forgotten when this frame is finished: frames still waiting may hold their faces
            p.finished_tracks = list(self.tracker.finished)
            self.tracker.finished.clear()
        try:
            self._fault("frame", frame)
            p.jobs = [self._analyse(frame, track, face) for track, face in p.pairs]
            if not self.o.track_only:
                p.items, p.rendered = self._render_jobs(frame, p.jobs)
                if self.worker is not None and p.items:
                    p.future = self.worker.submit(p.items)
        except Exception as e:
            p.error = e
        return p

    def finish(self, p: PendingFrame) -> None:
        """Restore (or collect the worker's result), privacy review, paste back, account."""
        frame = p.frame
        if not p.done:
            try:
                if p.error is not None:
                    raise p.error
                if not self.o.track_only:
                    self._restore_review_blend(frame, p)
            except Exception as e:
                # a whole-frame stage failed: hide every face we know of in this frame
                p.jobs = [{"track": tr, "box": np.asarray(face.box if face is not None else tr.box, float),
                           "reason": "frame"} for tr, face in p.pairs]
                self._fail_frame(frame, [j["box"] for j in p.jobs], f"frame: {type(e).__name__}", log=False)
            for job in p.jobs:
                self._account(job, p.number)
            if self.o.frame_log:
                self.frame_log.append({"frame": frame.index, "faces": [
                    {"track": j["track"].id, "box": [round(float(v), 1) for v in j["box"]],
                     "status": "deidentified" if j["reason"] is None else f"fallback:{j['reason']}"}
                    for j in p.jobs]})
        self._drop_tracks(p.finished_tracks)

    def _detect_upright(self, frame: Frame) -> list[Face]:
        """Detect on the frame as it is displayed (phone videos are stored turned), boxes in stored pixels."""
        k = (frame.rotation % 360) // 90 if frame.rotation % 90 == 0 else 0
        if k == 0:
            return self.detector.detect(frame.small, frame.small_scale)
        h, w = frame.small.shape[:2]
        faces = self.detector.detect(np.ascontiguousarray(np.rot90(frame.small, k)), 1.0)
        sx, sy = frame.small_scale

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

    def _fail_frame(self, frame: Frame, boxes, reason: str, log: bool = True):
        self.frame_failures += 1
        if boxes is not None:
            for box in boxes:
                bl.obfuscate(frame, np.asarray(box, float), self.o.fallback)
        else:  # not even detection ran: no place in the frame is known to be face-free
            bl.obfuscate(frame, np.array([0, 0, frame.width, frame.height], float), self.o.fallback, grow=0)
        if self.o.frame_log and log:
            self.frame_log.append({"frame": frame.index, "failed": reason, "faces": [
                {"box": [round(float(v), 1) for v in b], "status": "fallback:frame"} for b in boxes or []]})

    def _drop_tracks(self, tracks) -> None:
        for tr in tracks:
            self.identity.drop(tr.id)  # the real ID code is forgotten with the track
            if self.guard is not None:
                self.guard.drop(tr.id)  # and the guard's embeddings of the person
            self._faces.pop(tr.id, None)

    def _analyse(self, frame: Frame, track: Track, face: Optional[Face]) -> dict:
        """Landmarks and perturbed geometry of one face; a `reason` when it must be obfuscated."""
        st = self._faces.setdefault(track.id, _FaceState())
        box = np.asarray(face.box if face is not None else track.box, float)
        job = {"track": track, "box": box, "reason": None, "face": face}
        if max(box[2] - box[0], box[3] - box[1]) < self.o.min_face:
            job["reason"] = "small"
            return job
        try:
            with self.timer.timed("mesh"):
                lm = self._landmarks(frame, track, face, st)
            if lm is None:
                job["reason"] = "no_mesh" if face is not None else "lost"
                st.landmarks = None
                return job
            st.landmarks, st.last_frame = lm, frame.index
            if face is not None:
                rel = _relation(lm, face.box)
                st.box_rel = rel if st.box_rel is None else 0.8 * st.box_rel + 0.2 * rel
            elif st.box_rel is not None:
                # the mesh found the face the detector missed: keep the track on it
                self.tracker.measured(track.id, _box_from_landmarks(lm, st.box_rel))
            job["box"] = np.r_[lm[:, :2].min(0), lm[:, :2].max(0)]
            if self.o.track_only:
                return job
            with self.timer.timed("identity"):
                self._fault("identity", frame)
                job["render"] = self.identity.process(track.id, track.seed, lm, frame.time)
        except Exception as e:
            job["reason"] = f"error:{type(e).__name__}"
        return job

    def _landmarks(self, frame: Frame, track: Track, face: Optional[Face], st: _FaceState) -> Optional[np.ndarray]:
        roi = None
        if st.landmarks is not None and st.last_frame == frame.index - 1:
            roi = fm.roi_from_landmarks(st.landmarks)
            if face is not None and st.box_rel is not None:
                prev_box = _box_from_landmarks(st.landmarks, st.box_rel)
                if iou_matrix(prev_box[None], face.box[None])[0, 0] < 0.3:
                    roi = None  # the detector disagrees: re-seed from the detection
        if roi is None:
            kp = face.keypoints if face is not None else None
            src = face.box if face is not None else track.box
            roi = fm.roi_from_keypoints(src, *(kp[:2] if kp is not None and len(kp) >= 2 else (None, None)))
        affine = self.mesh.window(roi)
        if affine is None:
            return None
        # the model's window is cut straight from the YUV planes: one resample, at its small size
        window = bl.affine_rgb(frame, affine, self.mesh.window_size(affine, roi))
        lm = self.mesh.on_window(window, affine, roi)
        if lm is None:
            return None
        # a mesh far from where the track is was fitted to something else
        centre, size = _landmark_box(lm)
        tb = track.box if face is None else face.box
        tc = np.array([(tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2])
        if np.linalg.norm(centre - tc) > 0.75 * max(size, tb[2] - tb[0]):
            return None
        return lm

    def _render_jobs(self, frame: Frame, jobs: list[dict]) -> tuple[list, list]:
        """Admit (privacy guard) and render each analysed face: (restore items, (job, output) pairs)."""
        items, rendered_jobs = [], []
        for job in jobs:
            if job["reason"] is not None:
                continue
            r = job["render"]
            level, seed = 0, job["track"].seed
            if self.guard is not None:
                job["reason"] = self.guard.admit(job["track"], r)  # e.g. not verified yet: obfuscated
                if job["reason"] is not None:
                    continue
                level, seed = self.guard.restore_params(job["track"].id)
                job["guard_version"] = self.guard.version(job["track"].id)
            try:
                with self.timer.timed("render"):
                    self._fault("render", frame)
                    crop = crop_for(r.landmarks, r.target, frame.width, frame.height)
                    original = bl.crop_rgb(frame, crop)
                    out = render(original, crop, r.landmarks, r.target, r.visible)
                tr = job["track"]
                items.append(RestoreItem(image=out.image, original=original, mask=out.mask, landmarks=out.target,
                                         track_id=tr.id, seed=seed, level=level))
                rendered_jobs.append((job, out))
            except Exception as e:
                job["reason"] = f"error:{type(e).__name__}"
        return items, rendered_jobs

    def _restore_review_blend(self, frame: Frame, p: PendingFrame) -> None:
        jobs, items, rendered_jobs = p.jobs, p.items, p.rendered
        restored = []
        if items:
            try:
                self._fault("restore", frame)
                if p.future is not None:
                    restored, seconds = p.future.result()
                    self.timer.add("restore", seconds)
                else:
                    with self.timer.timed("restore"):
                        restored = self.restorer.restore(items)
                if len(restored) != len(items):
                    raise RuntimeError("restorer returned a different number of faces")
            except Exception as e:
                for job, _ in rendered_jobs:
                    job["reason"] = f"error:{type(e).__name__}"
                rendered_jobs, restored = [], []
        if self.guard is not None and rendered_jobs:
            # the guard may re-render a face (new perturbation / restorer level) or have it obfuscated
            try:
                with self.timer.timed("guard"):
                    self._fault("guard", frame)
                    kept = self._review(frame, [(j, o, it, f) for (j, o), it, f in
                                                zip(rendered_jobs, items, restored)])
            except Exception as e:
                kept = [None] * len(rendered_jobs)
                for job, _ in rendered_jobs:
                    job["reason"] = f"error:{type(e).__name__}"
            for (job, _), k in zip(rendered_jobs, kept):
                if k is None and job["reason"] is None:
                    job["reason"] = "privacy"
            kept = [k for k in kept if k is not None]
            rendered_jobs = [(j, o) for j, o, _, _ in kept]
            items = [it for _, _, it, _ in kept]
            restored = [f for _, _, _, f in kept]
        with self.timer.timed("blend"):
            for (job, out), face_rgb, item in zip(rendered_jobs, restored, items):
                try:
                    self._fault("blend", frame)
                    face_rgb = bl.match_colour(face_rgb, item.image, out.mask)
                    bl.paste_rgb(frame, out.crop, face_rgb, out.mask)
                except Exception as e:
                    job["reason"] = f"error:{type(e).__name__}"
            for job in jobs:
                if job["reason"] is not None:
                    bl.obfuscate(frame, job["box"], self.o.fallback)

    def _review(self, frame: Frame, entries: list) -> list:
        """The guard's review. A face rendered before its track's parameters changed (possible
        when frames wait for the restorer) is rendered again with the current ones first, and
        reviewed like any other."""
        entries = [e if e[0]["guard_version"] == self.guard.version(e[0]["track"].id)
                   else self.guard.refresh(frame, e[0]) for e in entries]
        reviewed = iter(self.guard.review(frame, [e for e in entries if e is not None]))
        return [None if e is None else next(reviewed) for e in entries]

    def _account(self, job: dict, number: int) -> None:
        tr: Track = job["track"]
        s = self.track_stats.setdefault(tr.id, {"id": tr.id, "first_frame": number, "frames": 0,
                                                "fallback_frames": 0, "fallback_reasons": {}})
        s["frames"] += 1
        s["last_frame"] = number
        self.face_frames += 1
        tr.frames += 1
        n = self.identity.noise_of(tr.id)
        if n is not None:
            s["perturbation"] = n  # random draw (from the seed), not derived from the face
        if job["reason"] is not None:
            s["fallback_frames"] += 1
            s["fallback_reasons"][job["reason"]] = s["fallback_reasons"].get(job["reason"], 0) + 1
            tr.fallback_frames += 1
            self.fallback_face_frames += 1

    def report(self) -> dict:
        tracks = []
        for tid, s in sorted(self.track_stats.items()):
            n = s.get("perturbation")
            tracks.append({**s, "sigma": self.o.scale,
                           "perturbation": None if n is None else [round(float(v), 6) for v in n],
                           **({"privacy": self.guard.track_report(tid)} if self.guard is not None else {})})
        return {"frames": self.frames, "restorer": getattr(self.restorer, "name", type(self.restorer).__name__),
                "face_frames": self.face_frames,
                "fallback_face_frames": self.fallback_face_frames, "failed_frames": self.frame_failures,
                "tracks": tracks, "timing": self.timer.summary(self.frames),
                "privacy": self.guard.summary() if self.guard is not None else {"mode": "off"},
                **({"restore_worker": {"ahead": self.restore_ahead, **self.worker.stats()}}
                   if self.worker is not None else {}),
                **({"frame_log": self.frame_log} if self.o.frame_log else {})}

    def close(self):
        if self.worker is not None:
            self.worker.close()
        self.mesh.close()



# ---------------------------------------------------------------------- whole files

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


_END = object()


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


def deidentify(src: str, dst: str, options: Optional[Options] = None,
               on_frame: Optional[Callable[[int, int], None]] = None, processor: Optional[FaceProcessor] = None) -> dict:
    """De-identify a video or image file. Returns the report (nothing identity-derived in it)."""
    o = options or Options()
    check_paths(src, dst, o.force)
    if is_image(src):
        return _deidentify_image(src, dst, o, processor)
    t0 = time.perf_counter()
    source = VideoSource(src, audio=o.audio)  # bad input fails here, before any model loads
    try:
        proc = processor or FaceProcessor(o)
    except BaseException:
        source.close()
        raise
    source.detect_size = proc.detect_size
    info = source.info
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=8)
    processed: queue.Queue = queue.Queue(maxsize=8)
    sink_box: dict = {}

    def decode_loop():
        t = time.perf_counter()
        n = 0
        for item in source.items():
            if isinstance(item, Frame):
                n += 1
            proc.timer.add("decode", time.perf_counter() - t, 1 if isinstance(item, Frame) else 0)
            if not _put(decoded, item, stop):
                return
            t = time.perf_counter()
        _put(decoded, _END, stop)

    def encode_loop():
        pending_audio = []
        while True:
            try:
                item = processed.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _END:
                return
            t = time.perf_counter()
            if isinstance(item, AudioPacket):
                if "sink" in sink_box:
                    sink_box["sink"].write_audio(item)
                else:
                    pending_audio.append(item)  # audio before the first video frame
                continue
            if "sink" not in sink_box:
                info.rotation = item.rotation
                info.work_fmt = item.pix_fmt
                sink_box["sink"] = VideoSink(dst, info, codec=o.codec, crf=o.crf, preset=o.preset,
                                             keep_metadata=o.keep_metadata, audio=o.audio)
                for a in pending_audio:
                    sink_box["sink"].write_audio(a)
                pending_audio.clear()
            sink_box["sink"].write(item)
            proc.timer.add("encode", time.perf_counter() - t)

    dec = _Worker(decode_loop, "ideud-decode")
    enc = _Worker(encode_loop, "ideud-encode")
    dec.start()
    enc.start()
    frames = 0
    # Frames prepared but not finished (restore_ahead > 0: their faces are with the restore
    # worker) and the audio packets behind them, in decode order.
    waiting: deque = deque()
    in_flight = 0

    def emit(limit: int) -> None:
        nonlocal frames, in_flight
        while waiting and (in_flight > limit or not isinstance(waiting[0], PendingFrame)):
            item = waiting.popleft()
            if isinstance(item, PendingFrame):
                proc.finish(item)
                in_flight -= 1
                item = item.frame
                frames += 1
                if on_frame:
                    on_frame(frames, info.frames)
            if not _put(processed, item, stop) or enc.error is not None:
                raise enc.error or RuntimeError("encoder stopped")

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
            if isinstance(item, Frame):
                waiting.append(proc.prepare(item))
                in_flight += 1
            else:
                waiting.append(item)
            emit(proc.restore_ahead)
        emit(0)
        _put(processed, _END, stop)
        enc.join()
        for w in (dec, enc):
            if w.error is not None:
                raise w.error
        if "sink" not in sink_box:
            raise InputError(f"{src}: no decodable video frames")
        sink_box["sink"].close()
    except BaseException:
        stop.set()
        if "sink" in sink_box:
            sink_box["sink"].abort()
        raise
    finally:
        stop.set()
        dec.join(timeout=5)
        enc.join(timeout=5)
        source.close()
        if processor is None:
            proc.close()
    wall = time.perf_counter() - t0
    report = proc.report()
    sink = sink_box["sink"]
    report.update({
        "input": {"width": info.width, "height": info.height, "fps": float(info.rate) if info.rate else None,
                  "codec": info.codec, "frames_declared": info.frames, "audio_streams": len(info.audio)},
        "output": {"path": os.path.abspath(dst), "frames": sink.frames, "codec": o.codec,
                   "audio_streams": sum(1 for s in sink.audio_out if s is not None),
                   "dropped_audio_streams": sink.dropped_audio_streams},
        "lost_packets": source.lost_packets, "decode_errors": source.errors,
        "options": {k: v for k, v in asdict(o).items() if k not in ("inject_faults",)},
        "wall_s": round(wall, 3), "fps": round(frames / wall, 2) if wall > 0 else None,
    })
    return report


def _deidentify_image(src: str, dst: str, o: Options, processor: Optional[FaceProcessor]) -> dict:
    if not is_image(dst):
        raise UsageError(f"{dst}: an image input needs an image output (.jpg, .png, ...)")
    t0 = time.perf_counter()
    frame = read_image(src)
    proc = processor or FaceProcessor(o)
    try:
        proc.process(frame)
    finally:
        if processor is None:
            proc.close()
    write_image(dst, frame, exif=image_exif(src) if o.keep_metadata else None)
    report = proc.report()
    report.update({"input": {"width": frame.width, "height": frame.height, "image": True},
                   "output": {"path": os.path.abspath(dst), "frames": 1},
                   "options": {k: v for k, v in asdict(o).items() if k not in ("inject_faults",)},
                   "wall_s": round(time.perf_counter() - t0, 3)})
    return report
