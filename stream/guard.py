"""The privacy guard: measure, per track, that the output face no longer matches the person.

`--privacy off|balanced|strict` (default balanced). A face passes only if BOTH recognizers of
models/recognizers.py place it among different people, each on several views of the output face
(the chip, its mirror, +-5 % scale/crop jitter, a JPEG re-encode; the worst view counts):

    dlib's ResNet (L2 distance d, same person under tau; ~10 ms a view on onnxruntime, models/dlib_resnet_onnx.py)
    EdgeFace      (cosine similarity s, same person over edge_max; ~5 ms a view, batched;
                   models/edgeface.py, thresholds in models/data/edgeface_calibration.json)

    level     dlib tau   search accepts   EdgeFace edge_max                       search accepts
    balanced  0.6        d >= 0.64        0.214 (p99 of impostor pairs, portraits)  s <= 0.154
    strict    0.7        d >= 0.75        0.152 (p95 of impostor pairs, portraits)  s <= 0.092

Per track
---------
1. Verification. At the track's first frame the guard embeds the person (both recognizers, the
   unmirrored chip) and searches for a new face (`search`); no frame of the track is handed back
   before that. If that frame is not near-frontal (|yaw| <= 25, |pitch| <= 20 degrees, as the ID
   fit uses), the track is checked again at its first good frame. By default the search blocks
   the frame that needs it, once per track; where latency matters more (live streams),
   `Policy.per_frame` spreads it over frames, `per_frame` candidates each, the face obfuscated
   until it is verified.
2. Search, in escalation steps (`STEPS`), each of `candidates` perturbations derived from the
   track seed (candidate 0 of step 0 is the track's own), `batch` at a time: re-render each
   (identity.set_noise, the restorer at the step's level, the appearance seed), paste it into the
   frame around the face (with this frame's occluders cut out), and run the chip of every
   candidate of the batch through EdgeFace in one call, then the other views of those it did not
   reject in another (the next batch is restored meanwhile: stream/guard_ahead.py). The rest go
   on most different first, cheapest decisive check first: still a face (FaceMesh finds it where it
   was drawn, ~10 ms; EdgeFace again at the points it found, as anyone holding the output would align
   it: chip, mirror, +5 %; guard_views.seen_face), dlib with the margin (~10 ms a view), its undone
   faces (4., ~100 ms) not the person for EdgeFace, then for dlib; the first that passes all is kept.

       step 0, 1  sigma x1, restorer level 0, 1 (more of the face from the restorer)
       step 2, 3  sigma x2, restorer level 1, 2
       step 4, 5  sigma x1, x2, restorer level 3 (bank: adds glasses; prior: the person's no longer kept)
       step 6, 7  sigma x1, x2, restorer level 4 (prior: widest shading scale; why 4-7: guard_policy.STEPS)
       step 8-11  steps 0-3 again (new draws), the face's surroundings blurred (blend.blur_surroundings: hair,
                  ears, outline and background give many people away whatever the face); 12-15 filled flat;
                  2 draws a step (guard_policy.SURROUNDINGS_CANDIDATES)
       else       the track is obfuscated (searched again at a good frame: guard_policy.retry_due); a
                  track that took a returning person's seed is first searched under its own (`exhausted`)

   A restorer without levels (classic, gan) renders the same face at every level, so for it the
   steps only vary and strengthen the geometry. z' = clip(z + n, -1, 1) is what every candidate
   renders, so every kept one respects the clip.
3. Re-check on change: until the ID code freezes, after it while yaw or pitch moved over LOOK_SHARE
   of the bar below, and every LOOK_EVERY face-frames for an output checked near edge_max
   (guard_policy.look_due), when the output or the person changed (guard_views.output_drifted, the
   EdgeFace chips of output and person a face-frame: not the face last checked, or over edge_max -
   look_margin against the person, now or kept); when yaw or pitch moved more than `pose_delta`
   degrees since the last check (down to a third of that for a face within 0.2 of tau or 0.1 of
   edge_max), when the face grew or shrank by `scale_delta` or got `sharper_delta` times sharper
   (motion blur gone: guard_views.face_detail), when `occluded_delta` more of it is left original
   for an occluder (a misread one leaves the person's own face), and once when the ID code freezes.
   The output must pass both recognizers (dlib's margin, look_margin) against the person at this frame and
   the references kept from earlier poses (up to 4); EdgeFace goes first, dlib only if it and
   FaceMesh passed, and not at all when the person looks as a kept reference and the output is the
   same new face as at the last full check (its EdgeFace chip within SAME_OUTPUT of it; that dlib
   distance had the margin). If not, the search goes on with the next step and that frame is not
   handed back until a candidate passes (or it is obfuscated); the frame before it, if a file run still
   holds it and its face was not checked, is checked in full too and hidden where it fails (retract.py).
4. Inversion: where the mapping can be undone by someone who knows the method (the prior
   restorer: its output's code mirrored, or a second pass; stream/guard_inversion.py), the
   candidate a search would keep is undone both ways and each undone face must not match the
   person either (tau and edge_max: EdgeFace on chip and mirror, after the forward dlib check;
   dlib on the chip of the one EdgeFace found closest, last: a second-order check, kept cheap);
   if one does, the search goes on as for any other failure. Once per candidate that gets that
   far in a search, never per frame.
5. The fallback is verified too. When a track ends obfuscated, its face's mosaic (blend.obfuscate
   at the track's strength, drawn here on RGB) is measured like a rendered face; while either
   recognizer still matches it (dlib under 0.6 in both modes: a face-less fill sits only
   ~0.61-0.74 from anyone; EdgeFace over edge_max) the strength goes up and `mosaic_strength`
   is what the pipeline draws. Faces obfuscated for other reasons get the default strength,
   measured on its own (tools/bench/bench_mosaic.py, tests/test_guard.py). A mosaic that keeps the
   hand in front of the face (stream/obfuscate_keep.py) is measured in every frame it is drawn in
   (`keeps_occluder`, guard_views.kept_occluder_passes); refused, the whole box is filled. A
   reference taken behind an occluder is used with it greyed there (guard_occluded_refs.py).
6. Occluders: every candidate is pasted with the occluders the pipeline's own render of that
   frame cut out (a hand keeps its pixels, also in a searched or refreshed face).

Privacy of the guard itself: the person's embeddings (dlib and EdgeFace) live in this object's
memory only and are dropped with the track (`drop`). The report holds per track both worst-view
numbers reached, the escalation step, the frames obfuscated and why, the mosaic strength and its
two numbers; no embedding, ID code or crop. Which candidate was kept depends on the face (a few
bits); the candidates are drawn from the track seed.

Batch runs that split a video: `decision(track)` is the (step, candidate, restorer level) a track
uses and `preset(track, seed, choice)` starts the same person's track in another segment from it
(checked like a re-check), so that the segments keep one new face (the level: one drawn behind a hand).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.models.recognizer import FaceRecognizer
from ideud.models.recognizers import TwoRecognizers
from ideud.stream import blend as bl
from ideud.stream.guard_ahead import batch_size, can_look_ahead, next_batch, settle, start_batch
from ideud.stream.guard_inversion import inverses_for, undone_by_edgeface, undone_passes_dlib
from ideud.stream.guard_occluded_refs import (behind_level, kept_references, masked_reference, note_behind, person_behind,
                                              references)
from ideud.stream.guard_policy import (EDGE_THRESHOLDS, LOOK_SHARE, MAX_REFERENCES, MODES, POLICIES, SAME_OUTPUT,  # noqa: F401
                                       STEPS, Policy, _Track, count_fallback, face_size, look_due, near_frontal, note_tried, redrawn_small,
                                       step_candidates, surroundings_mode, pose_moved_since_check, resized_since_check,
                                       retry_due, same_output, sharper_since_check, track_report, occluder_changed_since_check)
from ideud.stream.guard_views import (_mix, candidate_output, context_crop, face_detail,  # noqa: F401
                                      finish_candidate, kept_occluder_passes, looks_like_face, obfuscated,
                                      occluder_keep, output_drifted, render_candidate, seen_then_dlib, verified_mosaic,
                                      with_occluders)
from ideud.stream.identity import perturbation
from ideud.stream.occlusion import MAX_SHARE as OCCLUDED_MAX
from ideud.stream.types import Crop


class PrivacyGuard:
    """Verifies every track's output face against the person; see the module docstring."""

    def __init__(self, mode: str, identity, restorer, mesh: Optional[fm.FaceMesh] = None,
                 sigma: float = 0.25, recognizer: Optional[FaceRecognizer] = None,
                 policy: Optional[Policy] = None, per_frame: Optional[int] = None):
        if mode not in POLICIES:
            raise ValueError(f"unknown privacy mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.policy = policy or POLICIES[mode]
        if per_frame:
            self.policy = dataclasses.replace(self.policy, per_frame=int(per_frame))
        self.identity = identity
        self.restorer = restorer
        self.mesh = mesh
        self.sigma = sigma
        self.two = TwoRecognizers(dlib=recognizer)
        self.inverses = inverses_for(restorer)  # [] where the restorer's mapping has no known inverse
        self._tracks: dict[int, _Track] = {}
        self._done: dict[int, dict] = {}  # reports of dropped tracks (numbers only)
        # track id -> a fresh seed to search with before obfuscating, or None (a relinked track's own)
        self.exhausted = None
        self.checked, self.failed = set(), set()  # of the last review (`review`)

    @classmethod
    def create(cls, mode: str, **kw) -> Optional["PrivacyGuard"]:
        return None if mode == "off" else cls(mode, **kw)

    # ------------------------------------------------------------------ pipeline hooks
    def admit(self, track, rendering) -> Optional[str]:
        """Before rendering: a fallback reason if this face must be obfuscated now, else None."""
        st = self._tracks.get(track.id)
        if st is None:
            st = self._tracks[track.id] = _Track(seed=track.seed, appearance=track.seed, sigma=self.sigma)
        st.since_check, st.since_look = st.since_check + 1, st.since_look + 1
        if st.status == "obfuscated" and not (near_frontal(rendering) and retry_due(
                self.policy, st, rendering, self.identity.is_frozen(track.id))):
            count_fallback(st, "no_candidate_passed")
            return "privacy"
        return None

    def saw_obfuscated(self, jobs) -> None:
        """A reviewed frame's faces (in frame order, as reviews go): whether an occluder was found in
        front of each face obfuscated for privacy (`guard_policy.retry_due`: gone, searched again)."""
        for job in jobs:
            st = self._tracks.get(job.track.id)
            if st is not None and st.status == "obfuscated" and job.reason == "privacy":
                st.clear_frames = 0 if job.occluder is not None else st.clear_frames + 1

    def restore_params(self, track_id: int) -> tuple[int, int]:
        """(level, seed) for this track's RestoreItem."""
        st = self._tracks[track_id]
        return st.level, st.appearance

    def review(self, frame, entries: list) -> list:
        """After restore, before paste. `entries`: [(job, rendered, item, restored_rgb)].

        Returns one entry per input: the same or a re-rendered one that passed,
        or None where the face must be obfuscated. The frame is not modified. After it, `checked`
        holds the tracks whose face passed a full check here, `failed` those whose shown face failed one.
        """
        out, self.checked, self.failed = [], set(), set()
        for job, rendered, item, face_rgb in entries:
            tr = job.track
            st = self._tracks[tr.id]
            r, st.occluder = job.rendering, job.occluder  # this frame's: a filled face keeps it (blend.surroundings)
            t0 = time.perf_counter()
            st.detail = face_detail(frame, r)
            # on change: of the face (pose, size, occluders, the ID code) or of the output itself, until the
            # ID code freezes (the output settles over a track's first frames) and after while the head turns
            look = look_due(self.policy, st, r, self.identity.is_frozen(tr.id))
            if not self._due(st, tr.id, r, rendered) and not (look and output_drifted(
                    self.two, frame, r, (rendered, item, face_rgb), st,
                    self.policy.edge_limit(search=redrawn_small(st, r)), self.policy.tau, self.policy.dlib_floor)):
                st.seconds += time.perf_counter() - t0
                out.append((job, rendered, item, face_rgb))
                continue
            try:
                res = self._check(frame, tr.id, st, r, (rendered, item, face_rgb), job.occluder)
            finally:
                st.seconds += time.perf_counter() - t0
            if res is not None:
                self.checked.add(tr.id)
            else:
                count_fallback(st, "searching" if st.cursor is not None else
                               "no_candidate_passed" if st.status == "obfuscated" else "check_failed")
            out.append(None if res is None else (job, *res))
        return out

    def version(self, track_id: int) -> int:
        """Changes whenever the track's perturbation, restorer level/seed or status changes: a face
        rendered under an older version (frames waiting for the restorer) is out of date."""
        st = self._tracks.get(track_id)
        return -1 if st is None else st.version

    def refresh(self, frame, job) -> Optional[tuple]:
        """A face rendered before its track's parameters changed: rendered again with the current,
        verified ones -> (job, rendered, item, restored), or None where it must be obfuscated."""
        st = self._tracks.get(job.track.id)
        if st is None:
            return None
        res = None
        if st.status == "verified" and st.cursor is None:
            st.refreshed += 1
            res = with_occluders(render_candidate(self.identity, self.restorer, frame, job.track.id, job.rendering,
                                                  st.level, st.appearance),
                                 occluder_keep(frame, job.rendering, job.rendered), OCCLUDED_MAX)
        if res is None:
            count_fallback(st, "searching" if st.cursor is not None else "not_verified")
            return None
        return (job, *res)

    def drop(self, track_id: int) -> None:
        """Forget a finished track's embeddings; keep its numbers for the report."""
        st = self._tracks.pop(track_id, None)
        if st is not None:
            for kept in (st.refs, st.edge_refs, st.masked_refs):
                kept.clear()
            st.now = st.now_behind = st.output_edge = st.looked = None
            self._done[track_id] = self._track_report(st)

    def track_report(self, track_id: int) -> Optional[dict]:
        st = self._tracks.get(track_id)
        return self._track_report(st) if st is not None else self._done.get(track_id)

    def summary(self) -> dict:
        reps = [self._track_report(s) for s in self._tracks.values()] + list(self._done.values())
        return {"mode": self.mode, "tau": self.policy.tau, "margin": self.policy.margin,
                "edgeface_max": self.policy.edge_max, "edgeface_margin": self.policy.edge_margin,
                "tracks": len(reps),
                "tracks_verified": sum(r["status"] == "verified" for r in reps),
                "tracks_obfuscated": sum(r["status"] == "obfuscated" for r in reps),
                **{f"tracks_surroundings_{k}": sum(bool(r[f"surroundings_{k}"]) for r in reps) for k in ("filled", "blurred")},
                "dlib_chips": self.two.dlib_chips, "edgeface_chips": self.two.edge_chips}

    # ------------------------------------------------------------------ internals
    def _track_report(self, st: _Track) -> dict:
        return track_report(st, self.policy)

    def keeps_occluder(self, frame, job, keep, strength: int, mode: str) -> bool:
        """Point 5 for a face obfuscated with its occluder kept (stream/obfuscate_keep.py)."""
        st = self._tracks.get(job.track.id)
        refs = kept_references(st.refs, st.edge_refs, st.masked_refs) if st is not None else None
        return kept_occluder_passes(self.two, frame, job, keep, strength, mode, refs, self.policy.edge_max)

    def surroundings(self, track_id: int) -> Optional[str]:
        """How the track's new face's surroundings are drawn (guard_policy.surroundings_mode): "blur", "fill" or None."""
        st = self._tracks.get(track_id)
        return None if st is None else st.surroundings

    def mosaic_strength(self, track_id: int) -> int:
        """The obfuscation strength verified for this track's face (0: blend's default)."""
        st = self._tracks.get(track_id)
        return 0 if st is None else st.mosaic

    def _due(self, st: _Track, tid: int, r, rendered) -> bool:
        """Checked on change, not on the clock (module docstring, 3.): pose, size, occluded share, the
        ID code freezing; the closer the face is to a threshold, the smaller the pose change."""
        if st.status != "verified" or st.cursor is not None:
            return True  # pending, a search under way, or an obfuscated track's retry
        p = self.policy
        pose_moved = pose_moved_since_check(p, st, r, 1.0)
        resized = resized_since_check(p, st, r)
        frozen = self.identity.is_frozen(tid)
        # more left original (an occluder gone), or what is in front changed as the last check did not see
        uncovered = rendered.occluded > st.last_occluded + p.occluded_delta or occluder_changed_since_check(st)
        return (pose_moved or resized or uncovered or (frozen and not st.frozen_seen)
                or (st.provisional and near_frontal(r)) or sharper_since_check(p, st))

    def _refs(self, st: _Track, plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return references(st, plain)  # (dlib, EdgeFace): the person, this frame and kept

    def _add_reference(self, st: _Track, ctx_rgb: np.ndarray, ctx: Crop, r, occluder=None, edge=None) -> bool:
        """The person at this frame, always measured against (st.now: the look drifts with light and
        hands, EdgeFace 0.70-0.96 to a kept reference of the same pose, and outputs judged against
        old references only matched their own frame); kept for later checks if no kept one has about
        this pose. True when kept or no longer looking as the kept ones (an unchanged output's dlib
        distance then no longer stands). With an occluder, also the person with it greyed."""
        pose = (r.yaw, r.pitch)
        st.now = self.two.person(ctx_rgb, r.landmarks[:, :2] - ctx.offset, edge=edge)
        if st.refs and min(max(abs(pose[0] - q[0]), abs(pose[1] - q[1])) for q in st.ref_poses) < 5.0:
            return float(np.max(np.asarray(st.edge_refs) @ st.now[1])) < SAME_OUTPUT
        st.refs.append(st.now[0])
        st.edge_refs.append(st.now[1])
        st.ref_poses.append(pose)
        st.now = None  # it is in the references now
        st.masked_refs.append(masked_reference(self.two, ctx_rgb, ctx, r.landmarks[:, :2] - ctx.offset, occluder))
        if len(st.refs) > MAX_REFERENCES:
            st.refs.pop(0)
            st.edge_refs.pop(0)
            st.ref_poses.pop(0)
            st.masked_refs.pop(0)
        return True

    def _check(self, frame, tid: int, st: _Track, r, current, occluder=None) -> Optional[tuple]:
        st.checks += 1
        st.since_check = st.since_look = 0
        st.last_pose = (r.yaw, r.pitch)
        st.last_size = face_size(r)
        st.last_occluded, st.checked_detail, st.clear_frames = current[0].occluded, st.detail, 0
        st.frozen_seen = self.identity.is_frozen(tid)
        if near_frontal(r):
            st.provisional = False
        elif st.status != "verified":
            st.provisional = True  # check again at the first near-frontal frame
        ctx = context_crop(frame, r, current[0].target + current[0].crop.offset)
        ctx_rgb = bl.crop_rgb(frame, ctx)
        looked, st.looked = (st.looked if st.looked and st.looked[0] == frame.index else None), None  # output_drifted's
        new_reference = self._add_reference(st, ctx_rgb, ctx, r, occluder, edge=None if looked is None else looked[2])
        occ = occluder_keep(frame, r, current[0])  # what this frame's own render left original
        st.now_behind = person_behind(self.two, st, ctx_rgb, ctx, r.landmarks[:, :2] - ctx.offset, occ, occluder)
        behind = note_behind(st)  # dlib's last distance stands only against the same kind of references
        if st.cursor is not None:  # a search spread over frames goes on
            return self._search(frame, tid, st, r, ctx, ctx_rgb, st.cursor[0], None, occ)
        margin = False  # a relinked face must pass with the search's margins at its first check (preset)
        if st.status == "pending" and st.preset is not None:
            (step, k, *level), margin = st.preset, st.preset_margin  # (a level: the one it was drawn at)
            st.preset = None
            self._apply(st, tid, step, k, *level)
            current = with_occluders(render_candidate(self.identity, self.restorer, frame, tid, r, st.level,
                                                      st.appearance), occ, OCCLUDED_MAX)
            st.status = "verified"
        if st.status == "verified" and current is not None:
            margin = margin or redrawn_small(st, r)  # (guard_policy.REDRAWN_LOOK_PX)
            img, pts = candidate_output(ctx_rgb, ctx, *current, surroundings_mode(st.step), occluder=st.occluder)
            dref, eref = self._refs(st)
            # EdgeFace on every view in one batch; the chip's embedding (view 0) is the output's
            sims, views = self.two.edge_similarity([(img, pts)], eref, embeddings=True,
                                                   chip_embeddings=None if looked is None else looked[1][None])
            s, output, face = float(sims[0]), views[0, 0], None
            if self.policy.output_unchanged(st, output, new_reference or behind):
                # the same new face as at the last full check, against the same references: dlib's
                # distance (measured then, with the margin) stands
                d = st.distance
                st.dlib_reused += 1
            else:
                # EdgeFace, FaceMesh, dlib: none over the limit
                face, s, d = seen_then_dlib(self.two, self.mesh, self.policy, img, pts, s,
                                            self.policy.edge_limit(search=margin), dref, eref)
                st.output_edge = output if d is not None and d >= self.policy.dlib_floor else None
            st.distance, st.similarity = d, s
            if self.policy.passes(d, s, search=margin) and (
                    face if face is not None else looks_like_face(self.mesh, img, pts, self.policy.face_tolerance)):
                st.min_distance = d if st.min_distance is None else min(st.min_distance, d)
                st.max_similarity = s if st.max_similarity is None else max(st.max_similarity, s)
                return current
            self.failed.add(tid)  # the face shown until now no longer holds (stream/retract.py)
            if self._own_seed(st, tid):  # a relinked face: another step of its seed would be another face too
                return self._search(frame, tid, st, r, ctx, ctx_rgb, 0, None, occ)
            start, first = st.step + 1, None  # escalate past the step that no longer holds
        else:
            start, first = 0, (current if st.status == "pending" else None)
        return self._search(frame, tid, st, r, ctx, ctx_rgb, start, first, occ)

    def _candidate(self, st: _Track, step: int, k: int, level: Optional[int] = None) -> tuple:
        """(noise, restorer level (unless given), appearance seed, sigma) of candidate k of a step: from the seed only."""
        mult, level = STEPS[step][0], behind_level(st, STEPS[step][1]) if level is None else int(level)
        if step == 0 and k == 0:
            return perturbation(st.seed, self.sigma), level, st.seed, self.sigma
        return (perturbation(_mix(st.seed, step, k), mult * self.sigma), level, _mix(st.seed, step, k, 1),
                mult * self.sigma)

    def _apply(self, st: _Track, tid: int, step: int, k: int, level: Optional[int] = None) -> None:
        noise, level, seed, sigma = self._candidate(st, step, k, level)
        self.identity.set_noise(tid, noise)
        st.step, st.level, st.appearance, st.sigma, st.choice = step, level, seed, sigma, (step, k, level)
        st.version += 1  # every way to "verified" goes through here

    def decision(self, track_id: int) -> Optional[tuple]:
        """The (step, candidate, restorer level) a verified track uses; nothing of the person is in it."""
        st = self._tracks.get(track_id)
        return st.choice if st is not None and st.status == "verified" else None

    def _own_seed(self, st: _Track, tid: int) -> bool:
        """A relinked track whose person's new face fails here goes on under the seed it drew itself
        (stream/relink.py `unlink`, through `exhausted`): True, the track reset to search from step 0."""
        seed = self.exhausted(tid) if self.exhausted is not None else None
        if seed is None:
            return False
        st.seed = st.appearance = seed
        st.sigma, st.step, st.choice, st.status = self.sigma, 0, None, "pending"
        self.identity.set_noise(tid, perturbation(seed, self.sigma))
        return True

    def preset(self, track_id: int, seed: int, choice: tuple, margin: bool = False) -> None:
        """Start a track from a choice made for the same person elsewhere (another segment of a
        batch run, same track seed): it is checked at the track's first frame like a re-check,
        and searched again only if it fails there, so segments keep one new face."""
        st = self._tracks.setdefault(track_id, _Track(seed=seed, appearance=seed, sigma=self.sigma))
        st.preset, st.preset_margin = tuple(int(c) for c in choice[:3]), margin

    def _search(self, frame, tid: int, st: _Track, r, ctx: Crop, ctx_rgb, start: int, first,
                occ=None) -> Optional[tuple]:
        """Try the candidates of the steps from `start` on, `batch` at a time (the pipeline's own
        render alone first), checked as the module docstring (2.) says; the first that passes
        everything is kept (early stop). With `per_frame` set, stops after that many candidates and
        resumes at the next frame (None is returned meanwhile: the face is obfuscated)."""
        p, limit = self.policy, self.policy.edge_limit(search=True)  # EdgeFace's most for a kept candidate
        if st.cursor is None:
            st.searches, st.best_tried, st.cursor = st.searches + 1, None, [start, 0, self.identity.noise_of(tid)]
        budget = p.per_frame if p.per_frame else 1 << 30
        dref, eref = self._refs(st)
        ahead = None  # the next batch, restored while this one is checked (stream/guard_ahead.py)
        try:
            while st.cursor[0] < len(STEPS):
                step, k, _ = st.cursor
                if k >= step_candidates(p, step):
                    st.cursor = [step + 1, 0, st.cursor[2]]
                    continue
                if budget <= 0:
                    return None  # go on at the next frame
                n = batch_size(p, step, k, first, budget)
                budget -= n
                st.cursor[1] = k + n
                if ahead is not None and (ahead.step, ahead.k, ahead.n) == (step, k, n):
                    batch, ahead = ahead, None
                    settle(self, tid, batch, keep=True)
                else:  # each candidate rendered, then restored on the worker while the next is rendered
                    batch = start_batch(self, st, tid, frame, r, step, k, n, first)
                nxt = next_batch(p, step, k, n, budget) if can_look_ahead(self) else None
                ahead = start_batch(self, st, tid, frame, r, *nxt, first, provisional=True) if nxt else None
                group = []
                for j, handle in batch.started:
                    cand = first if handle is None else with_occluders(finish_candidate(handle), occ, OCCLUDED_MAX)
                    if cand is not None:
                        group.append((j, cand, *candidate_output(ctx_rgb, ctx, *cand, surroundings_mode(step),
                                                                 occluder=st.occluder)))
                st.candidates += len(group)
                if not group:
                    continue
                # first pass: the chip of every candidate in one batch; all views for the ones left
                quick, chip_emb = self.two.edge_similarity([(img, pts) for _, _, img, pts in group], eref,
                                                           full=False, embeddings=True)
                left = np.flatnonzero(quick <= limit)  # the other views of these, one batch
                sims = quick.copy()
                sims[left] = self.two.edge_similarity([group[i][2:] for i in left], eref,
                                                      chip_embeddings=chip_emb[left, 0])
                for idx in np.argsort(sims, kind="stable"):
                    j, cand, img, pts = group[idx]
                    # the cheapest decisive checks first: FaceMesh (~10 ms) and EdgeFace at its points, dlib (~10 ms
                    # a view), the undone faces (~100 ms); a candidate refused by one is refused whatever the others say
                    _, s, d = seen_then_dlib(self.two, self.mesh, p, img, pts, float(sims[idx]), limit, dref, eref)
                    note_tried(p, st, d, s)
                    if not p.passes(d, s, search=True):
                        continue
                    undone = undone_by_edgeface(self.inverses, self.two, st, img, pts, ctx, eref, p.edge_max)
                    if undone is None or not undone_passes_dlib(self.two, st, undone, pts, dref, p.tau):
                        continue
                    st.cursor = None
                    self._apply(st, tid, step, j)
                    st.status, st.output_edge = "verified", chip_emb[idx, 0]  # the chip embedded in the quick pass
                    st.distance, st.similarity = d, s
                    st.min_distance = d if st.min_distance is None else min(st.min_distance, d)
                    st.max_similarity = s if st.max_similarity is None else max(st.max_similarity, s)
                    return cand
            # nothing passed: obfuscate (the track keeps the noise it had), with a mosaic checked too
            if st.cursor[2] is not None:
                self.identity.set_noise(tid, st.cursor[2])
            st.cursor = None
            if self._own_seed(st, tid):  # a relinked track: searched under the seed it drew itself first
                return self._search(frame, tid, st, r, ctx, ctx_rgb, 0, None, occ)
            st.status, st.step, st.choice = "obfuscated", len(STEPS), None
            st.version += 1
            self._verify_mosaic(st, ctx_rgb, r.landmarks[:, :2] - ctx.offset)
            return None
        finally:
            settle(self, tid, ahead, keep=False)
            if st.cursor is not None and st.cursor[2] is not None:
                self.identity.set_noise(tid, st.cursor[2])  # between frames the track keeps its noise

    def _verify_mosaic(self, st: _Track, ctx_rgb: np.ndarray, pts: np.ndarray) -> None:
        """The fallback is checked like a rendered face: the mosaic of this face (as `blend.obfuscate`
        draws it, here on RGB) must be among different people for both recognizers, on every view;
        if not, the next strength is tried (fewer blocks, then a solid fill). dlib's own threshold
        (0.6) applies in strict mode too: a face-less fill sits only ~0.61-0.74 from anyone."""
        st.mosaic, st.mosaic_check = verified_mosaic(self.two, ctx_rgb, pts, *self._refs(st, plain=True),
                                                     self.policy.edge_max, start=st.mosaic)

