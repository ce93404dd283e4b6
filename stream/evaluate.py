"""Privacy and utility metrics of a de-identified video (``ideud-eval``).

Compares an ORIGINAL with its DE-IDENTIFIED version (two videos of the same
size and frame count, or two images), frame by frame.  Faces are found in
the original with dlib (HOG, or the MMOD CNN) — deliberately a detector the
pipeline does not use — and linked into tracks (box IoU >= 0.3, or a box of
similar size whose centre moved less than its size, Hungarian assignment; a
track survives 2 evaluated frames without its face).  Every number below is
measured at the original's face boxes; the landmarks are fitted again on the
output inside the same box.

Privacy
  DIS          L2 distance between dlib's 128-d embeddings of the original
               face and the output face at the same place (dlib calls two
               faces the same person below 0.6).
  leak rate    share of face-frames with DIS < ``leak_threshold`` (0.6).
  cross-frame  output face of track A at frame t vs the ORIGINAL faces of
               track A at the other frames (at most ``cross_sample`` of
               them): the minimum distance, per face-frame; its leak rate is
               the share of face-frames whose minimum is < 0.6.
  track-mean   distance between the mean output and the mean original
               embedding of a track (an attacker who averages frames).

Utility
  PSNR, SSIM   whole frame, and outside the face regions (all faces of the
               frame; frames without faces count whole).  PSNR over the
               RGB values, capped at 100 dB (= identical).  SSIM of Wang et
               al. 2004 on luma (BT.601 Y), 11x11 Gaussian window sigma 1.5,
               K1 = 0.01, K2 = 0.03, 5-pixel border left out (matches
               skimage's structural_similarity(gaussian_weights=True,
               use_sample_covariance=False, data_range=255)).  Per frame,
               then averaged over the evaluated frames.
  face region  per face: convex hull of the 68 landmarks of the original
               AND of the output, each with a forehead added (the 10 brow
               points moved up by ``forehead`` (0.4) x the brow-to-chin
               vector), dilated by ``dilate`` (0.1) x the face width
               (landmark 0 to 16).
  pose error   MediaPipe FaceMesh (468 3D points) on the same crop around
               the original's box in both frames; the rotation between the
               two point sets (least squares, Kabsch, scale allowed) in
               degrees, and per axis |pitch|, |yaw|, |roll| of that rotation.
               Needs no generic head model, so a new face with other
               proportions moves it little.  Secondary, independent of the
               pipeline's landmarker: ``pose_error_pnp_deg``, cv2.solvePnP
               (SQPnP) of 12 of dlib's 68 points on a generic 3D face, focal
               = frame width, angle of R_orig^T R_out — its pitch absorbs
               face proportions (see POSE_MODEL), read it with care.
  expression   mouth aperture (inner-lip gap / inner mouth width) and eye
               aperture (EAR: lid gaps / eye width, both eyes): mean
               absolute difference original vs output.
  sharpness    variance of the Laplacian of luma inside the original's
               landmark hull (eroded by 5 % of the face width), output /
               original; geometric mean over face-frames.
  detection    share of face-frames where the same dlib detector still finds
               a face in the output (IoU >= 0.4 with the original box).

Consistency
  intra-track  mean (and max) pairwise distance of the output embeddings of
               a track (the new identity should stay put: small; a max above
               0.6 means two frames of one track look like two people).
  inter-track  distance between the tracks' mean output embeddings (people
               should stay apart: large).  The same two numbers on the
               original embeddings are given as the reference.

Nothing derived from the real identity (embeddings, landmarks, crops) goes
into the report: only distances, angles, ratios and counts.  The contact
sheet (``sheet=``) is an explicit before/after picture for the person
running the evaluation and does show original faces.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from ideud.models.facemesh import native_stderr_silenced
from ideud.models.meshhead import similarity_fit
from ideud.models.recognizer import FaceRecognizer, THRESHOLD, default_recognizer
from ideud.models.geometry import box_iou

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
PSNR_CAP = 100.0


class EvalInputError(ValueError):
    """Bad input: missing/unreadable file, size or frame-count mismatch."""


# ====================================================================== input
@dataclass
class MediaInfo:
    path: str
    kind: str  # "image" | "video"
    width: int
    height: int
    frames: int  # 0 = unknown


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalInputError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def probe(path) -> MediaInfo:
    """Kind, size and frame count of an image or a video (EvalInputError if unusable)."""
    p = Path(path)
    if not p.exists():
        raise EvalInputError(f"no such file: {p}")
    if not p.is_file():
        raise EvalInputError(f"not a file: {p}")
    if _is_image(p):
        img = _read_image(p)
        return MediaInfo(str(p), "image", img.shape[1], img.shape[0], 1)
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise EvalInputError(f"no video stream in {p}")
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            n = int(s.frames or 0)
    except EvalInputError:
        raise
    except Exception as e:  # av.error.FFmpegError, OSError, ...
        raise EvalInputError(f"cannot read video {p}: {_one_line(e)}") from None
    if not w or not h:
        raise EvalInputError(f"cannot read video {p}: no frame size")
    return MediaInfo(str(p), "video", int(w), int(h), n)


def iter_frames(path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an image (one) or a video (PyAV)."""
    p = Path(path)
    if _is_image(p):
        yield _read_image(p)
        return
    import av

    try:
        c = av.open(str(p))
    except Exception as e:
        raise EvalInputError(f"cannot read video {p}: {_one_line(e)}") from None
    try:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        it = c.decode(s)
        while True:
            try:
                f = next(it)
            except StopIteration:
                return
            except Exception as e:  # decode error mid-stream
                raise EvalInputError(f"decode error in {p}: {_one_line(e)}") from None
            yield f.to_ndarray(format="rgb24")
    finally:
        c.close()


def open_pair(original, deidentified, max_frames: Optional[int] = None) -> tuple:
    """Validate a pair up front; returns (MediaInfo, MediaInfo)."""
    a, b = probe(original), probe(deidentified)
    if a.kind != b.kind:
        raise EvalInputError(f"cannot compare {a.kind} {a.path} with {b.kind} {b.path}")
    if (a.width, a.height) != (b.width, b.height):
        raise EvalInputError(
            f"size mismatch: {a.path} is {a.width}x{a.height}, {b.path} is {b.width}x{b.height}")
    if a.frames and b.frames and a.frames != b.frames:
        if max_frames is None or max_frames > min(a.frames, b.frames):
            raise EvalInputError(
                f"frame count mismatch: {a.path} has {a.frames} frames, {b.path} has {b.frames}")
    return a, b


def iter_pair(original, deidentified, max_frames: Optional[int] = None,
              every: int = 1) -> Iterator[tuple]:
    """``(index, rgb_original, rgb_output)`` for frames 0, every, 2*every, ...

    Raises EvalInputError on a size or frame-count mismatch (also when it
    only shows while decoding).
    """
    a, b = open_pair(original, deidentified, max_frames)
    every = max(1, int(every))
    ia, ib = iter_frames(a.path), iter_frames(b.path)
    i = 0
    try:
        while max_frames is None or i < max_frames:
            fa, fb = next(ia, None), next(ib, None)
            if fa is None and fb is None:
                return
            if fa is None or fb is None:
                short, long_ = (a, b) if fa is None else (b, a)
                raise EvalInputError(
                    f"frame count mismatch: {short.path} ends after {i} frames, {long_.path} goes on")
            if fa.shape != fb.shape:
                raise EvalInputError(
                    f"size mismatch at frame {i}: {fa.shape[1]}x{fa.shape[0]} vs {fb.shape[1]}x{fb.shape[0]}")
            if i % every == 0:
                yield i, fa, fb
            i += 1
    finally:
        ia.close()
        ib.close()


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s or type(e).__name__


# ====================================================================== image metrics
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


def _hull_mask(shape_hw, pts_list, grow: float) -> np.ndarray:
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
    return _hull_mask(shape_hw, pts, max(2.0, dilate * face_width(p68_orig)))


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


# ====================================================================== evaluation
@dataclass
class EvalOptions:
    max_frames: Optional[int] = None
    every: int = 1  # evaluate every K-th frame
    cnn: bool = False  # MMOD CNN detector instead of HOG (slow on CPU)
    upsample: int = 1  # dlib detector upsampling (1: faces down to ~40 px)
    min_score: float = 0.3  # detector score kept (HOG margin / MMOD confidence)
    leak_threshold: float = THRESHOLD
    link_iou: float = 0.3  # track linking: IoU ...
    link_dist: float = 1.0  # ... or centre distance <= link_dist x box size (similar size)
    max_gap: int = 2  # evaluated frames a track may miss and go on
    detect_iou: float = 0.4  # "still detected" in the output
    forehead: float = 0.4
    dilate: float = 0.1
    cross_sample: int = 200  # original frames per track for the cross-frame check
    sheet_cols: int = 4  # frames per track on the contact sheet
    sheet_rows: int = 24  # tracks on the contact sheet
    per_face: bool = False  # list every face-frame (distances only) in the report
    mesh_pose: bool = True  # FaceMesh 3D pose error (if mediapipe imports)


_NO_LINK = 1e6


@dataclass
class _Obs:
    frame: int
    box: tuple
    score: float
    e_o: np.ndarray  # in memory only, never reported
    e_d: np.ndarray
    dis: float
    pose_err: Optional[float]  # FaceMesh 3D
    pyr_err: Optional[np.ndarray]  # |d pitch|, |d yaw|, |d roll| (FaceMesh 3D)
    pnp_err: Optional[float]  # dlib 68 + generic model
    mouth_err: float
    eyes_err: float
    sharp: Optional[float]  # output / original
    detected: bool
    track: int = -1


@dataclass
class _Track:
    id: int
    last_box: tuple
    last_seen: int
    obs: list = field(default_factory=list)
    sheet: list = field(default_factory=list)  # (frame, dis, crop_o, crop_d)
    sheet_stride: int = 1


def _crop(rgb: np.ndarray, box, size: int = 96, grow: float = 1.4) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = grow * max(box[2] - box[0], box[3] - box[1], 1.0)
    s = size / side
    m = np.float32([[s, 0, size / 2.0 - s * cx], [0, s, size / 2.0 - s * cy]])
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


class Evaluator:
    """Accumulates metrics frame by frame; ``report()`` at the end.

    ``cache`` (a dict) keeps the per-frame analysis of the original
    (boxes, landmarks, embeddings — in memory only) so that several outputs
    of the same original (a sweep) pay for it once.
    """

    def __init__(self, options: Optional[EvalOptions] = None,
                 recognizer: Optional[FaceRecognizer] = None,
                 keep_crops: bool = False, cache: Optional[dict] = None):
        self.opt = options or EvalOptions()
        self.rec = recognizer or default_recognizer()
        self.keep_crops = keep_crops
        self.cache = cache
        self.tracks: list[_Track] = []
        self.frames_seen = 0
        self.frame_metrics: list[dict] = []
        self.size = None
        self.mesh = MeshPose.create() if self.opt.mesh_pose else None
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- per frame
    def _analyse_original(self, index: int, rgb: np.ndarray) -> list:
        key = (index, self.opt.cnn, self.opt.upsample, self.opt.min_score, self.mesh is not None)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        rec = self.rec
        faces = []
        for box, score in rec.detect_scored(rgb, self.opt.upsample, self.opt.cnn, self.opt.min_score):
            p68 = rec.shape68(rgb, box)
            p5 = rec.shape5(rgb, box)
            faces.append({
                "box": box, "score": score, "p68": p68,
                "e": rec.embed(rgb, box=box, points5=p5),
                "pose": head_pose(p68, rgb.shape[:2]),
                "mesh": self.mesh.points(rgb, box) if self.mesh is not None else None,
                "expr": expression(p68),
            })
        if self.cache is not None:
            self.cache[key] = faces
        return faces

    def add_frame(self, index: int, rgb_o: np.ndarray, rgb_d: np.ndarray) -> None:
        opt, rec = self.opt, self.rec
        hw = rgb_o.shape[:2]
        self.size = (hw[1], hw[0])
        faces = self._analyse_original(index, rgb_o)
        out_boxes = self._detect_near(rgb_d, [f["box"] for f in faces])
        gray_o, gray_d = luma(rgb_o), luma(rgb_d)
        region = np.zeros(hw, bool)
        obs = []
        for f in faces:
            box, p68 = f["box"], f["p68"]
            d68 = rec.shape68(rgb_d, box)
            e_d = rec.embed(rgb_d, box=box, points5=rec.shape5(rgb_d, box))
            dis = rec.distance(f["e"], e_d)
            r_d = head_pose(d68, hw)
            pnp_err = rotation_angle_deg(f["pose"], r_d) if (f["pose"] is not None and r_d is not None) else None
            pose_err = pyr_err = None
            if f["mesh"] is not None:
                q = self.mesh.points(rgb_d, box)
                if q is not None:
                    r = relative_rotation(f["mesh"], q)
                    pose_err = rotation_angle_deg(np.eye(3), r)
                    pyr_err = np.abs(np.array(cv2.RQDecomp3x3(r)[0], np.float64))
            ex_d = expression(d68)
            core = _hull_mask(hw, [p68], -0.05 * face_width(p68))
            v_o, v_d = laplacian_variance(gray_o, core), laplacian_variance(gray_d, core)
            sharp = (v_d / v_o) if (v_o is not None and v_d is not None and v_o > 1e-6) else None
            region |= face_region_mask(hw, p68, d68, opt.dilate, opt.forehead)
            detected = any(box_iou(box, b) >= opt.detect_iou for b in out_boxes)
            o = _Obs(index, tuple(float(v) for v in box), f["score"], f["e"], e_d, dis, pose_err, pyr_err, pnp_err,
                     abs(f["expr"]["mouth"] - ex_d["mouth"]), abs(f["expr"]["eyes"] - ex_d["eyes"]),
                     sharp, detected)
            obs.append(o)
        self._link(obs, rgb_o, rgb_d)
        outside = ~region
        smap = ssim_map(gray_o, gray_d)
        self.frame_metrics.append({
            "frame": index,
            "faces": len(faces),
            "psnr": psnr(rgb_o, rgb_d),
            "ssim": ssim_mean(smap),
            "psnr_outside": psnr(rgb_o, rgb_d, outside),
            "ssim_outside": ssim_mean(smap, outside),
            "face_area": float(region.mean()),
        })
        self.frames_seen += 1

    def _detect_near(self, rgb: np.ndarray, boxes: list) -> list:
        """Detections in the output, searched in a window (3x the box) around each original box,
        upsampled so that the face is >= 80 px (dlib's HOG/MMOD window), within ``upsample``+1."""
        found = []
        h, w = rgb.shape[:2]
        for b in boxes:
            bw, bh = b[2] - b[0], b[3] - b[1]
            x0, y0 = int(max(0, b[0] - bw)), int(max(0, b[1] - bh))
            x1, y1 = int(min(w, b[2] + bw)), int(min(h, b[3] + bh))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            up = 0
            while up < self.opt.upsample + 1 and max(bw, bh) * 2 ** up < 80:
                up += 1
            roi = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            for d, _ in self.rec.detect_scored(roi, up, self.opt.cnn, self.opt.min_score):
                found.append((d[0] + x0, d[1] + y0, d[2] + x0, d[3] + y0))
        return found

    def _link_cost(self, a, b) -> float:
        """Normalised centre distance if a and b may be the same face, else _NO_LINK."""
        sa = math.sqrt(max(1e-6, (a[2] - a[0]) * (a[3] - a[1])))
        sb = math.sqrt(max(1e-6, (b[2] - b[0]) * (b[3] - b[1])))
        d = math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / ((sa + sb) / 2)
        if box_iou(a, b) >= self.opt.link_iou or (d <= self.opt.link_dist and 2 / 3 <= sa / sb <= 3 / 2):
            return d
        return _NO_LINK

    def _link(self, obs: list, rgb_o, rgb_d) -> None:
        from scipy.optimize import linear_sum_assignment

        now = self.frames_seen
        active = [t for t in self.tracks if now - t.last_seen <= self.opt.max_gap + 1]
        assigned = [None] * len(obs)
        if active and obs:
            cost = np.array([[self._link_cost(t.last_box, o.box) for o in obs] for t in active])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _NO_LINK:
                    assigned[c] = active[r]
        for o, t in zip(obs, assigned):
            if t is None:
                t = _Track(len(self.tracks), o.box, now)
                self.tracks.append(t)
            t.last_box, t.last_seen = o.box, now
            o.track = t.id
            t.obs.append(o)
            if self.keep_crops and (len(t.obs) - 1) % t.sheet_stride == 0:
                t.sheet.append((o.frame, o.dis, _crop(rgb_o, o.box), _crop(rgb_d, o.box)))
                if len(t.sheet) > 4 * max(1, self.opt.sheet_cols):  # bounded memory: thin out
                    t.sheet = t.sheet[::2]
                    t.sheet_stride *= 2

    # ---------------------------------------------------------------- summary
    def report(self) -> dict:
        opt = self.opt
        thr = opt.leak_threshold
        all_obs = [o for t in self.tracks for o in t.obs]
        tracks_out = []
        cross_mins = []
        intra_d, intra_o, intra_max = [], [], []
        means_d, means_o = [], []
        for t in self.tracks:
            e_o = np.stack([o.e_o for o in t.obs]).astype(np.float64)
            e_d = np.stack([o.e_d for o in t.obs]).astype(np.float64)
            dis = np.array([o.dis for o in t.obs])
            row = {
                "id": t.id,
                "face_frames": len(t.obs),
                "first_frame": t.obs[0].frame,
                "last_frame": t.obs[-1].frame,
                "dis_mean": _f(dis.mean()),
                "dis_min": _f(dis.min()),
                "leak_rate": _f(np.mean(dis < thr)),
                "dis_track_mean": _f(np.linalg.norm(e_d.mean(0) - e_o.mean(0))),
                "cross_frame_min": None,
                "cross_frame_leak_rate": None,
                "intra_track": None,
                "intra_track_max": None,
                "pose_error_deg": _f(_mean([o.pose_err for o in t.obs])),
                "detection_rate": _f(np.mean([o.detected for o in t.obs])),
            }
            means_d.append(e_d.mean(0))
            means_o.append(e_o.mean(0))
            if len(t.obs) >= 2:
                n = len(t.obs)
                gi = _even(n, opt.cross_sample)
                d = _cdist(e_d, e_o[gi])  # output at t vs originals at sampled t'
                d[np.arange(n)[:, None] == np.asarray(gi)[None, :]] = np.inf  # not the same frame
                m = d.min(1)
                m = m[np.isfinite(m)]
                if m.size:
                    cross_mins.append(m)
                    row["cross_frame_min"] = _f(m.min())
                    row["cross_frame_leak_rate"] = _f(np.mean(m < thr))
                si = _even(n, 200)
                pw = _pairwise(e_d[si])
                row["intra_track"] = _f(pw.mean())
                row["intra_track_max"] = _f(pw.max())
                intra_d.append(float(pw.mean()))
                intra_max.append(float(pw.max()))
                intra_o.append(_mean_pairwise(e_o[si]))
            tracks_out.append(row)

        inter_d = _pairwise(np.array(means_d)) if len(means_d) >= 2 else np.zeros(0)
        inter_o = _pairwise(np.array(means_o)) if len(means_o) >= 2 else np.zeros(0)
        dis_all = np.array([o.dis for o in all_obs]) if all_obs else np.zeros(0)
        cm = np.concatenate(cross_mins) if cross_mins else np.zeros(0)
        sharp = [o.sharp for o in all_obs if o.sharp is not None and o.sharp > 0]
        fm = self.frame_metrics

        rep = {
            "tool": "ideud-eval",
            "report_version": 1,
            "frames_evaluated": self.frames_seen,
            "seconds": round(time.perf_counter() - self._t0, 2),
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "options": {k: v for k, v in asdict(opt).items()},
            "detector": "dlib-mmod-cnn" if opt.cnn else "dlib-hog",
            "pose_model": "mediapipe-facemesh-3d" if self.mesh is not None else "dlib-pnp-only",
            "tracks_found": len(self.tracks),
            "face_frames": len(all_obs),
            "privacy": {
                "leak_threshold": thr,
                "dis_mean": _f(dis_all.mean()) if dis_all.size else None,
                "dis_median": _f(np.median(dis_all)) if dis_all.size else None,
                "dis_min": _f(dis_all.min()) if dis_all.size else None,
                "leak_rate": _f(np.mean(dis_all < thr)) if dis_all.size else None,
                "cross_frame_min": _f(cm.min()) if cm.size else None,
                "cross_frame_mean_min": _f(cm.mean()) if cm.size else None,
                "cross_frame_leak_rate": _f(np.mean(cm < thr)) if cm.size else None,
                "cross_frame_face_frames": int(cm.size),
                "dis_track_mean_min": _f(min((r["dis_track_mean"] for r in tracks_out), default=None)),
            },
            "utility": {
                "psnr": _f(_mean([m["psnr"] for m in fm])),
                "ssim": _f(_mean([m["ssim"] for m in fm])),
                "psnr_outside_faces": _f(_mean([m["psnr_outside"] for m in fm])),
                "ssim_outside_faces": _f(_mean([m["ssim_outside"] for m in fm])),
                "face_area_fraction": _f(_mean([m["face_area"] for m in fm])),
                "pose_error_deg_mean": _f(_mean([o.pose_err for o in all_obs])),
                "pose_error_deg_median": _f(_median([o.pose_err for o in all_obs])),
                "pose_error_deg_max": _f(max((o.pose_err for o in all_obs if o.pose_err is not None),
                                             default=None)),
                "yaw_error_deg": _f(_mean([o.pyr_err[1] for o in all_obs if o.pyr_err is not None])),
                "pitch_error_deg": _f(_mean([o.pyr_err[0] for o in all_obs if o.pyr_err is not None])),
                "roll_error_deg": _f(_mean([o.pyr_err[2] for o in all_obs if o.pyr_err is not None])),
                "pose_face_frames": sum(o.pose_err is not None for o in all_obs),
                "pose_error_pnp_deg": _f(_mean([o.pnp_err for o in all_obs])),
                "mouth_aperture_error": _f(_mean([o.mouth_err for o in all_obs])),
                "eye_aperture_error": _f(_mean([o.eyes_err for o in all_obs])),
                "sharpness_ratio": _f(math.exp(np.mean(np.log(sharp)))) if sharp else None,
                "detection_rate": _f(np.mean([o.detected for o in all_obs])) if all_obs else None,
            },
            "consistency": {
                "intra_track_mean": _f(np.mean(intra_d)) if intra_d else None,
                "intra_track_max": _f(max(intra_max)) if intra_max else None,
                "inter_track_min": _f(inter_d.min()) if inter_d.size else None,
                "inter_track_mean": _f(inter_d.mean()) if inter_d.size else None,
                "original_intra_track_mean": _f(np.mean(intra_o)) if intra_o else None,
                "original_inter_track_min": _f(inter_o.min()) if inter_o.size else None,
            },
            "tracks": tracks_out,
        }
        if opt.per_face:
            rep["faces"] = [{
                "frame": o.frame, "track": o.track, "box": [round(v, 1) for v in o.box],
                "dis": _f(o.dis), "pose_error_deg": _f(o.pose_err),
                "pose_error_pnp_deg": _f(o.pnp_err), "mouth_aperture_error": _f(o.mouth_err),
                "eye_aperture_error": _f(o.eyes_err), "sharpness_ratio": _f(o.sharp), "detected": o.detected,
            } for o in all_obs]
            rep["frames"] = [{k: (_f(v) if isinstance(v, float) else v) for k, v in m.items()} for m in fm]
        return rep

    def close(self) -> None:
        if self.mesh is not None:
            self.mesh.close()
            self.mesh = None

    # ---------------------------------------------------------------- contact sheet
    def contact_sheet(self, path) -> Optional[str]:
        """Before/after PNG: one row per track (longest first), original | output pairs.

        Shows the original faces: it is for the person running the
        evaluation.  Returns the path, or None if there is no face.
        """
        if not self.keep_crops:
            raise RuntimeError("contact sheet needs Evaluator(keep_crops=True)")
        tracks = sorted((t for t in self.tracks if t.sheet), key=lambda t: -len(t.obs))[: self.opt.sheet_rows]
        tracks.sort(key=lambda t: t.id)
        cs, gap, lab, head, foot = 96, 6, 110, 22, 16
        cols = max(1, min(self.opt.sheet_cols, max((len(t.sheet) for t in tracks), default=1)))
        width = lab + cols * (2 * cs + gap) + gap
        height = head + max(1, len(tracks)) * (cs + foot + gap) + gap
        sheet = np.full((height, width, 3), 255, np.uint8)
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(sheet, "each pair: original | de-identified (DIS = dlib distance, < 0.6 = same person)",
                    (6, 15), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        if not tracks:
            cv2.putText(sheet, "no faces found in the original", (6, head + 30), font, 0.5, (0, 0, 0), 1,
                        cv2.LINE_AA)
        for r, t in enumerate(tracks):
            y = head + r * (cs + foot + gap)
            dis = np.array([o.dis for o in t.obs])
            for k, txt in enumerate((f"track {t.id}", f"{len(t.obs)} face-frames", f"DIS {dis.mean():.2f}",
                                     f"leak {np.mean(dis < self.opt.leak_threshold):.0%}")):
                cv2.putText(sheet, txt, (6, y + 16 + 18 * k), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            pick = [t.sheet[i] for i in _even(len(t.sheet), cols)]
            for c, (frame, d, co, cd) in enumerate(pick):
                x = lab + c * (2 * cs + gap)
                sheet[y:y + cs, x:x + cs] = co
                sheet[y:y + cs, x + cs:x + 2 * cs] = cd
                color = (200, 0, 0) if d < self.opt.leak_threshold else (0, 120, 0)
                cv2.putText(sheet, f"f{frame} DIS {d:.2f}", (x + 2, y + cs + 12), font, 0.38, color, 1,
                            cv2.LINE_AA)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), sheet[:, :, ::-1]):
            raise OSError(f"cannot write {path}")
        return str(path)


def evaluate(original, deidentified, options: Optional[EvalOptions] = None, sheet=None,
             recognizer: Optional[FaceRecognizer] = None, cache: Optional[dict] = None,
             progress: Optional[Callable[[int], None]] = None) -> dict:
    """Evaluate a pair of videos/images; returns the report (JSON-ready dict).

    ``sheet``: path of a before/after contact sheet PNG to write (optional).
    Raises EvalInputError on bad input.
    """
    opt = options or EvalOptions()
    a, b = open_pair(original, deidentified, opt.max_frames)  # bad input fails before any model loads
    ev = Evaluator(opt, recognizer, keep_crops=sheet is not None, cache=cache)
    try:
        for i, fo, fd in iter_pair(original, deidentified, opt.max_frames, opt.every):
            ev.add_frame(i, fo, fd)
            if progress is not None:
                progress(ev.frames_seen)
    finally:
        ev.close()
    rep = ev.report()
    rep["original"] = a.path
    rep["deidentified"] = b.path
    rep["kind"] = a.kind
    rep["sheet"] = ev.contact_sheet(sheet) if sheet is not None else None
    return rep


def write_json(obj, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    return str(path)


def summary_lines(rep: dict) -> list:
    """A short human summary of a report."""
    p, u, c = rep["privacy"], rep["utility"], rep["consistency"]

    def fmt(v, spec=".2f", suffix=""):
        return "n/a" if v is None else f"{v:{spec}}{suffix}"

    per = 1000.0 * rep["seconds"] / max(1, rep["frames_evaluated"])
    lines = [f"{rep['frames_evaluated']} frame(s) evaluated ({rep['width']}x{rep['height']}, {rep['detector']}): "
             f"{rep['tracks_found']} track(s), {rep['face_frames']} face-frame(s); {rep['seconds']:.1f} s "
             f"({per:.0f} ms/frame)"]
    if not rep["face_frames"]:
        lines.append("no faces found in the original: privacy metrics not available")
    else:
        lines.append(f"privacy:     DIS mean {fmt(p['dis_mean'])} (min {fmt(p['dis_min'])}), "
                     f"leak rate {fmt(p['leak_rate'], '.1%')} (DIS < {p['leak_threshold']:g}); "
                     f"cross-frame min {fmt(p['cross_frame_min'])}, "
                     f"leak {fmt(p['cross_frame_leak_rate'], '.1%')}")
    lines.append(f"utility:     PSNR {fmt(u['psnr'], '.1f', ' dB')} "
                 f"(outside faces {fmt(u['psnr_outside_faces'], '.1f', ' dB')}), "
                 f"SSIM {fmt(u['ssim'], '.3f')} (outside {fmt(u['ssim_outside_faces'], '.3f')})")
    if rep["face_frames"]:
        lines.append(f"             pose error {fmt(u['pose_error_deg_mean'], '.1f', ' deg')} "
                     f"(yaw/pitch/roll {fmt(u['yaw_error_deg'], '.1f')}/{fmt(u['pitch_error_deg'], '.1f')}/"
                     f"{fmt(u['roll_error_deg'], '.1f')}; dlib PnP {fmt(u['pose_error_pnp_deg'], '.1f')}), "
                     f"mouth/eye aperture error {fmt(u['mouth_aperture_error'], '.3f')}/"
                     f"{fmt(u['eye_aperture_error'], '.3f')}, "
                     f"sharpness x{fmt(u['sharpness_ratio'])}, still detected {fmt(u['detection_rate'], '.0%')}")
        lines.append(f"consistency: intra-track {fmt(c['intra_track_mean'])} (max {fmt(c['intra_track_max'])}), "
                     f"inter-track min {fmt(c['inter_track_min'])} "
                     f"(originals: {fmt(c['original_intra_track_mean'])}, {fmt(c['original_inter_track_min'])})")
    return lines


# ====================================================================== sweep
SWEEP_COLUMNS = ["scale", "dis_mean", "dis_min", "leak_rate", "cross_frame_min", "cross_frame_leak_rate",
                 "psnr", "psnr_outside_faces", "ssim", "ssim_outside_faces", "pose_error_deg_mean",
                 "yaw_error_deg", "pitch_error_deg", "roll_error_deg", "pose_error_pnp_deg",
                 "mouth_aperture_error", "eye_aperture_error", "sharpness_ratio", "detection_rate",
                 "intra_track_mean", "seconds_run"]


def sweep(input, scales: Sequence[float], run_fn: Callable[[str, str, float], object], out_dir,
          options: Optional[EvalOptions] = None, recognizer: Optional[FaceRecognizer] = None,
          keep_outputs: bool = True, log: Optional[Callable[[str], None]] = None) -> dict:
    """DIS and utility against the de-identification ``scale`` (cf. the paper's Fig. 4).

    ``run_fn(src, dst, scale)`` must write the de-identified version of
    ``src`` to ``dst`` (for the pipeline: ``deidentify(src, dst,
    Options(scale=scale))``).  Outputs go to ``out_dir/scale_<s><ext>``
    (videos keep the input's extension, images are written as .png);
    ``out_dir`` gets sweep.json, sweep.csv and, if matplotlib can be
    imported, sweep.png.  Returns ``{"rows", "json", "csv", "plot", "note"}``.
    """
    src = Path(input)
    info = probe(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".png" if info.kind == "image" else (src.suffix or ".mp4")
    rec = recognizer or default_recognizer()
    cache: dict = {}
    rows = []
    for s in scales:
        s = float(s)
        dst = out / f"scale_{s:g}{suffix}"
        if dst.exists():
            dst.unlink()
        t0 = time.perf_counter()
        run_fn(str(src), str(dst), s)
        secs = time.perf_counter() - t0
        if not dst.is_file():
            raise RuntimeError(f"run function wrote no output for scale {s:g} ({dst})")
        rep = evaluate(src, dst, options, recognizer=rec, cache=cache)
        p, u, c = rep["privacy"], rep["utility"], rep["consistency"]
        row = {"scale": s, **{k: p.get(k, u.get(k, c.get(k))) for k in SWEEP_COLUMNS[1:-1]},
               "seconds_run": round(secs, 3)}
        rows.append(row)
        if log:
            log(f"scale {s:g}: DIS {_s(row['dis_mean'])}, leak {_s(row['leak_rate'])}, "
                f"PSNR {_s(row['psnr'])}, SSIM {_s(row['ssim'])}, pose err {_s(row['pose_error_deg_mean'])}")
        if not keep_outputs:
            dst.unlink()
    doc = {"tool": "ideud-eval sweep", "input": str(src), "kind": info.kind,
           "options": asdict(options or EvalOptions()), "rows": rows}
    jpath = write_json(doc, out / "sweep.json")
    cpath = out / "sweep.csv"
    with open(cpath, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SWEEP_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in SWEEP_COLUMNS})
    plot = plot_sweep(rows, out / "sweep.png")
    note = None if plot else "matplotlib is not installed: wrote sweep.json and sweep.csv only, no plot"
    return {"rows": rows, "json": jpath, "csv": str(cpath), "plot": plot, "note": note}


def plot_sweep(rows: list, path) -> Optional[str]:
    """Privacy and utility against scale (PNG); None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    xs = [r["scale"] for r in rows]

    def col(k):
        return [np.nan if r[k] is None else r[k] for r in rows]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(xs, col("dis_mean"), "o-", label="DIS mean (same place)")
    a1.plot(xs, col("cross_frame_min"), "s--", label="cross-frame min")
    a1.plot(xs, col("leak_rate"), "^-", label="leak rate")
    a1.axhline(THRESHOLD, color="grey", lw=0.8, ls=":", label="dlib threshold 0.6")
    a1.set_xlabel("scale")
    a1.set_title("privacy (higher DIS = better)")
    a1.legend(fontsize=8, loc="best")
    a1.grid(alpha=0.3)
    a2.plot(xs, col("ssim"), "o-", label="SSIM")
    a2.plot(xs, col("ssim_outside_faces"), "s--", label="SSIM outside faces")
    a2.plot(xs, col("detection_rate"), "^-", label="still detected")
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("scale")
    a2.set_title("utility")
    a3 = a2.twinx()
    a3.plot(xs, col("pose_error_deg_mean"), "d:", color="tab:red", label="pose error (deg)")
    a3.set_ylabel("pose error (deg)")
    h1, l1 = a2.get_legend_handles_labels()
    h2, l2 = a3.get_legend_handles_labels()
    a2.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


# ====================================================================== helpers
def _f(v, nd: int = 4):
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return round(v, nd)


def _s(v):
    return "n/a" if v is None else f"{v:.3g}"


def _mean(vals):
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _median(vals):
    v = [x for x in vals if x is not None]
    return float(np.median(v)) if v else None


def _even(n: int, k: int) -> list:
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d, 0.0))


def _pairwise(e: np.ndarray) -> np.ndarray:
    n = len(e)
    d = _cdist(e, e)
    return d[np.triu_indices(n, 1)]


def _mean_pairwise(e: np.ndarray) -> float:
    p = _pairwise(e)
    return float(p.mean()) if p.size else 0.0
