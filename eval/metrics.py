"""Per-frame and per-face measurements: PSNR/SSIM, the face region, head pose, expression, sharpness.

Definitions in the package docstring (`ideud.eval`).
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from ideud.models.facemesh import native_stderr_silenced
from ideud.models.geometry import similarity_fit

PSNR_CAP = 100.0


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as float64."""
    x = rgb.astype(np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def psnr(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[float]:
    """PSNR in dB over the pixels where ``mask`` is true (all if None); capped at 100.

    None if the mask selects nothing.
    """
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        d = d[mask.astype(bool)]
        if d.size == 0:
            return None
    mse = float(np.mean(d * d))
    if mse <= 0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0 ** 2 / mse))


_SSIM_PAD = 5


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM index map of two float grey images (range 0..255), same size."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mx, my = blur(x), blur(y)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    sxx = blur(x * x) - mxx
    syy = blur(y * y) - myy
    sxy = blur(x * y) - mxy
    return ((2 * mxy + c1) * (2 * sxy + c2)) / ((mxx + myy + c1) * (sxx + syy + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[float]:
    """Mean SSIM (luma for RGB input) over ``mask`` (all if None), 5-px border excluded."""
    x = luma(a) if a.ndim == 3 else a.astype(np.float64)
    y = luma(b) if b.ndim == 3 else b.astype(np.float64)
    return ssim_mean(ssim_map(x, y), mask)


def ssim_mean(m: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[float]:
    """Mean of an SSIM map over ``mask`` (all if None), 5-px border excluded."""
    p = _SSIM_PAD
    if m.shape[0] <= 2 * p or m.shape[1] <= 2 * p:
        sel = np.ones(m.shape, bool)
    else:
        sel = np.zeros(m.shape, bool)
        sel[p:-p, p:-p] = True
    if mask is not None:
        sel &= mask.astype(bool)
    if not sel.any():
        return None
    return float(m[sel].mean())


# ====================================================================== face geometry
BROWS = list(range(17, 27))


def forehead_points(p68: np.ndarray, forehead: float = 0.4) -> np.ndarray:
    """The brow points moved up by ``forehead`` x (brow centre - chin)."""
    up = p68[BROWS].mean(0) - p68[8]
    return p68[BROWS] + forehead * up


def face_width(p68: np.ndarray) -> float:
    return float(np.linalg.norm(p68[16] - p68[0]))


def hull_mask(shape_hw, pts_list, grow: float) -> np.ndarray:
    """Filled convex hull of the stacked points, dilated (grow > 0) or eroded (< 0) by |grow| px."""
    h, w = shape_hw
    pts = np.concatenate(pts_list, 0).astype(np.float64)
    r = int(math.ceil(abs(grow)))
    x0 = int(max(0, math.floor(pts[:, 0].min()) - r - 2))
    y0 = int(max(0, math.floor(pts[:, 1].min()) - r - 2))
    x1 = int(min(w, math.ceil(pts[:, 0].max()) + r + 3))
    y1 = int(min(h, math.ceil(pts[:, 1].max()) + r + 3))
    full = np.zeros((h, w), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return full.astype(bool)
    roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hull = cv2.convexHull(np.round(pts - (x0, y0)).astype(np.int32))
    cv2.fillConvexPoly(roi, hull, 1)
    if r > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        roi = cv2.dilate(roi, k) if grow > 0 else cv2.erode(roi, k)
    full[y0:y1, x0:x1] = roi
    return full.astype(bool)


def face_region_mask(shape_hw, p68_orig: np.ndarray, p68_out: Optional[np.ndarray] = None,
                     dilate: float = 0.1, forehead: float = 0.4) -> np.ndarray:
    """The face region used to split 'outside the faces' (see module docstring)."""
    pts = [p68_orig, forehead_points(p68_orig, forehead)]
    if p68_out is not None:
        pts += [p68_out, forehead_points(p68_out, forehead)]
    return hull_mask(shape_hw, pts, max(2.0, dilate * face_width(p68_orig)))


# Generic 3D face for head pose: x to image-right, y up, z towards the camera,
# nose tip at 0, units ~0.2 mm (outer eye corners 450 apart).  x/y follow the
# median of the 43 annotated PASCAL faces (eye-corner normalised), depths are
# rough anthropometry.  Pitch from 2D landmarks and a generic model absorbs
# face proportions (a shorter lower face reads as head tilted down), so a
# different identity at the same pose can read several degrees apart in
# pitch; yaw and roll are better conditioned.  Compare the per-axis errors.
POSE_IDX = [27, 30, 31, 33, 35, 36, 39, 42, 45, 48, 54, 8]
POSE_MODEL = np.array([
    [0.0, 185.0, -80.0],       # 27 nasion
    [0.0, 0.0, 0.0],           # 30 nose tip
    [-60.0, -45.0, -90.0],     # 31 nostril wing, image-left
    [0.0, -65.0, -70.0],       # 33 subnasale
    [60.0, -45.0, -90.0],      # 35 nostril wing, image-right
    [-225.0, 172.0, -160.0],   # 36 outer corner, image-left eye
    [-100.0, 168.0, -100.0],   # 39 inner corner, image-left eye
    [100.0, 168.0, -100.0],    # 42 inner corner, image-right eye
    [225.0, 172.0, -160.0],    # 45 outer corner, image-right eye
    [-155.0, -160.0, -140.0],  # 48 mouth corner, image-left
    [155.0, -160.0, -140.0],   # 54 mouth corner, image-right
    [0.0, -440.0, -110.0],     # 8 chin
])
_FLIP = np.diag([1.0, -1.0, -1.0])  # model (y up, z to camera) -> OpenCV camera axes


def head_pose(p68: np.ndarray, shape_hw) -> Optional[np.ndarray]:
    """Head rotation (3x3, model -> camera) from 68 landmarks, or None."""
    h, w = shape_hw
    f = float(w)
    cam = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], np.float64)
    img = np.ascontiguousarray(p68[POSE_IDX], np.float64).reshape(-1, 1, 2)
    try:
        ok, rvec, _ = cv2.solvePnP(POSE_MODEL.reshape(-1, 1, 3), img, cam, np.zeros(4),
                                   flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    if not ok:
        return None
    return cv2.Rodrigues(rvec)[0]


def euler_deg(r: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in degrees of a :func:`head_pose` rotation (0, 0, 0 = facing the camera)."""
    return np.array(cv2.RQDecomp3x3(_FLIP @ r)[0], dtype=np.float64)


def rotation_angle_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    """Geodesic angle between two rotations, degrees (||R1 - R2||_F = 2 sqrt(2) sin(angle / 2))."""
    x = float(np.linalg.norm(np.asarray(r1, np.float64) - np.asarray(r2, np.float64))) / (2.0 * math.sqrt(2.0))
    return float(math.degrees(2.0 * math.asin(min(1.0, x))))


class MeshPose:
    """MediaPipe FaceMesh on a square crop (2x the box, 256 px) around a face box.

    Returns the 468 landmarks in frame pixels with depth in the same units
    (x right, y down, z away from the camera), or None when FaceMesh finds
    no face there (or one centred outside the box).  Not thread-safe.
    """

    SIZE, GROW = 256, 2.0

    def __init__(self, face_mesh):
        self._fm = face_mesh
        self._quiet = True  # until the first face: the graph logs on its first landmarks

    @classmethod
    def create(cls) -> Optional["MeshPose"]:
        try:
            with native_stderr_silenced():  # TFLite/absl start-up chatter
                import mediapipe as mp

                fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                     refine_landmarks=False, min_detection_confidence=0.3)
                # the calculators open (and log) on threads: wait for them in here
                fm.process(np.zeros((cls.SIZE, cls.SIZE, 3), np.uint8))
        except Exception:  # no mediapipe / no model file: the dlib PnP pose only
            return None
        return cls(fm)

    def points(self, rgb: np.ndarray, box) -> Optional[np.ndarray]:
        size = self.SIZE
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        s = size / (self.GROW * max(box[2] - box[0], box[3] - box[1], 1.0))
        m = np.float32([[s, 0, size / 2.0 - s * cx], [0, s, size / 2.0 - s * cy]])
        crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self._quiet:
            with native_stderr_silenced():
                res = self._fm.process(crop)
            self._quiet = not res.multi_face_landmarks
        else:
            res = self._fm.process(crop)
        if not res.multi_face_landmarks:
            return None
        p = np.array([(q.x, q.y, q.z) for q in res.multi_face_landmarks[0].landmark], np.float64) * size
        half_box = size / (2 * self.GROW)
        if abs(p[:, 0].mean() - size / 2) > half_box or abs(p[:, 1].mean() - size / 2) > half_box:
            return None  # another face in the crop
        p[:, 0] -= m[0, 2]
        p[:, 1] -= m[1, 2]
        return p / s

    def close(self) -> None:
        self._fm.close()


def relative_rotation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotation R with q ~ s R p + t (least squares) for (N, 3) point sets."""
    return similarity_fit(p, q)[1]


def _dist(p, a, b):
    return float(np.linalg.norm(p[a] - p[b]))


def expression(p68: np.ndarray) -> dict:
    """Mouth aperture (inner-lip gap / inner mouth width) and eye aperture (EAR)."""
    mw = max(_dist(p68, 60, 64), 1e-6)
    mouth = (_dist(p68, 61, 67) + _dist(p68, 62, 66) + _dist(p68, 63, 65)) / 3.0 / mw
    ear_l = (_dist(p68, 37, 41) + _dist(p68, 38, 40)) / (2.0 * max(_dist(p68, 36, 39), 1e-6))
    ear_r = (_dist(p68, 43, 47) + _dist(p68, 44, 46)) / (2.0 * max(_dist(p68, 42, 45), 1e-6))
    return {"mouth": mouth, "eyes": (ear_l + ear_r) / 2.0}


def laplacian_variance(gray: np.ndarray, mask: np.ndarray) -> Optional[float]:
    """Variance of the 3x3 Laplacian of ``gray`` over ``mask`` (bbox-cropped for speed)."""
    ys, xs = np.nonzero(mask)
    if ys.size < 16:
        return None
    y0, y1 = max(0, ys.min() - 1), min(gray.shape[0], ys.max() + 2)
    x0, x1 = max(0, xs.min() - 1), min(gray.shape[1], xs.max() + 2)
    lap = cv2.Laplacian(gray[y0:y1, x0:x1].astype(np.float64), cv2.CV_64F)
    return float(lap[mask[y0:y1, x0:x1]].var())

