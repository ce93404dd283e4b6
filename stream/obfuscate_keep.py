"""Obfuscate only what is face (issue 13): an obfuscated face keeps the pixels of a hand or a
microphone in front of it, as a rendered face does.

The occlusion stage (stream/occlusion.py) leaves, for this frame only, the occluder it found in
front of a face with a thin rim (`OcclusionStage.take_occluder`: the part of what it cuts out of a
rendered face's mask that differs strongly from the face, without the margin and feather a
rendered face's cut adds: that margin is the person's skin, between fingers and along the hand); every face that
has Step I's geometry is rendered and cut, also one obfuscated anyway (the guard's refusal: cut in
the restore process, not restored; `occluded`), so its occluder is known in the frame it is
obfuscated in. Faces obfuscated before Step I (small, no_mesh, lost, a failed frame) keep nothing. `blend.obfuscate` leaves
those pixels as they are and fills the rest of the box, the fill colour taken from the pixels it
fills; next to the kept pixels (3 % of the face size, fading over as much again) the fill takes the
colour of the nearest kept pixel, so the occluder's edge that the stage's outline misses by a pixel
or three is drawn in the occluder's colour, not the face's (twenty-first session: a kept hand 28.1 ->
42.0 dB). Fail closed, in three steps, each of which can only fill more:

1. Only this frame's occluder, on the face's own crop; none found: the whole box is filled.
2. Never kept: the eyes and brows (their hull grown by `EYE_MARGIN` of the face size; a hand over
   the eyes is filled there), and nothing at all where more than `MAX_KEPT` of the face outline
   would stay original without the guard (more than the lower half of the face: as likely a
   failed comparison as a hand), `MAX_KEPT_CHECKED` with it (step 3 checks what is kept).
3. With the privacy guard on, the obfuscated face as drawn (the mosaic at the track's strength,
   the occluder kept) must be placed among different people by both recognizers on every view,
   as the guard's own mosaic is (stream/guard.py point 5: dlib >= 0.6, EdgeFace <= edge_max),
   against the guard's references of the person (one taken behind an occluder the stage found
   there: with that occluder greyed, stream/guard_occluded_refs.py, so that the kept occluder is
   not what matches), or this frame's original where it has none; refused: the whole box is
   filled. With `--privacy off` step 3 is not run (nothing is checked
   against the person there, rendered faces' occluders neither).

Limits: only the occluder within the band the occlusion stage compares (the face outline grown a
little) is kept; the rest of it inside the obfuscated box (the box grown 25 % each side, 50 % at
the guard's strength 1) is filled. An occluder the stage does not find, or delineates only in part
(a skin-coloured hand there from a track's first frame), is filled like the face. A face first
seen behind its occluder is checked against the person with it greyed: dlib sits near 0.6 there
whatever is kept (a face-less fill is ~0.6 from anyone), so about half are still refused
(tools/bench/bench_footage.py microphone_from_start: 12 kept, 16 refused; 1 and 27 with the
occluder in the reference); where the stage did not find the occluder in the reference's frame
(hand_from_start) the reference keeps it and every kept face is refused (16 of 16).

Cost: every face the guard obfuscates is rendered and cut (the cut ~8 ms a face, where the warp runs), and
each face-frame that keeps an occluder is checked by both recognizers (~50-120 ms on 2 busy
cores; 2.7 s for the 22 face-frames of tools/bench/bench_footage.py's multi_person clip). Numbers:
tools/bench/bench_footage.py (occluder PSNR), tools/bench/bench_occluder_keep.py (recognizers).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.stream.types import Crop, FaceJob, Frame

EYE_MARGIN = 0.08  # share of the face size the eyes' and brows' hull is grown by: never kept
# share of the face outline above which nothing is kept: the lower half of a face's points keeps
# ~0.5, the whole face less the eyes ~0.65; a hand over the mouth on tools/bench/bench_footage.py's
# multi_person clip at most 0.46 (the hand ~0.3, the rest the occlusion stage's margin). With the
# privacy guard on (each kept face checked by the recognizers) an occluder over everything below
# the eyes may be kept (the `occluded` faces: more than MAX_SHARE of the face covered), without it
# no more than the lower half
MAX_KEPT, MAX_KEPT_CHECKED = 0.5, 0.7
_EYE_SIDES = (np.r_[fm.LEFT_EYE, fm.LEFT_BROW], np.r_[fm.RIGHT_EYE, fm.RIGHT_BROW])


def trusted_keep(job: FaceJob, cap: float = MAX_KEPT) -> tuple[Optional[tuple[Crop, np.ndarray]], float]:
    """(crop, uint8 keep) of this frame's occluder less what is never kept, or None; and the share
    of the face outline it keeps (pixels kept at least half)."""
    if job.occluder is None or job.rendering is None:
        return None, 0.0
    crop, keep = job.occluder
    if keep.shape != crop.shape:
        return None, 0.0
    keep, share = trusted(keep, np.asarray(job.rendering.landmarks, np.float64)[:, :2] - crop.offset, cap)
    return (None if keep is None else (crop, keep)), share


def trusted(keep: np.ndarray, lm: np.ndarray, cap: float = MAX_KEPT) -> tuple[Optional[np.ndarray], float]:
    """`keep` (uint8, a crop's pixels) less the eyes and brows of the face's points `lm` (in the
    crop), or None where it would keep more than `cap` of the face outline or nothing; the share."""
    size = float(np.ptp(lm, 0).max())
    never = np.zeros(keep.shape, np.uint8)
    for side in _EYE_SIDES:
        cv2.fillConvexPoly(never, cv2.convexHull(np.round(lm[side]).astype(np.int32)), 1)
    r = max(1, int(round(EYE_MARGIN * size)))
    never = cv2.dilate(never, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    keep = np.where(never > 0, 0, keep).astype(np.uint8)
    face = fm.face_polygon_mask(keep.shape, lm)
    share = float((keep[face > 0] >= 128).mean()) if face.any() else 1.0
    if share > cap or not keep.any():
        return None, share
    return keep, share


class OccluderKeep:
    """Per obfuscated face: what of its box stays original (module docstring), and the counts."""

    def __init__(self, guard=None):
        self.guard = guard
        self.kept = 0  # face-frames obfuscated with their occluder kept
        self.untrusted = 0  # an occluder found, but not kept (step 2)
        self.refused = 0  # kept version matched the person for a recognizer (step 3)
        self.failed = 0  # an error while checking: filled
        self.max_share = 0.0  # the largest share of a face outline kept

    def keep(self, frame: Frame, job: FaceJob, strength: int, mode: str) -> Optional[tuple[Crop, np.ndarray]]:
        if job.occluder is None:
            return None
        try:
            keep, share = trusted_keep(job, MAX_KEPT if self.guard is None else MAX_KEPT_CHECKED)
            if keep is None:
                self.untrusted += 1
                return None
            if self.guard is not None and not self.guard.keeps_occluder(frame, job, keep, strength, mode):
                self.refused += 1
                return None
        except Exception:  # fail closed: the whole box is filled
            self.failed += 1
            return None
        self.kept += 1
        self.max_share = max(self.max_share, share)
        return keep

    def report(self) -> dict:
        return {"face_frames": self.kept, "untrusted": self.untrusted, "refused_by_guard": self.refused,
                "failed": self.failed, "max_face_share": round(self.max_share, 3)}

