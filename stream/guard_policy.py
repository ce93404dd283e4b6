"""The privacy guard's levels and what it keeps per track (stream/guard.py explains both).

Thresholds: dlib's L2 distance tau (same person under it) and EdgeFace's cosine edge_max (same
person over it: the calibrated percentiles of different-person pairs among the build portraits,
models/data/edgeface_calibration.json); a search accepts only with the margins on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ideud.models.edgeface import calibration as edge_calibration
from ideud.models.face_shape import FIT_MAX_PITCH, FIT_MAX_YAW

MODES = ("off", "balanced", "strict")

#: escalation steps: (sigma multiplier, restorer level). The last four are more seeded draws at the
#: prior restorer's widest shading scales rather than stronger mappings: for one person EdgeFace varies
#: more between draws of one step (0.19-0.5 on build portraits) than between steps; no level subtracts
#: the person's code (a mirror of the output undoes that: the inversion check refused ~2.5x more
#: candidates with it, for no fewer obfuscated faces); sigma x2.5 pinched and stretched faces visibly.
#: Then, for a track none of those clears, the four mildest again with the face's surroundings (hair,
#: ears, outline, background: `blend.surroundings`) blurred, then the same four with them filled flat, as
#: an obfuscated face's box is: the surroundings alone give many people away (EdgeFace over the search
#: limit for about half of the build portraits with the face oval filled, nothing of the face left; a
#: real other person's face swapped into the oval is still matched to the photo for 40 of 100 build
#: portraits), so for them no new face can pass with its surroundings; without their shapes it can, and
#: the face's expression, gaze and pose stay. Blurred, they keep their colours (tools/bench/bench_surroundings.py).
STEPS = ((1.0, 0), (1.0, 1), (2.0, 1), (2.0, 2), (1.0, 3), (2.0, 3), (1.0, 4), (2.0, 4),
         (1.0, 0), (1.0, 1), (2.0, 1), (2.0, 2), (1.0, 0), (1.0, 1), (2.0, 1), (2.0, 2))
BLUR_FROM = 8  # the steps from here on blur the surroundings
FILL_FROM = 12  # ... and from here on fill them flat
# candidates per step from BLUR_FROM on (Policy.candidates before): a face no step clears costs 48
# candidates as before the blurred steps (64 with 4 each: the 720p speed clip's face, which fails them
# all, took the guard from 27 % to 40 % of the run)
SURROUNDINGS_CANDIDATES = 2


def surroundings_mode(step: int) -> Optional[str]:
    """How step `step` draws the face's surroundings (`STEPS`): "blur", "fill", or None (as they are)."""
    if FILL_FROM <= step < len(STEPS):
        return "fill"
    return "blur" if BLUR_FROM <= step < len(STEPS) else None


def step_candidates(p: "Policy", step: int) -> int:
    """How many candidates step `step` draws (`SURROUNDINGS_CANDIDATES` where the surroundings change)."""
    return p.candidates if step < BLUR_FROM else min(p.candidates, SURROUNDINGS_CANDIDATES)


MAX_REFERENCES = 4  # embeddings of the person per track (different poses)
# a re-check keeps dlib's last distance when the output's EdgeFace chip is at least this close to the
# output fully checked last (genuine views of one photo: mean 0.92-0.995; different people: p99 0.214)
SAME_OUTPUT = 0.95
# ... or within SAME_OUTPUT_WIDE of it where that check's dlib distance was at least DLIB_PER_CHANGE x
# (1 - cosine) over tau: a rendered face's chip varies 0.90-0.95 from frame to frame without any change
# of the face (a moving head's resampling), and on 4,704 verified face-frames of five clips dlib's
# distance fell by more than 1.5 x (1 - cosine) once (by 0.004 more), never under tau
SAME_OUTPUT_WIDE = 0.90
DLIB_PER_CHANGE = 1.5
# after the ID code freezes, the output's drift is still looked at while yaw or pitch has moved over
# this share of the re-check's bar since the last check (a turning head drifts before it is re-checked)
LOOK_SHARE = 0.5
# ... and on the clock, once in this many face-frames however still the head: the output wanders with
# expression and light (EdgeFace 0.15-0.21 over 150 frames of one 360p face whose yaw and pitch held
# within 1 degree; the judge matched 8 of its frames after its last check at 0.173). A look is two
# EdgeFace chips in one batch (~7 ms).
LOOK_EVERY = 4
# ... while the last check was within this of edge_max (an output checked further from the person
# wandered less than this: 150-frame 360p tracks checked at 0.05-0.10 stayed under 0.14)
CLOCK_SLACK = 0.1
# ... and at the very next face-frame while the last check or look left less than this under the look's
# limit: hand_from_start at seed 2 (bench_footage.py), the hand leaving the mouth, was checked at 0.172
# and looked at 0.182 against 0.184, then written at 0.215-0.275 in the three frames before the next look
NEAR_LIMIT = 0.02
# ... and every face-frame while the face is smaller than this (FaceMesh's extent, px): at ~22 px a move
# of a pixel a frame alone took one output from EdgeFace 0.10 at its check to 0.20-0.24 (multi_person's
# far face, bench_footage.py seed 8), with no change of pose, size or occluder to re-check it
SMALL_FACE_PX = 32
# A face under this (FaceMesh's extent, px) drawn with its surroundings blurred or filled is mostly its
# own shading, which Step II keeps, and wanders between checks where no look saw it: hard_turns' ~40 px
# face, filled, sat at EdgeFace 0.217-0.235 at bench_footage.py's judge while the looks' chip read
# 0.07-0.14 (the check's 0.95-scale view, which takes in more of the fill and the outline, read 0.165 and
# up to 0.211); a walking face (approach clips, 49 px, blurred) was re-checked at 0.163 and written at
# 0.223. Such a face is looked at every face-frame, through that view too and by dlib (one chip each),
# and its re-checks and looks hold it to the search's margins (`redrawn_small`). At 96 px the 360p speed
# clip's faces came under it too: the guard's dlib chips at seeds 2 and 3 went from 69 / 62 to 119 / 263.
REDRAWN_LOOK_PX = 64


#: EdgeFace's calibrated "same person" cosine similarities (models/data/edgeface_calibration.json):
#: balanced = the 99th percentile of different-person pairs among the build portraits, strict = the 95th
EDGE_THRESHOLDS = edge_calibration()["thresholds"]


@dataclass(frozen=True)
class Policy:
    tau: float  # dlib: two faces closer than this (L2) are one person
    edge_max: float  # EdgeFace: two faces more similar than this (cosine) are one person
    candidates: int = 4  # per step (8 doubled the guard's time; more steps help more than more draws)
    margin: float = 0.04  # a search accepts dlib >= tau + margin: one check must hold between checks
    # ... and EdgeFace <= edge_max - edge_margin. 0.06, not 0.03: the written face-frame, landmarked on
    # its own as anyone holding it would, sits at the guard's chip +0.003 +- 0.018 (360p, 398 face-frames;
    # up to +0.05 through the encoder and the aligner alone), so outputs accepted at 0.18 drifted over
    # 0.214 between checks (tools/bench/bench_speed_privacy.py, docs/measured.md thirty-first session)
    edge_margin: float = 0.06
    # a re-check holds the output only with the dlib margin and this much room under edge_max (less: the
    # search goes on from the next step), and a look re-checks at a chip over edge_max - look_margin.
    # Passing re-checks without margins let outputs sit at 0.19-0.21 and over the limit between checks.
    look_margin: float = 0.03
    pose_delta: float = 15.0  # re-check when yaw or pitch moved this much (less for a face near a threshold)
    scale_delta: float = 1.5  # re-check when the face grew or shrank by this factor
    occluded_delta: float = 0.1  # re-check when this much more of the face is left original (occluders)
    # re-check when the face has this much more fine detail than at its last check: a face checked (or
    # searched) while motion blur hid the person is not checked sharp (hard_turns: a new face chosen in a
    # 13 px camera shake sat at EdgeFace 0.22-0.28 from the person once sharp, never re-checked)
    sharper_delta: float = 1.5
    retry_every: int = 150
    # ... or sooner, once yaw or pitch has moved `pose_delta` from where its last search failed and
    # at least this many frames have passed (`retry_due`: a head that turned away and back)
    retry_after_turn: int = 8
    # ... or once a search that failed with `occluded_delta` of the face covered (a microphone, a hand
    # the occlusion stage found) has had no occluder in front for this many face-frames in a row
    retry_after_uncover: int = 3
    face_tolerance: float = 0.2  # "still a face": FaceMesh finds one, within this share of the face size
    batch: int = 4  # candidates rendered, then embedded by EdgeFace in one batch (every view of each)
    ahead: bool = True  # the next batch is restored while this one is checked (stream/guard_ahead.py)
    # candidates tried per frame during a search; None: the whole search in the frame that needs it
    # (files). A number spreads it over frames, the face obfuscated meanwhile (live streams).
    per_frame: Optional[int] = None

    @property
    def dlib_floor(self) -> float:
        """The dlib distance a face must reach to pass: tau with the margin, a search's and a re-check's alike."""
        return self.tau + self.margin

    def edge_limit(self, search: bool) -> float:
        """The EdgeFace similarity a face may reach: edge_margin under edge_max for a candidate a search
        would keep (`search`), look_margin under it for an output a re-check holds or a look lets pass."""
        return self.edge_max - (self.edge_margin if search else self.look_margin)

    def passes(self, d: Optional[float], s: float, search: bool) -> bool:
        """Both recognizers place the face among different people with room: the dlib margin, and
        EdgeFace under `edge_limit(search)`."""
        return d is not None and d >= self.dlib_floor and s <= self.edge_limit(search)

    def output_unchanged(self, st: "_Track", output: np.ndarray, new_reference: bool) -> bool:
        """A re-check may keep the last dlib distance when nothing it measured has changed: no new
        reference of the person, that distance had the search's margin, and the output face is
        the same new face for EdgeFace (its chip's cosine to the last fully checked output at
        least SAME_OUTPUT, as a re-crop of one photo, or a little less: `same_output`)."""
        return (not new_reference and st.output_edge is not None and st.distance is not None
                and st.distance >= self.dlib_floor
                and same_output(float(output @ st.output_edge), st.distance, self.tau))


POLICIES = {"balanced": Policy(tau=0.6, edge_max=EDGE_THRESHOLDS["balanced"]),
            "strict": Policy(tau=0.7, margin=0.05, edge_max=EDGE_THRESHOLDS["strict"], pose_delta=10.0)}


@dataclass
class _Track:
    seed: int
    status: str = "pending"  # pending | verified | obfuscated
    refs: list = field(default_factory=list)  # the person's dlib embeddings: memory only
    edge_refs: list = field(default_factory=list)  # the person's EdgeFace embeddings: memory only
    now: Optional[tuple] = None  # the person at the frame being checked (dlib, EdgeFace): memory only
    # ... with what its output shares because something is in front painted in (guard_occluded_refs): memory only
    now_behind: Optional[tuple] = None
    checked_behind: bool = False  # the last full check measured it against the person behind an occluder
    checks_behind: int = 0  # ... full checks that did
    checked_occluder: bool = False  # an occluder was found in front at the last full check
    ref_poses: list = field(default_factory=list)
    # beside each reference: the person with that frame's occluder greyed, or None (guard_occluded_refs.py): memory only
    masked_refs: list = field(default_factory=list)
    step: int = 0
    level: int = 0
    appearance: int = 0  # seed handed to the restorer
    sigma: float = 0.0
    distance: Optional[float] = None  # dlib, worst view, at the last check (None: not run, EdgeFace failed first)
    min_distance: Optional[float] = None  # lowest dlib distance measured at a check that passed
    similarity: Optional[float] = None  # EdgeFace, worst view, at the last check
    max_similarity: Optional[float] = None  # highest EdgeFace similarity measured at a check that passed
    best_tried: Optional[tuple] = None  # (dlib, EdgeFace) of the last search's closest-to-passing candidate
    since_check: int = 0
    since_look: int = 0  # face-frames since the output was last looked at or checked (`look_due`)
    look_similarity: Optional[float] = None  # EdgeFace, the chip against the person, at the last look
    last_pose: Optional[tuple] = None
    last_size: Optional[float] = None
    last_occluded: float = 0.0  # occluded share of the face at the last check
    # face-frames in a row obfuscated with no occluder found in front (`retry_due`; `saw_obfuscated`)
    clear_frames: int = 0
    detail: Optional[float] = None  # the face's fine detail (guard_views.face_detail): this frame's
    checked_detail: Optional[float] = None  # ... and at the last check
    frozen_seen: bool = False
    provisional: bool = False  # verified at a frame that was not near-frontal
    choice: Optional[tuple] = None  # (step, candidate, restorer level) in use: no identity in it, shareable (batch)
    preset: Optional[tuple] = None  # a choice made elsewhere for this track, to check first
    preset_margin: bool = False  # ... with the search's margins (a returning person's face: stream/relink.py)
    cursor: Optional[list] = None  # a search under way: [step, candidate, noise before]
    version: int = 0  # bumped whenever the output parameters or the status change
    refreshed: int = 0  # faces rendered again because they were rendered under an older version
    checks: int = 0
    searches: int = 0
    candidates: int = 0
    fallback_frames: int = 0
    fallback_why: dict = field(default_factory=dict)  # why its frames were obfuscated: counts
    mosaic: int = 0  # obfuscation strength (blend.obfuscate) verified for this face
    mosaic_check: Optional[tuple] = None  # (dlib, EdgeFace) of that mosaic against the person
    inversion: Optional[tuple] = None  # (dlib, EdgeFace) of the kept candidate undone, worst inverse
    inversion_checks: int = 0
    inversion_refused: int = 0  # candidates that passed forward but whose undone face matched
    output_edge: Optional[object] = None  # EdgeFace of the output face at the last full check (the fake face)
    dlib_reused: int = 0  # re-checks that kept the last dlib distance (the output had not changed)
    inversion_sims: Optional[object] = None  # EdgeFace of each undone face of the candidate being checked
    looked: Optional[tuple] = None  # (frame index, output chip, person chip): EdgeFace of a look, memory only
    occluder: Optional[tuple] = None  # (crop, mask) of what is in front of the face in the frame under review

    @property
    def surroundings(self) -> Optional[str]:
        """How its new face's surroundings are drawn (`surroundings_mode`): "blur", "fill" or None."""
        return surroundings_mode(self.step) if self.status == "verified" else None

    @property
    def surroundings_filled(self) -> bool:
        """Its new face is drawn over its surroundings filled flat (`STEPS`)."""
        return self.surroundings == "fill"
    seconds: float = 0.0


def track_report(st: _Track, policy: Policy) -> dict:
    """What the report holds of a track: numbers, steps and counts; never an embedding or a code."""
    rnd = (lambda v: None if v is None else round(float(v), 3))
    best = None if st.best_tried is None else {"dlib": rnd(st.best_tried[0]), "edgeface": rnd(st.best_tried[1])}
    return {"status": st.status, "distance": rnd(st.distance), "min_distance": rnd(st.min_distance),
            "edgeface": rnd(st.similarity), "max_edgeface": rnd(st.max_similarity),
            "best_candidate": best,
            "tau": policy.tau, "edgeface_max": policy.edge_max,
            "step": st.step, "level": st.level, "sigma": round(st.sigma, 4),
            "surroundings_filled": st.surroundings_filled, "surroundings_blurred": st.surroundings == "blur",
            "checks": st.checks, "checks_behind_occluder": st.checks_behind, "searches": st.searches,
            "candidates": st.candidates,
            "fallback_frames": st.fallback_frames, "fallback_why": dict(st.fallback_why),
            "mosaic_strength": st.mosaic,
            "inversion": {"checks": st.inversion_checks, "refused": st.inversion_refused,
                          "dlib": rnd(st.inversion[0]) if st.inversion else None,
                          "edgeface": rnd(st.inversion[1]) if st.inversion else None},
            "mosaic_check": None if st.mosaic_check is None else
            {"dlib": rnd(st.mosaic_check[0]), "edgeface": rnd(st.mosaic_check[1])},
            "refreshed": st.refreshed, "dlib_reused": st.dlib_reused, "seconds": round(st.seconds, 3),
            # (step, candidate, restorer level) of a verified track: nothing of the person, shareable (batch segments)
            "choice": list(st.choice) if st.status == "verified" and st.choice is not None else None}


def same_output(cosine: float, distance: Optional[float], tau: float) -> bool:
    """The output is still the new face last fully checked (dlib's distance then still stands): its
    EdgeFace chip's `cosine` to that one, that check's dlib `distance`."""
    return cosine >= SAME_OUTPUT or (cosine >= SAME_OUTPUT_WIDE and distance is not None
                                     and distance >= tau + DLIB_PER_CHANGE * (1.0 - cosine))


def pose_moved_since_check(p: Policy, st: _Track, r, share: float = 1.0) -> bool:
    """Yaw or pitch moved over `share` of the re-check's bar since the last check (the bar is
    `pose_delta`, down to a third of it for a face within 0.2 of tau or 0.1 of edge_max)."""
    if st.last_pose is None:
        return False
    slack = 1.0
    if st.distance is not None:
        slack = min(slack, (st.distance - p.tau) / 0.2)
    if st.similarity is not None:
        slack = min(slack, (p.edge_max - st.similarity) / 0.1)
    delta = share * p.pose_delta * float(np.clip(slack, 1 / 3, 1.0))
    return abs(r.yaw - st.last_pose[0]) > delta or abs(r.pitch - st.last_pose[1]) > delta


def sharper_since_check(p: Policy, st: _Track) -> bool:
    """The face has `sharper_delta` times the fine detail it had at its last check (blur gone)."""
    return st.detail is not None and st.checked_detail is not None and st.detail > p.sharper_delta * st.checked_detail


def look_due(p: Policy, st: _Track, r, frozen: bool) -> bool:
    """The output's drift is looked at (guard_views.output_drifted) this face-frame: until the ID
    code freezes, while the head turns (LOOK_SHARE of the re-check's bar), once in LOOK_EVERY
    face-frames while the last check was within CLOCK_SLACK of edge_max, and every face-frame while
    the last check or look (whichever came later) left less than NEAR_LIMIT under the look's limit,
    while the face is under SMALL_FACE_PX, or while it is `redrawn_small`."""
    last = st.look_similarity if st.look_similarity is not None and st.since_look < st.since_check else st.similarity
    return (not frozen or pose_moved_since_check(p, st, r, LOOK_SHARE)
            or (last is not None and last > p.edge_limit(search=False) - NEAR_LIMIT)
            or (st.since_look >= LOOK_EVERY and (st.similarity is None or st.similarity > p.edge_max - CLOCK_SLACK))
            or face_size(r) < SMALL_FACE_PX or redrawn_small(st, r))


def redrawn_small(st: _Track, r) -> bool:
    """The face is under REDRAWN_LOOK_PX and drawn with its surroundings blurred or filled: looked at
    every face-frame, more closely (guard_views.output_drifted), and held to the search's margins."""
    return surroundings_mode(st.step) is not None and face_size(r) < REDRAWN_LOOK_PX


def face_size(r) -> float:
    """The face's extent in px (its landmarks' larger side)."""
    lm = np.asarray(r.landmarks)[:, :2]
    return float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]), 1.0))


def resized_since_check(p: Policy, st: _Track, r) -> bool:
    """The face grew or shrank by more than `scale_delta` since its last check (or failed search)."""
    if st.last_size is None:
        return False
    size = face_size(r)
    return max(size / st.last_size, st.last_size / size) > p.scale_delta


def retry_due(p: Policy, st: _Track, r, frozen: bool = False) -> bool:
    """An obfuscated track is searched again (at a good frame: the caller's test) every
    `retry_every` frames, or once its pose has moved `pose_delta` from the pose of its last failed
    search, `retry_after_turn` frames on: on change, not only on the clock. A head that turned to
    profile and failed there is searched again when it faces the camera (every candidate checked in
    full, as in any search); one that failed facing the camera is not searched again for jitter. One
    that failed behind an occluder is searched again once that has gone (`retry_after_uncover`), one
    that has grown or shrunk by `scale_delta` since (a person walking towards or away from the camera),
    and one whose search came before its ID code froze (`frozen`: it is now), once."""
    if st.since_check >= p.retry_every:
        return True
    if st.last_pose is None or st.since_check < p.retry_after_turn:
        return False
    if frozen and not st.frozen_seen:
        return True  # searched before the ID code froze (a track's first search always is): once more frozen
    if st.last_occluded >= p.occluded_delta and st.clear_frames >= p.retry_after_uncover:
        return True  # the occluder it failed behind is gone (the reference had it too: both matched it)
    if resized_since_check(p, st, r):
        return True  # come nearer or gone further: the recognizers see another face (and a search more steps)
    return abs(r.yaw - st.last_pose[0]) >= p.pose_delta or abs(r.pitch - st.last_pose[1]) >= p.pose_delta


def occluder_changed_since_check(st: _Track) -> bool:
    """What is in front of the face (`st.occluder`, this frame's) changed since the last full check
    in a way that check did not see: it was measured against the person behind an occluder that has
    gone (its references were others), or its surroundings are blurred or filled and an occluder came
    or went (next to a kept occluder they take its colour: one the stage misread, the person's own ear,
    spread its skin over the blurred outline in one frame, multi_person strict seed 1 frame 54,
    EdgeFace 0.166 -> 0.223 at bench_footage.py's judge, with no check in between)."""
    return ((st.checked_behind and st.occluder is None)
            or (st.surroundings is not None and (st.occluder is not None) != st.checked_occluder))


def note_tried(p: Policy, st: _Track, d: Optional[float], s: float) -> None:
    """Keep the candidate closest to passing (the smaller of its two slacks) for the report."""

    def slack(c):  # no dlib distance (EdgeFace stopped it): ranked by EdgeFace, at most -1
        edge = (p.edge_max - c[1]) / 0.1
        return min(edge, 0.0) - 1.0 if c[0] is None else min((c[0] - p.tau) / 0.2, edge)
    if st.best_tried is None or slack((d, s)) > slack(st.best_tried):
        st.best_tried = (d, s)


def count_fallback(st: "_Track", why: str) -> None:
    """One more frame of the track obfuscated, and why (its report)."""
    st.fallback_frames += 1
    st.fallback_why[why] = st.fallback_why.get(why, 0) + 1


def near_frontal(r) -> bool:
    """Within the pose range the ID fit uses: a search or a check there is a track's verification."""
    return abs(r.yaw) <= FIT_MAX_YAW and abs(r.pitch) <= FIT_MAX_PITCH
