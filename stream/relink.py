"""The same person gets the same new face again: a track that starts on someone this run has seen
before (who left the picture, was hidden for longer than the tracker waits, or is seen again after
a scene cut, which ends every track) takes that person's new face back instead of a fresh one.

At a track's first frame with a FaceMesh fit, before Step I has used its seed, EdgeFace embeds the
face (the chip aligned on its five points, as the privacy guard aligns it) and compares it with
the people of the run who are not on screen now: each is kept as up to VIEWS embeddings taken at
head turns VIEW_TURN degrees apart while their tracks lived. The most similar person is taken when
the cosine similarity is at least LINK_MIN and every other person is at least LINK_GAP below it;
the track then takes that person's seed, its picks among the seeded candidates (Step I's shape,
the restorer's appearance: `picks_of` / `preset_picks`, as a segmented batch run carries them) and
the privacy guard's choice, which the guard checks again at the new track's first frame, with
the search's margins (stream/guard.py `preset`). Where that face does not pass, then or at any
later check, the track goes on with the seed it drew itself (`unlink`, through the guard's
`exhausted`; the guard searches from its first step): another step of the person's seed would be
another face too, and a face only just cleared before would be let go a few frames on. So a
failed link costs what a track that was never linked gets: a new face of its own, searched for
at that frame. A track that is not linked keeps its own seed: a new face of its own, as before.

LINK_MIN 0.5 lies above the highest EdgeFace similarity of any two of the 699 build portraits (0.459
among 243,951 pairs, models/data/edgeface_calibration.json: studio portraits alike in light,
pose and clothes), so two people are not taken for one where EdgeFace can tell them apart; the
same person seen again sits above it (a mirror or a 5 % re-crop of one photo: 0.93-0.99; held-out
portraits turned 25 degrees: median 0.80, all linked; 45 degrees: median 0.58, 74 of 100 linked). Faces under MIN_FACE_PX wide (FaceMesh points) are neither matched nor kept: EdgeFace
on a few pixels tells people apart poorly (held-out portraits scaled down, 14,850 pairs of two
people: highest similarity 0.34 at 49 px faces, 0.36 at 31 px, 0.45 at 24 px;
tools/bench/bench_relink.py). A face that is not linked when it should be just gets a new face of
its own (what every track got before), never a raw one.

Privacy: the embeddings live in this object's memory only, for the run; at most MAX_PEOPLE people
are kept (the longest unseen dropped first), and nobody unseen for MAX_AGE_S of the video's time. Nothing
of them goes into the output, the report or the log: the report says per track only which earlier
track showed the same person (`same_person_as`), which the output shows anyway (the same new face).
`--relink off` gives every track a face of its own. Batch runs that split a video do not link
(their segments are processed apart; stream/batch/).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ideud.models import edgeface as ef
from ideud.models.face_align import five_points_from_facemesh
from ideud.stream import blend as bl
from ideud.stream.types import Crop

LINK_MIN = 0.5  # cosine similarity at least this to be taken for the same person (module docstring)
LINK_GAP = 0.1  # and every other person at least this far below
MIN_FACE_PX = 32.0  # face width (FaceMesh points) under which EdgeFace is not asked (module docstring)
VIEWS = 4  # embeddings kept per person
VIEW_TURN = 15.0  # degrees of yaw between kept views
MAX_VIEW_YAW = 50.0  # no view kept of a face turned further (EdgeFace's chip is frontal)
MAX_PEOPLE = 256
MAX_AGE_S = 1800.0  # seconds of video (file or stream) a person unseen is remembered


@dataclass
class _Person:
    seed: int
    first_track: int  # the track that showed this person first (what the report names)
    last_track: int
    views: list = field(default_factory=list)  # EdgeFace embeddings (memory only)
    yaws: list = field(default_factory=list)
    active: set = field(default_factory=set)  # its tracks on screen now
    last_time: float = 0.0
    record: Optional[dict] = None  # {"choice", "picks"} of its last track: taken when it was dropped or linked


class Relinker:
    """Hands a returning person's seed and choices to their new track; see the module docstring.

    `record_of(track_id)` -> {"choice", "picks"} of a live track; `preset(track_id, seed, record)`
    makes a new track take them (the processor's guard, identity stage and restorer)."""

    def __init__(self, record_of: Callable[[int], dict], preset: Callable[[int, int, dict], None], edge=None):
        self.record_of = record_of
        self.preset = preset
        self._edge = edge
        self._people: dict[int, _Person] = {}  # by seed
        self._person_of: dict[int, _Person] = {}  # by live track id
        self._pending: dict[int, np.ndarray] = {}  # a track's first embedding, kept as a view once its yaw is known
        self._decided: set[int] = set()
        self._own: dict[int, tuple] = {}  # a linked track -> (the track, the seed it drew itself)
        self.same_person_as: dict[int, int] = {}  # track id -> the earlier track of the same person
        self.unlinked = 0  # linked tracks that went on with a face of their own (`unlink`)

    def decide(self, frame, track, landmarks: np.ndarray) -> Optional[int]:
        """At the track's first fitted frame (before Step I uses `track.seed`): link it to a person
        seen before (the track's seed is changed, their choices preset) or start a new person.
        -> the earlier track it was linked to, or None."""
        if track.id in self._decided:
            return None
        self._decided.add(track.id)
        self._forget_old(frame.time)
        emb = self._embed(frame, landmarks)
        person = self._match(emb) if emb is not None else None
        if person is None:
            person = self._people.get(track.seed)
            if person is None:
                person = self._people[track.seed] = _Person(seed=track.seed, first_track=track.id, last_track=track.id)
        else:
            if person.record is None:  # its last track ended this frame or the one before: not yet dropped
                person.record = self.record_of(person.last_track)
            record = person.record
            self._own[track.id] = (track, track.seed)
            track.seed = person.seed
            self.preset(track.id, person.seed, record)
            self.same_person_as[track.id] = person.first_track
        person.active.add(track.id)
        person.last_track, person.last_time = track.id, frame.time
        self._person_of[track.id] = person
        if emb is not None:
            self._pending[track.id] = emb
        return self.same_person_as.get(track.id)

    def see(self, frame, track_id: int, landmarks: np.ndarray, yaw: float) -> None:
        """Each analysed frame: keep a view of the person at a new head turn (a few per person)."""
        person = self._person_of.get(track_id)
        if person is None:
            return
        person.last_time = frame.time
        if len(person.views) >= VIEWS or abs(yaw) > MAX_VIEW_YAW:
            self._pending.pop(track_id, None)
            return
        if person.yaws and min(abs(yaw - y) for y in person.yaws) < VIEW_TURN:
            self._pending.pop(track_id, None)
            return
        emb = self._pending.pop(track_id, None)
        if emb is None:
            emb = self._embed(frame, landmarks)
        if emb is not None:
            person.views.append(emb)
            person.yaws.append(float(yaw))

    def ended(self, track_ids) -> None:
        """Tracks the tracker ended this frame: their people may come back from now on."""
        for tid in track_ids:
            person = self._person_of.get(tid)
            if person is not None:
                person.active.discard(tid)
            self._pending.pop(tid, None)

    def dropped(self, track_id: int) -> None:
        """A track's state is about to be forgotten: its choices are taken for its person first."""
        person = self._person_of.pop(track_id, None)
        self._decided.discard(track_id)
        self._own.pop(track_id, None)
        if person is not None and person.last_track == track_id and not person.active:
            person.record = self.record_of(track_id)

    def unlink(self, track_id: int) -> Optional[int]:
        """The privacy guard found no passing face for a linked track under its person's seed (the
        person looks closer to that face here than when it was chosen): the track goes on as a
        person of its own, with the seed it drew itself, so that it gets a new face of its own
        rather than none. -> that seed, or None where the track was not linked."""
        if self.same_person_as.pop(track_id, None) is None:
            return None
        track, seed = self._own.pop(track_id)
        old = self._person_of.get(track_id)
        if old is not None:
            old.active.discard(track_id)
        track.seed = seed
        self._person_of[track_id] = self._people[seed] = _Person(
            seed=seed, first_track=track_id, last_track=track_id, active={track_id},
            last_time=old.last_time if old is not None else 0.0)
        self.unlinked += 1
        return seed

    def report(self) -> dict:
        return {"tracks_relinked": len(self.same_person_as), "tracks_unlinked": self.unlinked}

    # ------------------------------------------------------------------ internals
    def _match(self, emb: np.ndarray) -> Optional[_Person]:
        scores = [(float(np.max(np.asarray(p.views) @ emb)), p) for p in self._people.values()
                  if p.views and not p.active]
        if not scores:
            return None
        scores.sort(key=lambda s: -s[0])
        best, person = scores[0]
        second = scores[1][0] if len(scores) > 1 else -1.0
        return person if best >= LINK_MIN and best - second >= LINK_GAP else None

    def _embed(self, frame, landmarks: np.ndarray) -> Optional[np.ndarray]:
        pts = np.asarray(landmarks, np.float64)[:, :2]
        lo, hi = pts.min(0), pts.max(0)
        if hi[0] - lo[0] < MIN_FACE_PX:
            return None
        grow = 0.5 * (hi - lo)
        x0, y0 = (np.floor(lo - grow).astype(int) // 2) * 2
        x1, y1 = np.ceil(hi + grow).astype(int)
        crop = Crop(max(0, int(x0)), max(0, int(y0)), min(frame.width, int(x1)), min(frame.height, int(y1)))
        if crop.x1 - crop.x0 < 8 or crop.y1 - crop.y0 < 8:
            return None
        rgb = bl.crop_rgb(frame, crop)
        if self._edge is None:
            self._edge = ef.default_edgeface()
        p5 = five_points_from_facemesh(np.asarray(landmarks)[:, :2] - np.array([crop.x0, crop.y0]))
        return self._edge.embed_chips(ef.align(rgb, p5)[None])[0]

    def _forget_old(self, now: float) -> None:
        idle = [s for s, p in self._people.items() if not p.active and now - p.last_time > MAX_AGE_S]
        for s in idle:
            del self._people[s]
        if len(self._people) > MAX_PEOPLE:
            idle = sorted((p.last_time, s) for s, p in self._people.items() if not p.active)
            for _, s in idle[:len(self._people) - MAX_PEOPLE]:
                del self._people[s]


def picks_of(identity, restorer, track_id: int) -> dict:
    """A track's picks among its seeded candidates (indices of random draws): Step I's shape, the
    restorer's appearance."""
    return {"shape": identity.picks_of(track_id) if hasattr(identity, "picks_of") else {},
            "appearance": restorer.picks_of(track_id) if hasattr(restorer, "picks_of") else {}}


def preset_choices(guard, identity, restorer, track_id: int, seed: int, choice, picks: Optional[dict],
                   margin: bool = False) -> None:
    """Make a track take a person's choices made elsewhere (an earlier track, another segment): the
    guard's (checked again at the track's first frame; `margin`: with the search's margins) and the picks."""
    picks = picks or {}
    if guard is not None and choice:
        guard.preset(track_id, seed, choice, margin=margin)
    if picks.get("shape") and hasattr(identity, "preset_picks"):
        identity.preset_picks(track_id, seed, picks["shape"])
    if picks.get("appearance") and hasattr(restorer, "preset_picks"):
        restorer.preset_picks(track_id, picks["appearance"])


def relinker_for(guard, identity, restorer) -> Relinker:
    """A Relinker whose choices are read from and preset into the processor's components."""

    def record_of(track_id: int) -> dict:
        return {"choice": guard.decision(track_id) if guard is not None else None,
                "picks": picks_of(identity, restorer, track_id)}

    def preset(track_id: int, seed: int, record: dict) -> None:
        # the face must pass with the search's margins: one only just cleared before would be let go a
        # few frames on, for another new face (or none) in the middle of the track
        preset_choices(guard, identity, restorer, track_id, seed, record.get("choice"), record.get("picks"), margin=True)

    return Relinker(record_of, preset)
