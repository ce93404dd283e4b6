"""FaceProcessor: de-identifies frames in place, every face, fail closed.

Per frame: detect (every `detect_every`-th frame while faces are tracked: stream/cadence.py) ->
track -> landmarks (stream/landmarks.py) -> identity, Step I (stream/identity.py) -> privacy
admission -> render, then restore, Step II (on the restore worker's thread when `restore_ahead` > 0)
-> privacy review -> paste back. `prepare(frame)` does the first half and `finish(pending)` the
second, so that frames can wait for the restorer while the next ones go through Step I;
`process(frame)` does both. One `FaceJob` per face and frame carries what the stages found, and the
`reason` when the face must be obfuscated instead.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.stream import blas_threads
from ideud.stream import blend as bl
from ideud.stream.cadence import DetectCadence
from ideud.stream.decode import attach_small
from ideud.stream.degrade import FULL, REUSE, ReuseCache
from ideud.stream.detect import make_detector
from ideud.stream.guard import PrivacyGuard
from ideud.stream.identity import IdentityStage
from ideud.stream.landmarks import LandmarkStage
from ideud.stream.look_back import FRAMES as LOOK_BACK_FRAMES, LookBack
from ideud.stream.obfuscate_keep import OccluderKeep
from ideud.stream.occlusion import OcclusionStage
from ideud.stream.options import Options
from ideud.stream.protocols import Detector, Restorer
from ideud.stream.relink import relinker_for
from ideud.stream.face_work import render_and_cut, take_answers, warp_here
from ideud.stream.render import crop_for
from ideud.stream.restore import restorer_for
from ideud.stream.restore_processes import RestoreProcesses, cpu_report, rebuild_kwargs, wanted
from ideud.stream.restore_worker import RestoreWorker
from ideud.stream.retract import Retraction
from ideud.stream.scene import CutDetector
from ideud.stream.soften import soften_finds
from ideud.stream.stage_timer import StageTimer
from ideud.stream.track import Tracker
from ideud.stream.types import Face, FaceJob, Frame, PendingFrame, RenderRequest, RestoreItem, Track
from ideud.stream.verify_frame import FrameJudge
from ideud.stream.workers import detect_upright

log = logging.getLogger("ideud")


class FaceFault(RuntimeError):
    """Raised by the fault-injection hook (tests of the fail-closed paths)."""


class FaceProcessor:
    """De-identifies frames in place. Holds the models and every track's state."""

    def __init__(self, options: Options, detector: Optional[Detector] = None, restorer: Optional[Restorer] = None):
        self.o = options
        if options.fallback not in bl.FALLBACKS:
            raise ValueError(f"unknown fallback {options.fallback!r}; choose one of {', '.join(bl.FALLBACKS)}")
        self.detector: Detector = (detector if detector is not None
                                   else make_detector(options.detector, threshold=options.det_threshold))
        self.detector_from_options = detector is None  # worker processes can make the same one
        # finds too small in the detector's input to judge there, judged on the frame (stream/verify_frame.py)
        verifier = self.detector if hasattr(self.detector, "is_false") else getattr(self.detector, "verifier", None)
        self.frame_judge = FrameJudge(verifier) if verifier is not None else None
        self.ahead = None  # stream/workers.py DetectAhead, set by the runner for the length of a file run
        self.mesh = fm.FaceMesh()
        self.identity = IdentityStage(sigma=options.scale, smooth=options.smooth)
        self.restorer: Restorer = restorer if restorer is not None else restorer_for(options)
        if restorer is None:
            # Step II's CPU work in processes of its own: off this process's interpreter lock
            n = wanted(options, self.restorer)
            if n > 0:
                self.restorer = RestoreProcesses(self.restorer, n, **rebuild_kwargs(options))
        # with restore processes each face is also warped and its occluders cut there (stream/face_work.py)
        self.render_in_restorer = isinstance(self.restorer, RestoreProcesses)
        self.guard = PrivacyGuard.create(options.privacy, identity=self.identity, restorer=self.restorer,
                                         mesh=self.mesh, sigma=options.scale, per_frame=options.guard_per_frame)
        if self.restorer.on_gpu:
            self.restorer.warmup()  # seconds now rather than a stall at the first faces of a stream
        # the restorer on its own thread: a GPU's batches, or a second CPU core while Step I runs on the next frame
        self.restore_ahead = (options.restore_ahead if options.restore_ahead is not None
                              else (2 if self.restorer.on_gpu or (os.cpu_count() or 1) > 1 else 0))
        self.cadence = DetectCadence(options.detect_every)  # frames FaceMesh alone follows the faces in
        # a new face is hidden in the held frames before it too (more of them where the cadence skipped some)
        self.look_back = LookBack(options.fallback, frames=LOOK_BACK_FRAMES + self.cadence.every - 1)
        # frames a file run holds before their paste-back: the restorer's, at least the look-back's (stream/
        # look_back.py; more than the guard's one: a frame is reviewed after the next one's Step I, `_settle`)
        self.frames_held = max(self.restore_ahead, self.look_back.frames)
        self.worker: Optional[RestoreWorker] = None
        self._unreviewed: list[PendingFrame] = []  # prepared, not yet restored and reviewed (`_settle`)
        self.retract = Retraction(self.guard)  # reviewed, not yet pasted back: an unchecked face before a failed check
        if self.restore_ahead > 0 and not options.track_only:
            self.worker = RestoreWorker(self.restorer, max_faces=self.restorer.max_batch)
            if self.guard is not None:
                self.guard.restorer = self.worker  # one thread calls the model
        rng = np.random.default_rng(options.seed)  # seed None: fresh OS entropy every run
        self.tracker = Tracker(max_misses=options.max_misses, seed_rng=rng)
        self.landmarks = LandmarkStage(self.mesh, self.tracker)
        self.relink = relinker_for(self.guard, self.identity, self.restorer) if options.relink else None  # returning people
        if self.relink is not None and self.guard is not None:
            self.guard.exhausted = self.relink.unlink  # a linked face that no longer passes: a face of its own
        self.cuts = CutDetector()  # every track ends at a scene cut
        self.occlusion = OcclusionStage()  # hands, microphones in front of a face stay original
        self.reuse = ReuseCache()  # live degrade step: a track's last pasted face, moved to its new box
        self.kept = OccluderKeep(self.guard)  # what of an obfuscated face's box is an occluder, kept original
        self.reuse_faces = False  # set by a live stream that falls behind (stream/degrade.py)
        self.timer = StageTimer()
        self.track_stats: dict[int, dict] = {}
        self.frames = 0
        self.face_frames = 0
        self.fallback_face_frames = self.softened_finds = 0
        self.frame_failures = 0
        self.frame_log: list = []
        blas_threads.acquire(1)  # tiny matrices: a BLAS pool only fights the models for the cores
        self._blas_held = True

    def detect_size(self, width: int, height: int) -> tuple[int, int]:
        return self.detector.input_size(width, height)

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
        attach_small(frame, self.detect_size)
        cut = False
        try:
            with self.timer.timed("track"):
                cut = self.cuts.is_cut(frame.small, (frame.width, frame.height))
                if cut:
                    self.tracker.reset()  # no track (nor its predicted box) survives into another shot
            if self.cadence.due(frame.index, tracking=bool(self.tracker.tracks)):  # a cut ended every track
                with self.timer.timed("detect"):
                    faces = self._detect(frame, p)
            else:  # the tracked faces are found by FaceMesh alone (stream/cadence.py)
                faces, p.soft, p.detected = [], list(self.cadence.soft), False
                if self.ahead is not None:
                    self.ahead.forget(frame)  # said now: a detection thread starts the next frame's
        except Exception as e:
            # without detections we cannot know where faces are: hide the whole frame
            self._fail_frame(frame, None, f"detect: {type(e).__name__}")
            p.done = True
            self.look_back.opened(p, [], cut)  # hidden whole; a frame back all the same
            return p
        with self.timer.timed("track"):
            p.pairs = self.tracker.update(faces, frame.index)
            self.look_back.opened(p, [f.box for tr, f in p.pairs if f is not None and tr.first_frame == frame.index], cut)
            p.track_boxes = {tr.id: np.array(tr.box, float) for tr, _ in p.pairs}
            # forgotten when this frame is finished: frames still waiting may hold their faces
            p.finished_tracks = list(self.tracker.finished)
            self.tracker.finished.clear()
            if self.relink is not None:
                self.relink.ended([tr.id for tr in p.finished_tracks])  # these people may come back now
        try:
            self._fault("frame", frame)
            full = p.pairs
            if self.reuse_faces and not self.o.track_only:
                full = [pr for pr in p.pairs if not self._reused(frame, p, *pr)]
            self.landmarks.prefetch(frame, full, self.o.min_face)  # two faces' FaceMesh at once (same meshes)
            analysed = [self._analyse(frame, track, face) for track, face in full]
            p.jobs += analysed
            if not self.o.track_only:
                items = self._render_jobs(frame, analysed)
                if self.worker is not None and items:
                    p.future = self.worker.submit(items)
                if self.guard is not None:
                    self._unreviewed.append(p)  # reviewed after the next frame's Step I (`_settle`)
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
                p.jobs = [FaceJob(tr, np.asarray(face.box if face is not None else tr.box, float), reason="frame")
                          for tr, face in p.pairs]
                self._fail_frame(frame, [j.box for j in p.jobs], f"frame: {type(e).__name__}", log=False)
            softened = soften_finds(frame, p.soft, [j.box for j in p.jobs])
            self.softened_finds += len(softened)
            hidden = self.look_back.patch(p)
            for job in p.jobs:
                self._account(job, p.number)
            if self.o.frame_log:  # the soft finds' and look-back's boxes too: no face, nothing of anybody
                r1 = lambda b: [round(float(v), 1) for v in b]  # noqa: E731
                self.frame_log.append({"frame": frame.index, "softened": softened, "faces": [
                    {"track": j.track.id, "box": r1(j.box), "status": j.status} for j in p.jobs],
                    **({"hidden_before_found": [r1(b) for b in hidden]} if hidden else {})})
        self._drop_tracks(p.finished_tracks)

    def _detect(self, frame: Frame, p: PendingFrame) -> list[Face]:
        """The detector's faces in `frame`, judged; its soft finds go to `p.soft`."""
        self._fault("detect", frame)
        faces = []
        if frame.small is not None:  # as displayed (phone videos are stored turned), boxes in stored pixels
            faces = (self.ahead.faces(frame, self.detector) if self.ahead is not None  # a worker's, same code
                     else detect_upright(self.detector, frame.small, frame.small_scale, frame.rotation))
        if self.frame_judge is not None and faces:
            kept = self.frame_judge.faces(frame, faces)
            if hasattr(self.detector, "judged"):  # a batch run's pass 1 records what it kept and softened
                self.detector.judged(kept)
            faces = kept
        p.soft = self.cadence.soft = [f.box for f in faces if f.soft]
        return [f for f in faces if not f.soft]

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
            if self.relink is not None:
                self.relink.dropped(tr.id)  # its choices kept for the person's return (never its codes)
            self.identity.drop(tr.id)  # the real ID code is forgotten with the track
            if self.guard is not None:
                self.guard.drop(tr.id)  # and the guard's embeddings of the person
            self.landmarks.drop(tr.id)
            if self.render_in_restorer:
                self.restorer.drop_track(tr.id)  # its occlusion state and the restorer's, in its process
            else:
                self.occlusion.drop(tr.id)
                (self.worker or self.restorer).forget(tr.id)  # its candidates' canvases: ~5 MB a searched track
            self.reuse.drop(tr.id)

    def _reused(self, frame: Frame, p: PendingFrame, track: Track, face: Optional[Face]) -> bool:
        """Degrade steps (stream/degrade.py): the track's last face, moved to its new box, over
        the box obfuscated first, or (a track the guard has not verified, far behind) the box
        obfuscated outright; False when it goes the full way."""
        box = np.asarray(face.box if face is not None else track.box, float)
        if face is None:
            return False
        status = "verified" if self.guard is None else (self.guard.track_report(track.id) or {}).get("status")
        way = self.reuse.route(track.id, box, p.number, status)
        if way == FULL:
            return False
        if way == REUSE:
            strength = self.guard.mosaic_strength(track.id) if self.guard is not None else 0
            # hidden as the kept face was checked, or as the track is now (both: the safer)
            hide = self.reuse.hid_surroundings(track.id) or (
                self.guard is not None and self.guard.surroundings(track.id) is not None)
            with self.timer.timed("reuse"):
                self.reuse.paste_moved(frame, track.id, box, self.o.fallback, strength, hide)
        # the landmark stage did not see this frame: its held mesh and flow reference are stale
        self.landmarks.drop(track.id)
        p.jobs.append(FaceJob(track, box, reason=None if way == REUSE else "degrade"))  # finish obfuscates
        return True

    def _analyse(self, frame: Frame, track: Track, face: Optional[Face]) -> FaceJob:
        """Landmarks and perturbed geometry of one face; a `reason` when it must be obfuscated."""
        job = FaceJob(track, np.asarray(face.box if face is not None else track.box, float))
        if max(job.box[2] - job.box[0], job.box[3] - job.box[1]) < self.o.min_face:
            job.reason = "small"
            return job
        try:
            with self.timer.timed("mesh"):
                lm = self.landmarks.fit(frame, track, face)
            if lm is None:
                job.reason = "no_mesh" if face is not None else "lost"
                return job
            job.propagated = self.landmarks.propagated(track.id)
            self._settle(keep=1)  # the guard's decisions on frames before the last one first: Step I reads them
            job.box = np.r_[lm[:, :2].min(0), lm[:, :2].max(0)]
            if self.o.track_only:
                return job
            with self.timer.timed("identity"):
                self._fault("identity", frame)
                if self.relink is not None:  # before Step I first uses the track's seed
                    self.relink.decide(frame, track, lm)
                # a face that has not changed keeps its rendering (no shimmer on repeated frames)
                key = self.identity.noise_of(track.id)
                job.rendering = self.landmarks.held_rendering(track.id, key)
                if job.rendering is None:
                    job.rendering = self.identity.process(track.id, track.seed, lm, frame.time)
                    self.landmarks.keep_rendering(track.id, job.rendering, self.identity.noise_of(track.id))
                if self.relink is not None:
                    self.relink.see(frame, track.id, lm, job.rendering.yaw)
        except Exception as e:
            job.reason = f"error:{type(e).__name__}"
        return job

    def _render_jobs(self, frame: Frame, jobs: list[FaceJob]) -> list[RestoreItem | RenderRequest]:
        """Admit (privacy guard) and render each analysed face; the restore items (with restore
        processes: the render requests, rendered there), in job order."""
        items = []
        for job in jobs:
            if job.reason is not None:
                continue
            r = job.rendering
            level, seed = 0, job.track.seed
            if self.guard is not None:
                job.reason = self.guard.admit(job.track, r)  # e.g. not verified yet: obfuscated
                if job.reason is None:
                    level, seed = self.guard.restore_params(job.track.id)
                    job.guard_version = self.guard.version(job.track.id)
            # a face obfuscated anyway is still rendered and cut (not restored): its occluder stays original
            cut_only = job.reason is not None
            try:
                with self.timer.timed("render"):
                    self._fault("render", frame)
                    crop = crop_for(r.landmarks, r.target, frame.width, frame.height)
                    req = RenderRequest(original=bl.crop_rgb(frame, crop), crop=crop, landmarks=r.landmarks,
                                        target=r.target, visible=r.visible, track_id=job.track.id, seed=seed,
                                        level=level, measured=self.landmarks.current(job.track.id),
                                        restore=not cut_only)
                    if self.render_in_restorer:  # warped here, cut and restored in the track's restore process
                        job.request = warp_here(req)
                        items.append(req)
                        continue
                    # hands, microphones in front of the face keep their pixels (stream/occlusion.py)
                    out, item, found = render_and_cut(req, self.occlusion)
                    job.occluder = None if found is None else (crop, found)
                if item is None or cut_only:
                    job.reason = job.reason or "occluded"
                    continue
            except Exception as e:
                job.reason = job.reason or f"error:{type(e).__name__}"
                continue
            job.rendered, job.item = out, item
            items.append(item)
        return items

    def _settle(self, upto: Optional[PendingFrame] = None, keep: int = 0) -> None:
        """Restore and review the waiting frames, oldest first (up to `upto`; the last `keep` stay):
        the guard's review may change a track's face, status and state. Step I of frame t+1 settles all
        but t (`keep=1`): t is restored while t+1 is drawn, and reviewed before t+2's Step I. The order is
        fixed (file runs hold a frame back: `frames_held`), so the output depends neither on `restore_ahead`
        nor on the restorer's timing; t+1's face made out of date by t's review is drawn again (`refreshed`)."""
        while len(self._unreviewed) > keep:
            q = self._unreviewed.pop(0)
            try:
                if self.guard is not None:
                    self.guard.checked, self.guard.failed = set(), set()  # a frame without faces asks it nothing
                q.reviewed = self._restore_review(q.frame, q)
                self.retract.reviewed(q)
            except Exception as e:
                q.error = e  # finish hides the frame's faces, as for any failed whole-frame stage
            if q is upto:
                return

    def _restore_review_blend(self, frame: Frame, p: PendingFrame) -> None:
        if any(q is p for q in self._unreviewed):
            self._settle(upto=p)
            if p.error is not None:
                raise p.error
        self.retract.pasted(p)
        jobs, restored = p.reviewed if p.reviewed is not None else self._restore_review(frame, p)
        with self.timer.timed("blend"):
            self._blend(frame, p, jobs, restored)

    def _restore_review(self, frame: Frame, p: PendingFrame) -> tuple[list, list]:
        """Step II's faces (the worker's answer, or restored now) reviewed by the guard: the jobs and faces to paste."""
        jobs = p.restoring()
        restored = []
        if jobs:
            try:
                self._fault("restore", frame)
                if p.future is not None:
                    restored, seconds = p.future.result()
                    self.timer.add("restore", seconds)
                else:
                    with self.timer.timed("restore"):
                        restored = self.restorer.restore([j.item if j.request is None else j.request for j in jobs])
                if len(restored) != len(jobs):
                    raise RuntimeError("restorer returned a different number of faces")
            except Exception as e:
                for job in jobs:
                    job.reason, job.request = f"error:{type(e).__name__}", None
                jobs, restored = [], []
            jobs, restored = take_answers(jobs, restored)
        if self.guard is not None:
            self.guard.saw_obfuscated(p.jobs)  # an occluder gone: a track refused behind it is searched again
        if self.guard is not None and jobs:
            # the guard may re-render a face (new perturbation / restorer level) or have it obfuscated
            try:
                with self.timer.timed("guard"):
                    self._fault("guard", frame)
                    kept = self._review(frame, [(j, j.rendered, j.item, f) for j, f in zip(jobs, restored)])
            except Exception as e:
                kept = [None] * len(jobs)
                for job in jobs:
                    job.reason = f"error:{type(e).__name__}"
            for job, k in zip(jobs, kept):
                if k is None and job.reason is None:
                    job.reason = "privacy"
            kept = [k for k in kept if k is not None]
            for job, rendered, item, _ in kept:
                job.rendered, job.item = rendered, item  # what the guard passed: perhaps drawn again
                # the surroundings it was checked with: by its paste-back later reviews may have moved the track
                # on (no step, obfuscated), pasting it with the hair and outline the check had blurred away
                job.surroundings, job.checked = self.guard.surroundings(job.track.id), job.track.id in self.guard.checked
            jobs, restored = [k[0] for k in kept], [k[3] for k in kept]
        return jobs, restored

    def _blend(self, frame: Frame, p: PendingFrame, jobs: list, restored: list) -> None:
        for job, face_rgb in zip(jobs, restored):
            try:
                self._fault("blend", frame)
                face_rgb = bl.match_colour(face_rgb, job.item.image, job.rendered.mask)
                if self.guard is not None:  # as checked (at this frame's review)
                    bl.redraw_surroundings(frame, job.rendered.crop, job.rendered.target, job.surroundings,
                                           job.occluder)
                bl.paste_rgb(frame, job.rendered.crop, face_rgb, job.rendered.mask)
                self.reuse.keep(job.track.id, face_rgb, job.rendered.mask, job.rendered.crop,
                                p.track_boxes[job.track.id], job.surroundings is not None)
            except Exception as e:
                job.reason = f"error:{type(e).__name__}"
        for job in p.jobs:
            if job.reason is not None:
                self.reuse.forget(job.track.id)  # an obfuscated face is never reused
                # the guard's verified mosaic; a hand or microphone in front of the face stays original
                strength = self.guard.mosaic_strength(job.track.id) if self.guard is not None else 0
                with self.timer.timed("occluder_keep"):
                    keep = self.kept.keep(frame, job, strength, self.o.fallback)
                bl.obfuscate(frame, job.box, self.o.fallback, strength=strength, keep=keep)

    def _review(self, frame: Frame, entries: list) -> list:
        """The guard's review. A face rendered before its track's parameters changed is rendered
        again with the current ones first, and reviewed like any other (a safety net: `_settle`
        reviews every frame before a later one is rendered)."""
        entries = [e if e[0].guard_version == self.guard.version(e[0].track.id)
                   else self.guard.refresh(frame, e[0]) for e in entries]
        reviewed = iter(self.guard.review(frame, [e for e in entries if e is not None]))
        return [None if e is None else next(reviewed) for e in entries]

    def _account(self, job: FaceJob, number: int) -> None:
        tr = job.track
        s = self.track_stats.setdefault(tr.id, {"id": tr.id, "first_frame": number, "frames": 0,
                                                "fallback_frames": 0, "fallback_reasons": {}})
        s["frames"] += 1
        if job.propagated:  # rendered from a mesh moved by optical flow (stream/flow.py)
            s["propagated_frames"] = s.get("propagated_frames", 0) + 1
        s["last_frame"] = number
        self.face_frames += 1
        # never the track's noise or seed in the report: with them Step I could be undone from the output
        if job.reason is not None:
            s["fallback_frames"] += 1
            s["fallback_reasons"][job.reason] = s["fallback_reasons"].get(job.reason, 0) + 1
            self.fallback_face_frames += 1

    def report(self) -> dict:
        tracks = []
        for tid, s in sorted(self.track_stats.items()):
            same = self.relink.same_person_as.get(tid) if self.relink is not None else None
            tracks.append({**s, "sigma": self.o.scale,  # sigma only: never the noise vector or a seed
                           **({"same_person_as": same} if same is not None else {}),
                           **({"privacy": self.guard.track_report(tid)} if self.guard is not None else {})})
        return {"frames": self.frames, "restorer": self.restorer.name,
                "restore_processes": getattr(self.restorer, "processes", 0),
                "face_frames": self.face_frames, "reused_face_frames": self.reuse.reused,
                "fallback_face_frames": self.fallback_face_frames, "failed_frames": self.frame_failures,
                "softened_finds": self.softened_finds, "hidden_before_found": self.look_back.hidden,
                "hidden_before_failed_check": self.retract.hidden, "rechecked_before_failed_check": self.retract.rechecked,
                "detect_skipped_frames": self.cadence.skipped,
                "scene_cuts": self.cuts.cuts, "occluder_kept": self.kept.report(),
                **(self.relink.report() if self.relink is not None else {}),
                "tracks": tracks, "timing": self.timer.summary(self.frames),
                "privacy": self.guard.summary() if self.guard is not None else {"mode": "off"},
                **({"restore_worker": {"ahead": self.restore_ahead, **self.worker.stats()}}
                   if self.worker is not None else {}),
                "cpu_s": cpu_report(self.restorer),
                **({"frame_log": self.frame_log} if self.o.frame_log else {})}

    def close(self):
        if getattr(self, "_blas_held", False):
            self._blas_held = False
            blas_threads.release()
        if self.worker is not None:
            self.worker.close()
        if isinstance(self.restorer, RestoreProcesses):
            self.restorer.close()
        self.mesh.close()
