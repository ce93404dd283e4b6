"""Finds too small in the detector's input to be judged there, judged on the frame's own pixels.

The verifier (stream/verify.py) keeps every find under `grey_small_min_px` (12 px) in the
detector's input unjudged: real faces that small exist, and 12 px hold too little to tell them
from a blob. But in a large frame the detector's input is a shrunk copy (1280x720 -> 448x252, 2.9x
less), so such a find can be 28-34 px in the frame itself: as many pixels as the finds the verifier
judges at the default 640x360. At 1280x720 the animals set kept one that way (a dark blob 11.6 px in
the input, 33 px in the frame) in 1 frame of 1,000; judged on the frame, every cue says no.

So, in the main process (the detection workers hold only the small copy), a find the verifier kept
for its size is judged again by the same verifier on a region of the frame around it, turned upright
as the detector saw it. Only finds of `FRAME_JUDGED_MIN_PX` and more in the frame: at the default
640x360 (input scale 0.7) a 12 px find is 17 px in the frame, so nothing changes there. A find the
frame's pixels confirm is remembered for a few frames (as the verifier remembers its own), so a
small real face costs one look, not one a frame.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ideud.stream.blend import crop_rgb
from ideud.stream.types import Crop, Face, Frame
from ideud.stream.verify import overlaps_recent
from ideud.stream.workers import quarter_turns

# frame px. Judged on the frame (tools/bench/bench_frame_judge.py, held-out portraits, every variant,
# 1280x720 and 1920x1080) no real face of 24 px and more in the product's range was lost, but a
# heavily blurred 23 px one was: 28 keeps a margin (the blob is 33)
FRAME_JUDGED_MIN_PX = 28.0
REGION = 5.0  # region side / find size: the verifier's widest look is 4 x the find (its tiny views)


def _upright(points: np.ndarray, k: int, w: int, h: int) -> np.ndarray:
    """Stored-image points (..., 2) to np.rot90(image, k)'s pixels (image w x h)."""
    x, y = points[..., 0], points[..., 1]
    if k == 1:
        x, y = y, w - x
    elif k == 2:
        x, y = w - x, h - y
    elif k == 3:
        x, y = h - y, x
    return np.stack([x, y], -1)


class FrameJudge:
    """`faces(frame, faces)`: the detector's finds less those the frame's pixels show are not faces
    (such a find smooth enough to be a heavily blurred face comes back soft, as the verifier's do)."""

    def __init__(self, verifier):
        self.verifier = verifier  # a VerifyingDetector: its policy and `is_false`
        self.confirmed: list[list[np.ndarray]] = []  # per call: the boxes the frame confirmed
        self.asked = self.dropped = 0

    def due(self, face: Face, small_scale: tuple) -> bool:
        """Kept unjudged by the verifier for its size in the detector's input, yet big in the frame."""
        p = self.verifier.policy
        sx, sy = small_scale
        x0, y0, x1, y1 = np.asarray(face.box, float)
        in_input = max((x1 - x0) / sx, (y1 - y0) / sy)  # the verifier's size_px, turned or not
        return (face.score < p.keep_score and in_input < min(p.min_judged_px, p.grey_small_min_px)
                and face.size >= FRAME_JUDGED_MIN_PX)

    def faces(self, frame: Frame, faces: list[Face]) -> list[Face]:
        p = self.verifier.policy
        keep, confirmed = [], []
        for f in faces:
            if not f.soft and self.due(f, frame.small_scale):  # a soft find was dropped already
                if not overlaps_recent(self.confirmed, f.box, p.remember_iou):
                    self.asked += 1
                    rgb, here = self._look(frame, f)
                    if self.verifier.is_false(rgb, here, 1.0):
                        self.dropped += 1
                        if self.verifier.smooth_enough(rgb, here.box):  # softened, as the verifier's
                            f.soft = True
                            keep.append(f)
                        continue
                confirmed.append(np.asarray(f.box, float))  # remembered on: a face that stays is asked once
            keep.append(f)
        self.confirmed = (self.confirmed + [confirmed])[-p.remember_calls:]
        return keep

    def is_false(self, frame: Frame, face: Face) -> bool:
        """The verifier's `is_false` on the region of the frame around `face`, upright."""
        return self.verifier.is_false(*self._look(frame, face), 1.0)

    def _look(self, frame: Frame, face: Face) -> tuple[np.ndarray, Face]:
        """The region of the frame around `face`, upright (RGB), and the face in its pixels."""
        box = np.asarray(face.box, float)
        cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, face.size * REGION / 2
        x0, y0 = max(0, math.floor(cx - half)) // 2 * 2, max(0, math.floor(cy - half)) // 2 * 2  # even: chroma
        crop = Crop(x0, y0, min(frame.width, math.ceil(cx + half)), min(frame.height, math.ceil(cy + half)))
        rgb = crop_rgb(frame, crop)
        k = quarter_turns(frame.rotation)
        h, w = rgb.shape[:2]
        corners = _upright(box.reshape(2, 2) - crop.offset, k, w, h)
        kps = face.keypoints
        if kps is not None:
            kps = _upright(np.asarray(kps, float) - crop.offset, k, w, h)
        here = replace(face, box=np.r_[corners.min(0), corners.max(0)], keypoints=kps)
        return np.ascontiguousarray(np.rot90(rgb, k)), here
