"""The privacy guard: measure, per track, that the output face no longer matches the person.

`--privacy off|balanced|strict` (default balanced). The guard embeds faces
with dlib's ResNet (models/recognizer.py: CPU, ~75-115 ms per face) and
calls two faces the same person when their distance is under tau:

    balanced  tau 0.6 (dlib's own same-person threshold), a search accepts 0.64,
              re-check every 12 frames
    strict    tau 0.7, a search accepts 0.75, re-check every 6 frames

Per track
---------
1. Verification. At the track's first frame the guard embeds the person
   and searches for a new face (`search`); no frame of the track is handed
   back before that. If that frame is not a good one (near-frontal: |yaw| <=
   25, |pitch| <= 20 degrees, as the ID fit uses), the track is checked again
   at its first good frame, with the person's embedding from there.
   Cost: one embedding is ~75-115 ms here, a step of 8 candidates ~1 s (render,
   restore, embed, FaceMesh check each). By default the search blocks the frame
   that needs it, once per track: obfuscating the track's frames until a check
   in the background is done costs the same recogniser time, shows every new
   face pixelated for as long (a step = ~25 frames at 25 fps), and needs a
   second recogniser thread next to a single-threaded identity state. Where
   latency matters more than those frames (live streams), `Policy.per_frame`
   spreads the search over frames, `per_frame` candidates each, the face
   obfuscated until it is verified.
2. Search, in escalation steps (`STEPS`), each trying `candidates`
   perturbations derived from the track seed (candidate 0 of step 0 is the
   track's own): re-render (identity.set_noise, the restorer at the step's
   `RestoreItem.level`, the appearance seed), paste into the frame around the
   face, embed, and keep the candidate farthest from the person that still
   looks like a face (FaceMesh finds it where it was drawn). The z' = clip(z +
   n, -1, 1) of the identity stage is what every candidate renders, so every
   kept one respects the clip. The first step whose best candidate reaches
   tau + margin wins:

       step 0  sigma x1, restorer level 0
       step 1  sigma x1, restorer level 1 (more of the face from the restorer)
       step 2  sigma x2, restorer level 1
       step 3  sigma x2, restorer level 2
       step 4  sigma x2, restorer level 3 (the bank restorer adds glasses)
       else    the track is obfuscated (a new search every `retry_every`
               frames, at a good frame)

   A restorer without levels (classic, gan) renders the same face at every
   level, so for it the steps only vary and strengthen the geometry.

3. Re-check: every `recheck_every` frames for a face 0.2 or more past tau,
   more often the closer it is (every frame just past tau: from frame to
   frame the distance moves by ~0.05), when yaw or pitch moved more than
   `pose_delta` degrees since the last check, and once when the ID code
   freezes. The output must be at least tau from the person at this frame
   and from the references kept from earlier ones (up to 4 poses); if not,
   the search goes on with the next step (a new face for the track: the old
   one no longer holds) and that frame is not handed back until a candidate
   passes (or it is obfuscated).

Privacy of the guard itself: the person's embeddings live in this object's
memory only and are dropped with the track (`drop`). The report holds
distances, levels, counts and timings; no embedding, no ID code, no crop.
Which candidate was kept depends on the face (a few bits); the candidates
themselves are drawn from the track seed, not from the face.

Batch runs that split a video: `decision(track)` is the (step, candidate)
a track uses and `preset(track, seed, choice)` starts the same person's
track in another segment from it (checked like a re-check), so that the
segments keep one new face.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.models.recognizer import FACEMESH_POINTS5, FaceRecognizer, default_recognizer
from ideud.stream import blend as bl
from ideud.stream.identity import FIT_MAX_PITCH, FIT_MAX_YAW, perturbation
from ideud.stream.render import Crop, crop_for, render
from ideud.stream.types import RestoreItem

MODES = ("off", "balanced", "strict")

#: escalation steps: (sigma multiplier, restorer level)
STEPS = ((1.0, 0), (1.0, 1), (2.0, 1), (2.0, 2), (2.0, 3))
MAX_REFERENCES = 4  # embeddings of the person per track (different poses)
CONTEXT = 0.65  # the checked region: the face box grown by this much each side (FaceMesh needs ~0.6)


@dataclass(frozen=True)
class Policy:
    tau: float
    candidates: int = 8
    margin: float = 0.04  # a search accepts tau + margin: one check must hold between checks
    recheck_every: int = 12
    pose_delta: float = 15.0
    retry_every: int = 150
    face_tolerance: float = 0.2  # "still a face": FaceMesh finds one, within this share of the face size
    # candidates tried per frame during a search; None: the whole search in the frame that needs it
    # (files). A number spreads it over frames, the face obfuscated meanwhile (live streams).
    per_frame: Optional[int] = None


POLICIES = {"balanced": Policy(tau=0.6), "strict": Policy(tau=0.7, margin=0.05, recheck_every=6)}


@dataclass
class _Track:
    seed: int
    status: str = "pending"  # pending | verified | obfuscated
    refs: list = field(default_factory=list)  # the person's embeddings: memory only
    now: Optional[np.ndarray] = None  # the person at the frame being checked: memory only
    ref_poses: list = field(default_factory=list)
    step: int = 0
    level: int = 0
    appearance: int = 0  # seed handed to the restorer
    sigma: float = 0.0
    distance: Optional[float] = None  # at the last check
    min_distance: Optional[float] = None  # lowest distance measured at a check that passed
    best_tried: Optional[float] = None  # farthest candidate of the last search (obfuscated tracks: how far it got)
    frames: int = 0
    since_check: int = 0
    last_pose: Optional[tuple] = None
    frozen_seen: bool = False
    provisional: bool = False  # verified at a frame that was not near-frontal
    choice: Optional[tuple] = None  # (step, candidate) in use: no identity in it, shareable (batch)
    preset: Optional[tuple] = None  # a choice made elsewhere for this track, to check first
    cursor: Optional[list] = None  # a search under way: [step, candidate, best, noise before]
    version: int = 0  # bumped whenever the output parameters or the status change
    refreshed: int = 0  # faces rendered again because they were rendered under an older version
    checks: int = 0
    searches: int = 0
    candidates: int = 0
    fallback_frames: int = 0
    seconds: float = 0.0


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence, stable across runs)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
               .astype(np.uint64) @ np.array([1 << 31, 1], np.uint64)) & ((1 << 63) - 1)


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
        self.rec = recognizer or default_recognizer()
        self._tracks: dict[int, _Track] = {}
        self._done: dict[int, dict] = {}  # reports of dropped tracks (numbers only)
        self.embeds = 0
        self.embed_s = 0.0

    @classmethod
    def create(cls, mode: str, **kw) -> Optional["PrivacyGuard"]:
        if mode == "off":
            return None
        return cls(mode, **kw)

    # ------------------------------------------------------------------ pipeline hooks
    def admit(self, track, rendering) -> Optional[str]:
        """Before rendering: a fallback reason if this face must be obfuscated now, else None."""
        st = self._tracks.get(track.id)
        if st is None:
            st = self._tracks[track.id] = _Track(seed=track.seed, appearance=track.seed, sigma=self.sigma)
        st.frames += 1
        st.since_check += 1
        if st.status == "obfuscated" and not (_good(rendering) and st.since_check >= self.policy.retry_every):
            st.fallback_frames += 1
            return "privacy"
        return None

    def restore_params(self, track_id: int) -> tuple[int, int]:
        """(level, seed) for this track's RestoreItem."""
        st = self._tracks[track_id]
        return st.level, st.appearance

    def review(self, frame, entries: list) -> list:
        """After restore, before paste. `entries`: [(job, rendered, item, restored_rgb)].

        Returns one entry per input: the same or a re-rendered one that passed,
        or None where the face must be obfuscated. The frame is not modified.
        """
        out = []
        for job, rendered, item, face_rgb in entries:
            tr = job["track"]
            st = self._tracks[tr.id]
            r = job["render"]
            if not self._due(st, tr.id, r):
                out.append((job, rendered, item, face_rgb))
                continue
            t0 = time.perf_counter()
            try:
                res = self._check(frame, tr.id, st, r, (rendered, item, face_rgb))
            finally:
                st.seconds += time.perf_counter() - t0
            if res is None:
                st.fallback_frames += 1
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
        st = self._tracks.get(job["track"].id)
        if st is None:
            return None
        res = None
        if st.status == "verified" and st.cursor is None:
            st.refreshed += 1
            res = self._render(frame, job["track"].id, job["render"], st.level, st.appearance)
        if res is None:
            st.fallback_frames += 1
            return None
        return (job, *res)

    def drop(self, track_id: int) -> None:
        """Forget a finished track's embeddings; keep its numbers for the report."""
        st = self._tracks.pop(track_id, None)
        if st is not None:
            st.refs.clear()
            st.now = None
            self._done[track_id] = self._track_report(st)

    def track_report(self, track_id: int) -> Optional[dict]:
        st = self._tracks.get(track_id)
        return self._track_report(st) if st is not None else self._done.get(track_id)

    def summary(self) -> dict:
        reps = [self._track_report(s) for s in self._tracks.values()] + list(self._done.values())
        return {"mode": self.mode, "tau": self.policy.tau, "margin": self.policy.margin,
                "tracks": len(reps),
                "tracks_verified": sum(r["status"] == "verified" for r in reps),
                "tracks_obfuscated": sum(r["status"] == "obfuscated" for r in reps),
                "embeds": self.embeds, "embed_ms_mean": round(1000 * self.embed_s / max(self.embeds, 1), 1)}

    # ------------------------------------------------------------------ internals
    def _track_report(self, st: _Track) -> dict:
        rnd = (lambda v: None if v is None else round(float(v), 3))
        return {"status": st.status, "distance": rnd(st.distance), "min_distance": rnd(st.min_distance),
                "best_candidate": rnd(st.best_tried),
                "tau": self.policy.tau, "step": st.step, "level": st.level, "sigma": round(st.sigma, 4),
                "checks": st.checks, "searches": st.searches, "candidates": st.candidates,
                "fallback_frames": st.fallback_frames, "refreshed": st.refreshed, "seconds": round(st.seconds, 3),
                # (step, candidate) of a verified track: nothing of the person, shareable (batch segments)
                "choice": list(st.choice) if st.status == "verified" and st.choice is not None else None}

    def _due(self, st: _Track, tid: int, r) -> bool:
        if st.status != "verified" or st.cursor is not None:
            return True  # pending, a search under way, or an obfuscated track's retry
        p = self.policy
        frozen = self.identity.is_frozen(tid)
        pose_moved = st.last_pose is not None and (abs(r.yaw - st.last_pose[0]) > p.pose_delta
                                                   or abs(r.pitch - st.last_pose[1]) > p.pose_delta)
        return (st.since_check >= self._interval(st) or pose_moved or (frozen and not st.frozen_seen)
                or (st.provisional and _good(r)))

    def _interval(self, st: _Track) -> int:
        """Frames between re-checks: `recheck_every` for a face 0.2 or more past tau, down to every
        frame for one just past it (the distance moves by ~0.05 from frame to frame)."""
        p = self.policy
        slack = 0.0 if st.distance is None else st.distance - p.tau
        return int(np.clip(round(p.recheck_every * (slack / 0.2) ** 2), 1, p.recheck_every))

    def _embed(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's embedding, aligned on the mesh's 5 points (within ~0.05 of dlib's own 5-point
        fit on the PASCAL faces; a box-seeded dlib fit was further from ideud-eval's numbers)."""
        t = time.perf_counter()
        e = self.rec.embed(rgb, points5=points[list(FACEMESH_POINTS5)])
        self.embed_s += time.perf_counter() - t
        self.embeds += 1
        return e

    @staticmethod
    def _context(frame, r, target) -> Crop:
        pts = np.vstack([r.landmarks[:, :2], target])
        lo, hi = pts.min(0), pts.max(0)
        grow = CONTEXT * (hi - lo)
        x0, y0 = (np.floor(lo - grow).astype(int) // 2) * 2
        x1, y1 = np.ceil(hi + grow).astype(int)
        return Crop(max(0, int(x0)), max(0, int(y0)), min(frame.width, int(x1)), min(frame.height, int(y1)))

    def _distance(self, st: _Track, ctx_rgb: np.ndarray, ctx: Crop, rendered, item, face_rgb) -> float:
        """Distance of one candidate output (pasted into the context) to the person's references."""
        img = _paste(ctx_rgb, ctx, rendered.crop, bl.match_colour(face_rgb, item.image, rendered.mask), rendered.mask)
        e = self._embed(img, rendered.target + rendered.crop.offset - ctx.offset)
        d = min(FaceRecognizer.distance(e, ref) for ref in st.refs + [st.now])
        if not self._looks_like_face(img, rendered.target + rendered.crop.offset - ctx.offset):
            return -1.0
        return d

    def _looks_like_face(self, img: np.ndarray, target: np.ndarray) -> bool:
        if self.mesh is None:
            return True
        lm = self.mesh(img, fm.roi_from_landmarks(np.c_[target, np.zeros(len(target))]))
        if lm is None:
            return False
        size = float(max(np.ptp(target[:, 0]), np.ptp(target[:, 1])))
        return float(np.median(np.linalg.norm(lm[:, :2] - target, axis=1))) <= self.policy.face_tolerance * size

    def _add_reference(self, st: _Track, ctx_rgb: np.ndarray, ctx: Crop, r) -> None:
        """The person at this frame (what the output is compared with now); kept as a
        reference for later checks if no kept one has about this pose."""
        st.now = self._embed(ctx_rgb, r.landmarks[:, :2] - ctx.offset)
        pose = (r.yaw, r.pitch)
        if st.refs and min(max(abs(pose[0] - q[0]), abs(pose[1] - q[1])) for q in st.ref_poses) < 5.0:
            return
        st.refs.append(st.now)
        st.ref_poses.append(pose)
        if len(st.refs) > MAX_REFERENCES:
            st.refs.pop(0)
            st.ref_poses.pop(0)

    def _check(self, frame, tid: int, st: _Track, r, current) -> Optional[tuple]:
        st.checks += 1
        st.since_check = 0
        st.last_pose = (r.yaw, r.pitch)
        st.frozen_seen = self.identity.is_frozen(tid)
        if _good(r):
            st.provisional = False
        elif st.status != "verified":
            st.provisional = True  # check again at the first near-frontal frame
        ctx = self._context(frame, r, current[0].target + current[0].crop.offset)
        ctx_rgb = bl.crop_rgb(frame, ctx)
        self._add_reference(st, ctx_rgb, ctx, r)
        if st.cursor is not None:  # a search spread over frames goes on
            return self._search(frame, tid, st, r, ctx, ctx_rgb, st.cursor[0], None)
        if st.status == "pending" and st.preset is not None:
            step, k = st.preset
            st.preset = None
            self._apply(st, tid, step, k)
            current = self._render(frame, tid, r, st.level, st.appearance)
            st.status = "verified"
        if st.status == "verified":
            d = self._distance(st, ctx_rgb, ctx, *current)
            if d >= self.policy.tau:
                st.distance = d
                st.min_distance = d if st.min_distance is None else min(st.min_distance, d)
                return current
            start, first = st.step + 1, None  # escalate past the step that no longer holds
        else:
            start, first = 0, (current if st.status == "pending" else None)
        return self._search(frame, tid, st, r, ctx, ctx_rgb, start, first)

    def _candidate(self, st: _Track, step: int, k: int) -> tuple:
        """(noise, restorer level, appearance seed, sigma) of candidate k of a step: from the track seed only."""
        mult, level = STEPS[step]
        if step == 0 and k == 0:
            return perturbation(st.seed, self.sigma), level, st.seed, self.sigma
        return (perturbation(_mix(st.seed, step, k), mult * self.sigma), level, _mix(st.seed, step, k, 1),
                mult * self.sigma)

    def _apply(self, st: _Track, tid: int, step: int, k: int) -> None:
        noise, level, seed, sigma = self._candidate(st, step, k)
        self.identity.set_noise(tid, noise)
        st.step, st.level, st.appearance, st.sigma, st.choice = step, level, seed, sigma, (step, k)
        st.version += 1  # every way to "verified" goes through here

    def decision(self, track_id: int) -> Optional[tuple]:
        """The (step, candidate) a verified track uses; nothing of the person is in it."""
        st = self._tracks.get(track_id)
        return st.choice if st is not None and st.status == "verified" else None

    def preset(self, track_id: int, seed: int, choice: tuple) -> None:
        """Start a track from a choice made for the same person elsewhere (another segment of a
        batch run, same track seed): it is checked at the track's first frame like a re-check,
        and searched again only if it fails there, so segments keep one new face."""
        st = self._tracks.setdefault(track_id, _Track(seed=seed, appearance=seed, sigma=self.sigma))
        st.preset = (int(choice[0]), int(choice[1]))

    def _search(self, frame, tid: int, st: _Track, r, ctx: Crop, ctx_rgb, start: int, first) -> Optional[tuple]:
        """Try the candidates of the steps from `start` on; the best of the first step that reaches
        tau + margin is kept. With `per_frame` set, stops after that many candidates and resumes at
        the next frame (None is returned meanwhile: the face is obfuscated)."""
        p = self.policy
        if st.cursor is None:
            st.searches += 1
            st.best_tried = None
            st.cursor = [start, 0, None, self.identity.noise_of(tid)]
        budget = p.per_frame if p.per_frame else 1 << 30
        try:
            while st.cursor[0] < len(STEPS):
                step, k, best, _ = st.cursor
                if k < p.candidates:
                    if budget <= 0:
                        return None  # go on at the next frame
                    budget -= 1
                    st.cursor[1] = k + 1
                    noise, level, seed, sigma = self._candidate(st, step, k)
                    if first is not None and step == 0 and k == 0:
                        cand = first  # already rendered by the pipeline with the track's own noise and seed
                    else:
                        self.identity.set_noise(tid, noise)
                        cand = self._render(frame, tid, r, level, seed)
                    if cand is None:
                        continue
                    st.candidates += 1
                    d = self._distance(st, ctx_rgb, ctx, *cand)
                    st.best_tried = d if st.best_tried is None else max(st.best_tried, d)
                    if best is None or d > best[0]:
                        st.cursor[2] = (d, k, cand, frame.index)
                    continue
                if best is not None and best[0] >= p.tau + p.margin:
                    d, k, cand, at = best
                    st.cursor = None
                    self._apply(st, tid, step, k)
                    if at != frame.index:  # found over several frames: draw it on this one
                        cand = self._render(frame, tid, r, st.level, st.appearance)
                    st.status = "verified"
                    st.distance = d
                    st.min_distance = d if st.min_distance is None else min(st.min_distance, d)
                    return cand
                st.cursor = [step + 1, 0, None, st.cursor[3]]
            # nothing reached tau: obfuscate (the track keeps the noise it had)
            if st.cursor[3] is not None:
                self.identity.set_noise(tid, st.cursor[3])
            st.cursor = None
            st.status, st.step, st.choice = "obfuscated", len(STEPS), None
            st.version += 1
            return None
        finally:
            if st.cursor is not None and st.cursor[3] is not None:
                self.identity.set_noise(tid, st.cursor[3])  # between frames the track keeps its noise

    def _render(self, frame, tid: int, r, level: int, seed: int) -> Optional[tuple]:
        target = self.identity.target(tid, r)
        crop = crop_for(r.landmarks, target, frame.width, frame.height)
        original = bl.crop_rgb(frame, crop)
        out = render(original, crop, r.landmarks, target, r.visible)
        item = RestoreItem(image=out.image, original=original, mask=out.mask, landmarks=out.target,
                           track_id=tid, seed=seed, level=level)
        restored = self.restorer.restore([item])
        if len(restored) != 1:
            return None
        return out, item, restored[0]


def _good(r) -> bool:
    return abs(r.yaw) <= FIT_MAX_YAW and abs(r.pitch) <= FIT_MAX_PITCH


def _paste(ctx_rgb: np.ndarray, ctx: Crop, crop: Crop, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The context with one face crop blended in (RGB, float mask), as the blend stage would."""
    img = ctx_rgb.copy()
    x0, y0 = max(crop.x0, ctx.x0), max(crop.y0, ctx.y0)
    x1, y1 = min(crop.x1, ctx.x1), min(crop.y1, ctx.y1)
    if x1 <= x0 or y1 <= y0:
        return img
    a = img[y0 - ctx.y0:y1 - ctx.y0, x0 - ctx.x0:x1 - ctx.x0].astype(np.float32)
    b = rgb[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0].astype(np.float32)
    m = mask[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0, None]
    img[y0 - ctx.y0:y1 - ctx.y0, x0 - ctx.x0:x1 - ctx.x0] = np.clip(a + m * (b - a) + 0.5, 0, 255).astype(np.uint8)
    return img
