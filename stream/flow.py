"""Temporal propagation of a track's last mesh by optical flow (issue 13).

Where FaceMesh fails on a face it modelled in the previous frame (motion blur, a hand passing,
a detector miss), the face's texture usually still moves coherently. Corners inside the previous
mesh (eroded, so hair and background stay out) are followed from the previous frame's grey crop
to this frame's with pyramidal Lucas-Kanade, kept only where the backward track returns to the
start, and a similarity (scale, rotation, shift) is fitted to them with RANSAC. All 468 points are
moved by it (z scaled with x, y).

The answer is accepted only while the flow is consistent: enough points, most of them inliers, a
small per-frame change, and a box that agrees with the detector's (when there is one). With no
detection at all (the track coasting) the thresholds are stricter. Anything else returns None:
the face is obfuscated (fail closed), never propagated on a guess. The caller limits how many
frames in a row a mesh may be propagated (the error adds up).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from ideud.models.geometry import box_iou
from ideud.stream.types import Frame

SIDE_MIN, SIDE_MAX = 64, 160  # px of the grey crop's side: face resolution, clamped (speed, tiny faces)
CONTEXT = 1.6  # crop side / mesh box side: room for the face to move
MIN_POINTS = 12  # tracked points that pass the forward-backward check
MIN_GOOD_SHARE = 0.5  # of the points started
FB_MAX = 0.02  # forward-backward error, x crop side (about 1-3 px)
RANSAC_PX = 0.02  # inlier distance, x crop side
MAX_SCALE_STEP = 0.12  # |log scale| per frame
MAX_TURN_DEG = 10.0  # in-plane turn per frame
MAX_SHIFT = 0.35  # shift per frame, x face side
SMOOTH_SIGMA = 0.08  # low-pass of the second try, x face side
# propagated mesh's detector-convention box vs the detection (measured meshes on the footage
# clips: 1st percentile 0.76, lowest 0.69 of 243); a mesh that far off would leave face uncovered
MIN_BOX_IOU = 0.6
# a face that turns out of the picture plane is squeezed along one axis, which a similarity cannot
# follow (the moved mesh would stay frontal on a turning head): the affine change since the last
# measured mesh may be this far from a similarity (ratio of its singular values - 1; ~25 deg of yaw)
MAX_ANISOTROPY = 0.1

# a detection vouches for where the face is; without one the flow alone must be convincing
MIN_INLIERS = {"detected": 0.6, "lost": 0.8}


@dataclass
class FlowRef:
    """The grey crop around a face where its mesh was last known, and how it was cut."""

    grey: np.ndarray  # (side, side) uint8
    affine: np.ndarray  # (2, 3) frame pixels -> crop pixels
    landmarks: np.ndarray  # (468, 3) frame pixels
    drift: np.ndarray  # (2, 2) the face's affine change since its mesh was last measured (see propagate)


@dataclass
class FlowFit:
    landmarks: np.ndarray  # (468, 3) frame pixels, moved
    points: int  # points that passed the forward-backward check
    inlier_share: float
    drift: np.ndarray  # (2, 2) affine change since the last measured mesh, this frame included
    smoothed: bool  # found on the low-passed crops (a blurred frame)


def _luma(frame: Frame) -> np.ndarray:
    # green stands in for luma in RGB frames (still images)
    return frame.planes[1] if frame.is_rgb else frame.planes[0]


def _crop_affine(lm: np.ndarray) -> tuple[np.ndarray, int]:
    """(2x3 frame -> crop affine, crop side): a whole-pixel square around the face, scaled."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    n = max(4, int(math.ceil(CONTEXT * float(max(hi - lo)))))
    x0, y0 = (np.floor((lo + hi) / 2) - n // 2).astype(int)
    side = int(np.clip(n, SIDE_MIN, SIDE_MAX))
    k = side / n
    return np.array([[k, 0, -k * x0], [0, k, -k * y0]], np.float64), side


def _cut(frame: Frame, affine: np.ndarray, side: int) -> np.ndarray:
    """The crop `affine` defines (whole-pixel square, edges replicated past the frame), at `side` px."""
    plane = _luma(frame)
    k = float(affine[0, 0])
    n = int(round(side / k))
    x0, y0 = int(round(-affine[0, 2] / k)), int(round(-affine[1, 2] / k))
    h, w = plane.shape
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    if sx1 <= sx0 or sy1 <= sy0:  # the face has left the picture
        return np.zeros((side, side), np.uint8)
    sub = plane[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + n, y0 + n):
        sub = cv2.copyMakeBorder(sub, sy0 - y0, y0 + n - sy1, sx0 - x0, x0 + n - sx1, cv2.BORDER_REPLICATE)
    if n == side:
        return np.ascontiguousarray(sub)
    # shrinking: area averaging (no aliasing for the pyramid); enlarging a small face: bilinear
    return cv2.resize(sub, (side, side), interpolation=cv2.INTER_AREA if n > side else cv2.INTER_LINEAR)


def reference(frame: Frame, lm: np.ndarray, drift: Optional[np.ndarray] = None) -> FlowRef:
    """What the next frame's propagation needs from this one (cut before anything is drawn on it).
    `drift`: the propagated mesh's `FlowFit.drift` (None: the mesh was measured)."""
    affine, side = _crop_affine(lm)
    return FlowRef(_cut(frame, affine, side), affine, lm.copy(), np.eye(2) if drift is None else drift.copy())


def _inner_mask(pts: np.ndarray, side: int) -> np.ndarray:
    """The mesh's hull, shrunk by a tenth of the face: texture that moves with the face."""
    mask = np.zeros((side, side), np.uint8)
    hull = cv2.convexHull(pts.astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(mask, hull, 255)
    lo, hi = pts.min(0), pts.max(0)
    r = max(1, int(0.1 * float(max(hi - lo))))
    return cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def _gain_matched(cur: np.ndarray, prev: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`cur` with the face's mean and contrast of `prev`: stage lights and exposure change between
    frames, and Lucas-Kanade assumes they do not."""
    inside = mask > 0
    if not inside.any():
        return cur
    mc, sc = float(cur[inside].mean()), float(cur[inside].std())
    mp, sp = float(prev[inside].mean()), float(prev[inside].std())
    if sc < 1.0:
        return cur
    return np.clip((cur.astype(np.float32) - mc) * (sp / sc) + mp, 0, 255).astype(np.uint8)


def _similarity(a: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(scale, turn in degrees, shift) of a 2x3 partial affine."""
    scale = math.hypot(a[0, 0], a[1, 0])
    return scale, math.degrees(math.atan2(a[1, 0], a[0, 0])), a[:, 2]


def propagate(ref: FlowRef, frame: Frame, detected_box: Optional[np.ndarray],
              box_of: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Optional[FlowFit]:
    """The reference mesh moved into `frame` by the face's optical flow, or None if not confident.

    `detected_box`: this frame's detection of the face (None: the detector missed it).
    `box_of(landmarks)`: the detector-convention box of a mesh, to compare with `detected_box`.
    Tried on the crops as they are (corners), then low-passed (a grid of points): motion blur
    wipes out the corners of the sharp frame, not the face's coarse shading.
    """
    side = ref.grey.shape[0]
    cur = _cut(frame, ref.affine, side)
    lm_crop = ref.landmarks[:, :2] @ ref.affine[:, :2].T + ref.affine[:, 2]
    mask = _inner_mask(lm_crop, side)
    face_side = float(max(lm_crop.max(0) - lm_crop.min(0)))
    cur = _gain_matched(cur, ref.grey, mask)
    for smooth in (False, True):
        a = _motion(ref.grey, cur, mask, face_side, smooth, lost=detected_box is None)
        if a is None:
            continue
        # crop -> crop motion as frame -> frame motion: F = C^-1 A C
        c = np.vstack([ref.affine, [0, 0, 1]])
        m = np.linalg.inv(c) @ np.vstack([a[0], [0, 0, 1]]) @ c
        lm = ref.landmarks.copy()
        lm[:, :2] = ref.landmarks[:, :2] @ m[:2, :2].T + m[:2, 2]
        lm[:, 2] *= _similarity(a[0])[0]
        if detected_box is not None and box_of is not None and box_iou(box_of(lm), detected_box) < MIN_BOX_IOU:
            continue
        drift = a[3] @ ref.drift
        sv = np.linalg.svd(drift, compute_uv=False)
        if sv[0] / max(sv[1], 1e-6) - 1.0 > MAX_ANISOTROPY:
            return None  # turning out of plane: no similarity is right, and a smoother image will not help
        return FlowFit(lm, a[1], a[2], drift, smooth)
    return None


def _motion(prev: np.ndarray, cur: np.ndarray, mask: np.ndarray, face_side: float, smooth: bool,
            lost: bool) -> Optional[tuple[np.ndarray, int, float, np.ndarray]]:
    """(2x3 similarity prev -> cur crop, points kept, inlier share, 2x2 linear part of the affine
    least-squares fit to the inliers), or None if not consistent."""
    side = prev.shape[0]
    if smooth:
        sigma = max(1.0, SMOOTH_SIGMA * face_side)
        prev, cur = cv2.GaussianBlur(prev, (0, 0), sigma), cv2.GaussianBlur(cur, (0, 0), sigma)
        step = max(2, int(face_side / 10))
        ys, xs = np.mgrid[step // 2:side:step, step // 2:side:step]
        keep = mask[ys, xs] > 0
        p0 = np.stack([xs[keep], ys[keep]], -1).astype(np.float32).reshape(-1, 1, 2)
    else:
        p0 = cv2.goodFeaturesToTrack(prev, maxCorners=120, qualityLevel=0.01,
                                     minDistance=max(2.0, face_side / 30), mask=mask, blockSize=5)
    if p0 is None or len(p0) < MIN_POINTS:
        return None
    p0 = p0.astype(np.float32)
    win = (max(11, (side // 8) | 1),) * 2 if not smooth else (max(15, int(face_side / 3) | 1),) * 2
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, winSize=win, maxLevel=3, criteria=crit)
    if p1 is None:
        return None
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, winSize=win, maxLevel=3, criteria=crit)
    fb = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
    good = (ok1.ravel() == 1) & (ok2.ravel() == 1) & (fb < FB_MAX * side)
    if good.sum() < MIN_POINTS or good.mean() < MIN_GOOD_SHARE:
        return None
    a, inl = cv2.estimateAffinePartial2D(p0[good], p1[good], method=cv2.RANSAC,
                                         ransacReprojThreshold=RANSAC_PX * side, maxIters=500, confidence=0.995)
    if a is None or inl is None:
        return None
    inlier_share = float(inl.mean())
    if inlier_share < MIN_INLIERS["lost" if lost else "detected"]:
        return None
    scale, turn, shift = _similarity(a)
    moved = float(np.linalg.norm(shift + (a[:, :2] - np.eye(2)) @ (p0[good].reshape(-1, 2).mean(0))))
    if abs(math.log(max(scale, 1e-6))) > MAX_SCALE_STEP or abs(turn) > MAX_TURN_DEG or moved > MAX_SHIFT * face_side:
        return None
    src, dst = p0[good].reshape(-1, 2)[inl.ravel() == 1], p1[good].reshape(-1, 2)[inl.ravel() == 1]
    lsq = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)[0]  # (3, 2)
    return a, int(good.sum()), inlier_share, lsq[:2].T
