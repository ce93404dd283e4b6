"""Stitching (driver): tracks of neighbouring segments that saw the same pre-roll frames become one
global track with one seed; `SeedPolicy` hands those seeds to the pass-2 tracker."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ideud.models.geometry import box_iou, match
from ideud.stream.batch.plan import Segment
from ideud.stream.relink import preset_choices

STITCH_MIN_SCORE = 0.3  # mean IoU over the pre-roll frames where either track is present


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
    Returns (global tracks, per segment {local id: {"global", "seed", "first", "first_box", "choice",
    "picks"}}). The seeds are only in the per-segment records, which go to pass 2 and nowhere else;
    the global tracks go into the user's report and hold no seed (with it Step I could be undone).
    """
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
        for r, c in match(score, min_score):
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
        glob_tracks.append({"id": gid, "segments": sorted({k for k, _ in members}),
                            "members": [[k, lid] for k, lid in members],
                            "first_frame": min(tracks[k][lid]["first"] for k, lid in members),
                            "last_frame": max(tracks[k][lid]["last"] for k, lid in members)})
        # the privacy guard's choice made where the person first appears serves every segment
        choice = next((tracks[k][lid].get("choice") for k, lid in members if tracks[k][lid].get("choice")), None)
        # so are the new face's picks among its seeded candidates (shape and appearance: which draw
        # was farthest from the person depends on the frames a segment saw; the first one decides)
        picks = next((tracks[k][lid].get("picks") for k, lid in members if tracks[k][lid].get("picks")), None)
        for k, lid in members:
            t = tracks[k][lid]
            per_seg[k][lid] = {"global": gid, "seed": s, "first": t["first"], "first_box": t["first_box"],
                               "choice": choice, "picks": picks}
    return glob_tracks, per_seg


class SeedPolicy:
    """`Tracker.seed_for` of a pass-2 segment: a spawned track gets its global track's seed.

    Pass 2 repeats pass 1's tracking, so a track is normally found by its local id, checked against
    the frame and box it started with; otherwise by frame and IoU. A spawn that matches nothing
    (pass 2 diverged) draws from the tracker's own generator and is counted.
    """

    def __init__(self, seeds: dict, guard=None, identity=None, restorer=None):
        self.seeds = {int(k): v for k, v in seeds.items()}
        self.by_local: dict[int, dict] = {}
        self.unmatched = 0
        self.guard = guard
        self.identity, self.restorer = identity, restorer  # they take the carried picks

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
        preset_choices(self.guard, self.identity, self.restorer, track_id, int(rec["seed"]), rec.get("choice"),
                       rec.get("picks"))
        return int(rec["seed"])

