"""What the false-face verifier (stream/verify.py) looks at: a square crop around a find, its
colour and fine detail, the views of it BlazeFace judges best (the face shrunk to 32-48 px; the
find shrunk to a 16-20 px box with its surroundings), an unsharp-masked copy for blurred finds, and
the independent face finders asked about the crop's centre (`Confirmers`). No decisions here: the
policy and the order of asking are stream/verify.py's."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from ideud.stream.types import Face

CROP_PX = 192  # side of the square crop the confirmers see (the face fills about half of it)
CROP_CONTEXT = 2.0  # crop side / face size


def face_crop(image: np.ndarray, box: np.ndarray, out: int = CROP_PX, context: float = CROP_CONTEXT):
    """A square crop `context` x the face size around `box` (image pixels), resized to `out` px.
    Returns (crop, k, x0, y0): crop pixel = (image pixel - (x0, y0)) * k."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1], 1.0) * context
    k = out / side
    x0, y0 = cx - side / 2, cy - side / 2
    m = np.float32([[k, 0, -x0 * k], [0, k, -y0 * k]])
    interp = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    crop = cv2.warpAffine(image, m, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return crop, k, x0, y0


def skin_share(crop: np.ndarray) -> float:
    """Share of skin-coloured pixels (YCrCb box of Chai & Ngan) in the crop's central ellipse
    (the face itself, about half the crop)."""
    n = crop.shape[0]
    ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
    mask = np.zeros((n, n), np.uint8)
    cv2.ellipse(mask, (n // 2, n // 2), (n // 5, n // 4), 0, 0, 360, 1, -1)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    skin = (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127) & (y >= 30)
    return float(skin[mask > 0].mean())


def chroma_spread(crop: np.ndarray) -> float:
    """How far the crop's colours stray from grey (mean |Cr - 128| + |Cb - 128|): ~0 for grey footage."""
    ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    return float(np.abs(ycc[..., 1:] - 128.0).sum(-1).mean())


def near_centre(boxes, n: int, tol: float = 0.25) -> bool:
    """Any box (crop pixels) centred within `tol` x n of the crop centre and of a plausible size."""
    for x0, y0, x1, y1 in boxes:
        s = max(x1 - x0, y1 - y0)
        if math.hypot((x0 + x1) / 2 - n / 2, (y0 + y1) / 2 - n / 2) <= tol * n and 0.2 * n <= s <= 1.0 * n:
            return True
    return False


SMALL_FACE_PX = (32, 40, 48)  # face sizes of the second-scale views (BlazeFace's comfortable range)
SMALL_VIEW_PX = 192  # BlazeFace full range's input side


def small_views(crop: np.ndarray):
    """The crop (face about half its side) shrunk so that the face is each of SMALL_FACE_PX, centred
    on a SMALL_VIEW_PX canvas (edges replicated): a blurred big face looks like a sharp small one
    there. Yields (view, face px)."""
    n = crop.shape[0]
    for face_px in SMALL_FACE_PX:
        m = max(8, int(round(n * face_px / (n / CROP_CONTEXT))))
        yield _on_canvas(cv2.resize(crop, (m, m), interpolation=cv2.INTER_AREA)), face_px


def _on_canvas(img: np.ndarray) -> np.ndarray:
    """A square view centred on a SMALL_VIEW_PX canvas, edges replicated (BlazeFace full range's input)."""
    m = img.shape[0]
    lo = (SMALL_VIEW_PX - m) // 2
    return cv2.copyMakeBorder(img, lo, SMALL_VIEW_PX - m - lo, lo, SMALL_VIEW_PX - m - lo, cv2.BORDER_REPLICATE)


# (crop context, box px) of the tiny views: the find shrunk until its box is 16-20 px on BlazeFace's
# canvas, with real surroundings (up to 4 x the box) instead of replicated edges
TINY_VIEWS = ((4.0, 16), (2.0, 20))


def tiny_views(image: np.ndarray, box: np.ndarray):
    """The find `box` (image pixels) shrunk so that the box is each of TINY_VIEWS' sizes, with that
    much of the image around it, centred on a SMALL_VIEW_PX canvas (edges replicated). A heavily
    blurred small face is a sharp tiny one there, and a detected box smaller than the blurred head
    leaves the head whole in the view. Yields (view, box px)."""
    for context, box_px in TINY_VIEWS:
        side = int(round(box_px * context))
        yield _on_canvas(face_crop(image, box, out=side, context=context)[0]), box_px


def mirrored_halves(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crop's left half beside its own mirror image, and the right half's likewise: a face half
    hidden behind something (CenterFace boxes the cover and the visible half, the box's middle near
    the face's) is a whole, symmetric face in one of them."""
    n = crop.shape[1] // 2
    left, right = crop[:, :n], crop[:, n:2 * n]
    return (np.ascontiguousarray(np.hstack([left, left[:, ::-1]])),
            np.ascontiguousarray(np.hstack([right[:, ::-1], right])))


def fine_detail(image: np.ndarray, box: np.ndarray) -> float:
    """How much fine detail the find has for its contrast: the mean |Laplacian| of the box's grey
    levels (the box resized to 64 px) over their standard deviation. A heavily blurred face has
    little (<= 0.11 at sigma = face size / 14 and more); a sharp fractal find has ~1."""
    return laplacian_contrast(cv2.cvtColor(face_crop(image, box, out=64, context=1.0)[0], cv2.COLOR_RGB2GRAY))


def laplacian_contrast(grey: np.ndarray) -> float:
    """The mean |Laplacian| of grey levels over their standard deviation: fine detail for the contrast
    (blur lowers it; `fine_detail` here, the privacy guard's `guard_views.face_detail`)."""
    g = grey.astype(np.float32)
    return float(np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1)).mean() / (g.std() + 1e-3))


def sharpened(crop: np.ndarray, sigma_share: float, amount: float) -> np.ndarray:
    """The crop with an unsharp mask: crop + amount x (crop - Gaussian(crop, sigma_share x side)).
    It gives a heavily blurred face back its eyes and mouth edges (a cheap stand-in for
    deconvolution; the blur's own size is not known)."""
    f = crop.astype(np.float32)
    soft = cv2.GaussianBlur(f, (0, 0), sigma_share * crop.shape[0])
    return np.clip(f + amount * (f - soft), 0, 255).astype(np.uint8)


def _blaze_best(result, n: int, keep) -> float:
    """The highest score among a BlazeFace result's detections whose box (pixels of the n-px square
    it ran on) `keep` accepts; 0 if none."""
    best = 0.0
    for d in result.detections or ():
        bb = d.location_data.relative_bounding_box
        if keep([bb.xmin * n, bb.ymin * n, (bb.xmin + bb.width) * n, (bb.ymin + bb.height) * n]):
            best = max(best, float(d.score[0]))
    return best


def _on_face(box, n: int, face_px: float) -> bool:
    """A box (view pixels) on the face placed at the view's centre at `face_px`: centre within half
    the face size, size 0.5-2.5 x."""
    s = max(box[2] - box[0], box[3] - box[1])
    off = math.hypot((box[0] + box[2]) / 2 - n / 2, (box[1] + box[3]) / 2 - n / 2)
    return off <= 0.5 * face_px and 0.5 * face_px <= s <= 2.5 * face_px


@dataclass
class Confirmers:
    """The independent face finders run on a face crop. Built lazily, once; calls serialised."""

    _built: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _get(self, name: str):
        if name not in self._built:
            if name == "mesh":
                from ideud.models.facemesh import FaceMesh

                self._built[name] = FaceMesh()
            elif name in ("blaze_short", "blaze_full"):
                import mediapipe as mp

                self._built[name] = mp.solutions.face_detection.FaceDetection(
                    model_selection=int(name == "blaze_full"), min_detection_confidence=0.5)
            elif name == "hog":
                import dlib

                self._built[name] = dlib.get_frontal_face_detector()
            elif name == "cnn":
                import dlib

                from ideud.models.recognizer import model_dir

                self._built[name] = dlib.cnn_face_detection_model_v1(str(model_dir() / "mmod_human_face_detector.dat"))
        return self._built[name]

    def run(self, name: str, crop: np.ndarray, roll: float = 0.0) -> float:
        """A confidence that the crop's centre holds a face (0: none found)."""
        n = crop.shape[0]
        with self._lock:
            if name == "mesh":
                from ideud.models.facemesh import Roi

                lm = self._get(name)(crop, Roi(n / 2, n / 2, n / CROP_CONTEXT * 1.6, roll))
                if lm is None:
                    return 0.0
                c = (lm[:, :2].min(0) + lm[:, :2].max(0)) / 2
                return float(math.hypot(*(c - n / 2)) <= 0.3 * n)
            if name in ("blaze_short", "blaze_full"):
                return _blaze_best(self._get(name).process(crop), n, lambda box: near_centre([box], n))
            if name == "hog":
                dets, scores, _ = self._get(name).run(crop, 0, -0.5)
                best = 0.0
                for r, s in zip(dets, scores):
                    if near_centre([(r.left(), r.top(), r.right(), r.bottom())], n):
                        best = max(best, float(s) + 1.0)  # > 0 from dlib's -1 adjusted threshold
                return best
            if name == "blaze_small":  # BlazeFace full range, the face shrunk to each of SMALL_FACE_PX
                return self._best_on_views(small_views(crop))
            if name == "cnn":
                best = 0.0
                for d in self._get(name)(crop, 0):
                    r = d.rect
                    if near_centre([(r.left(), r.top(), r.right(), r.bottom())], n):
                        best = max(best, float(d.confidence) + 1.0)
                return best
        raise ValueError(name)

    def tiny(self, image: np.ndarray, box: np.ndarray) -> float:
        """BlazeFace full range's best score for a face on the find in its tiny views (`tiny_views`)."""
        with self._lock:
            return self._best_on_views(tiny_views(image, box))

    def _best_on_views(self, views) -> float:
        """BlazeFace full range's best score for a face where each (view, face px) placed it (lock held)."""
        best = 0.0
        for view, face_px in views:
            m = view.shape[0]
            best = max(best, _blaze_best(self._get("blaze_full").process(view), m,
                                         lambda box: _on_face(box, m, face_px)))
        return best


def face_roll(face: Face, sx: float, sy: float) -> float:
    """The eye line's roll (MediaPipe's convention), from the detector's keypoints; 0 without them."""
    if face.keypoints is None or len(face.keypoints) < 2:
        return 0.0
    r, l = face.keypoints[0] / [sx, sy], face.keypoints[1] / [sx, sy]
    return -math.atan2(-(l[1] - r[1]), l[0] - r[0])
