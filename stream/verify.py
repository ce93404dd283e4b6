"""Second opinions on the face detector's finds, so that face-free pictures stop getting faces.

CenterFace is tuned for recall (threshold 0.3): on a Mandelbrot zoom it finds a "face" in most
frames, and the pipeline obfuscates it. Raising the threshold would lose real faces, and a single
verifier (FaceMesh or BlazeFace on the crop) also rejects hard real faces (small, blurred, turned)
-- which would then be written raw. So a detection is dropped only when every cue agrees that it
is not a face (fail closed):

* its CenterFace score is under `keep_score` (0.8; false finds measured at most 0.73), and
* it is big enough in the detector's input to be judged (`min_judged_px`; smaller finds are kept), and
* no confirmer finds a face on an upscaled crop around it: MediaPipe FaceMesh's face presence on
  the detector's own ROI, BlazeFace full range, dlib's HOG detector; and, where the crop could be
  skin (skin-coloured, or grey footage), HOG below its own threshold and dlib's CNN detector
  (slow, so asked last and only there).

BlazeFace short range is not a confirmer: it "confirms" over half of the Mandelbrot false faces.

The confirmers are general face finders: a dog's face in close-up (or a round headlamp) fits
FaceMesh, and BlazeFace and HOG may agree. So a confirmed weak find that is small (< 64 px in the
detector's input) or a close-up (>= 128 px) is still dropped when two human-face cues both reject
it: CenterFace itself, asked again on the crop with the face at the sizes it finds best
(`redetect`; real faces score higher there than in the frame, the dog and the lamp lower), and
dlib's CNN. The CNN is asked only when the re-detection fails, so real faces seldom pay for it.
A small find with sharp detail faces a higher re-detection bar (`sharp_veto`): sharp real faces
re-score high, and grey Mandelbrot finds that HOG or FaceMesh took for faces do not.

The confirmers miss some real faces at the crop's scale: blurred, half covered or colourless
(grey) ones, up close. Before such a find is dropped it gets second opinions (`_second_opinion`):
CenterFace re-asked where the crop could be skin or is colourless, or is a close-up (alone it
would keep Mandelbrot's false finds, which are none of these), or where BlazeFace says face on
the crop shrunk so that the face is 32-48 px (blur matters little there; its yes alone kept a
blurred motorcycle part). They run only where every confirmer said no, and spare those real
faces dlib's CNN.

Heavily blurred small faces (a 22 px face whose every other cue matched a round headlamp's) get a
last look before dlib's CNN: BlazeFace on the find shrunk until its box is 16-20 px, with up to
4 x the box of real surroundings (`tiny_views`). There the blur is gone and the whole head shows
(the detector's box on a blurred face is often smaller than the head); every false find of the
face-free sets that gets this far scores nothing there. Bigger finds are not asked
(`tiny_view_max_px`): a blurred dog's face in close-up scored like a real one.

Heavier blur (sigma = face size / 14 to / 10) still beat those views on some real faces, a grey
portrait or a colour one: the blur had taken their eyes and mouth. Where the crop could be skin
(skin-coloured or colourless, as for dlib's CNN) and the find itself is blurred (`fine_detail`: a
blur-aware cue), CenterFace is re-asked once more on the crop sharpened (`sharpened`, an unsharp
mask about a twelfth of the face wide): the blurred real faces score 0.47 and more there, the
blurred skin-coloured or grey face-free finds (the headlamp, the dog, grey Mandelbrot, blurred
copies of them) 0.21 at most. Both gates matter: colourful Mandelbrot finds, blurred, re-score up
to 0.46 when sharpened, and sharp grey Mandelbrot finds up to 0.34.

A find that overlaps one confirmed in the last few frames is kept without asking again (a real
face is confirmed once, not on every frame; keeping is the fail-closed direction). Detection worker
processes (stream/workers.py) run the same code through `make_detector`; each remembers its own
frames, which can only keep a find that one process would have dropped. Nothing here is kept or
logged beyond the boxes of recent confirmed finds.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from ideud.models.geometry import iou_matrix
from ideud.stream.protocols import Detector, Scale
from ideud.stream.types import Face

CROP_PX = 192  # side of the square crop the confirmers see (the face fills about half of it)
CROP_CONTEXT = 2.0  # crop side / face size


def _scale_xy(scale: Scale) -> tuple[float, float]:
    if np.ndim(scale) == 0:
        return float(scale), float(scale)
    return float(scale[0]), float(scale[1])


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


def _near_centre(boxes, n: int, tol: float = 0.25) -> bool:
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


def fine_detail(image: np.ndarray, box: np.ndarray) -> float:
    """How much fine detail the find has for its contrast: the mean |Laplacian| of the box's grey
    levels (the box resized to 64 px) over their standard deviation. A heavily blurred face has
    little (<= 0.11 at sigma = face size / 14 and more); a sharp fractal find has ~1."""
    g = cv2.cvtColor(face_crop(image, box, out=64, context=1.0)[0], cv2.COLOR_RGB2GRAY).astype(np.float32)
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
                return _blaze_best(self._get(name).process(crop), n, lambda box: _near_centre([box], n))
            if name == "hog":
                dets, scores, _ = self._get(name).run(crop, 0, -0.5)
                best = 0.0
                for r, s in zip(dets, scores):
                    if _near_centre([(r.left(), r.top(), r.right(), r.bottom())], n):
                        best = max(best, float(s) + 1.0)  # > 0 from dlib's -1 adjusted threshold
                return best
            if name == "blaze_small":  # BlazeFace full range, the face shrunk to each of SMALL_FACE_PX
                return self._best_on_views(small_views(crop))
            if name == "cnn":
                best = 0.0
                for d in self._get(name)(crop, 0):
                    r = d.rect
                    if _near_centre([(r.left(), r.top(), r.right(), r.bottom())], n):
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


@dataclass
class VerifyPolicy:
    """When a detection may be dropped (all must hold); the numbers come from
    tools/bench/bench_false_faces.py (false finds on face-free footage vs. found real faces)."""

    keep_score: float = 0.8  # CenterFace score at or above which a find is always kept (false: <= 0.73)
    min_judged_px: float = 16.0  # finds smaller than this (detector-input px) are always kept
    confirmers: tuple = ("mesh", "blaze_full", "hog")  # any one of them finding the face keeps it
    # Where the crop's centre could be skin (at least this share of skin colour, or no colour at
    # all: grey footage) two weaker cues count too: dlib's HOG below its own threshold (down to
    # -0.5; a Mandelbrot crop reached -0.49, blurred faces -0.42) and dlib's CNN (~0.4 s a crop on
    # a CPU core, so asked last and only there).
    skin_min: float = 0.3
    remember_calls: int = 8  # a confirmed find is remembered for this many detect() calls
    remember_iou: float = 0.3  # a find overlapping a remembered one this much is kept unasked
    grey_chroma: float = 3.0  # chroma spread (YCrCb levels) under which a crop counts as colourless
    # A confirmed find is vetoed when CenterFace's best score on its crop (face at 48, 64, 96 px;
    # level and as found) stays under `redetect_veto` and dlib's CNN finds nothing -- only for
    # finds (detector px) in `veto_sizes`. Build portraits: real faces under 64 px re-score >= 0.62,
    # close-ups of 114-228 px (blurred, dim, turned, half covered) >= 0.36; but a 101 px face whose
    # lower half another head hid re-scored 0.085, so 64-128 px is never vetoed. Animals set:
    # the lamp (21-26 px) <= 0.17, the dog (174-216 px) <= 0.07.
    # Second opinions where the confirmers miss (`_second_opinion`), from build portraits at
    # 24-224 px (blurred: sigma = size / 20; half covered) vs. the face-free sets' false finds
    # (1,000 frames each). BlazeFace on the face shrunk: real >= 0.62 (a yes asks CenterFace again).
    small_view_score: float = 0.6
    small_view_min_px: float = 48.0
    small_view_score_small: float = 0.65  # under 48 px (a Mandelbrot find at 41 px: 0.61)
    # CenterFace re-asked, where the crop may be skin (`skin_min`), pale, a close-up, or BlazeFace
    # shrunk said yes (>= 0.65 under 48 px): real faces the rest missed (96 more build portraits,
    # half covered) >= 0.50; the lamp <= 0.32, the dog <= 0.07, other animals' skin-coloured finds <= 0.06;
    # Mandelbrot up to 0.68 but skinless (share <= 0.11), colourful (chroma >= 69), under 68 px.
    # Grey Mandelbrot re-scores 0.455-0.466 and a blurred dog close-up 0.477; real faces >= 0.50.
    redetect_keep: float = 0.49
    pale_chroma: float = 8.0  # grey footage, a grey portrait with a coloured cover (<= 3.8); animals >= 14
    redetect_keep_px: float = 96.0
    redetect_sides: tuple = (96, 128, 192)
    redetect_veto: float = 0.25
    veto_sizes: tuple = ((16.0, 64.0), (128.0, math.inf))
    # The veto's bar for a small sharp find (under `sharp_veto_max_px`, `fine_detail` over
    # `sharp_max_detail`): sharp real faces there re-score >= 0.56 (build portraits 0-23; only
    # blurred ones go lower, 0.29), the grey Mandelbrot finds HOG or FaceMesh confirm 0.34-0.42.
    sharp_veto: float = 0.5
    sharp_veto_max_px: float = 64.0
    # Last, where every cue above said no: BlazeFace on the tiny views (`tiny_views`). Build
    # portraits 0-479 at 32-64 px blurred with sigma = size/20, /14, /10: of the 68 real faces
    # dropped before, it keeps 60 (scores 0.62-0.89), the 22 px face like the headlamp among them;
    # the 171 false finds of the face-free sets that get this far (Mandelbrot, the headlamp, ...)
    # score 0 (no detection at all). A yes keeps the find without the veto (the lamp scores 0 here).
    # Checked after, not tuned on: build portraits 480-699, 36 -> 6 dropped; held out, 13 -> 2.
    tiny_view_score: float = 0.5
    # Only for small finds: the real faces they keep (faces of 32-64 px in the frame) are 20-50 px
    # finds; animals blurred 2 px: a dog's face in close-up (146-152 px) and a skin-coloured
    # motorcycle part (59 px) scored 0.63-0.68 there.
    tiny_view_max_px: float = 56.0
    # Then, only for a blurred find (`fine_detail` at most `sharp_max_detail`) where the crop could
    # be skin (`skin_min`, or colourless): CenterFace re-asked on the crop sharpened (`sharpened`:
    # sigma 1/24 of the crop, i.e. ~1/12 of the face; amount 4). Build portraits 0-479 at 32-64 px,
    # sigma = size/14 and size/10: the 64 skin or grey real finds that get this far have detail
    # <= 0.11 and re-score 0.47-0.86 (the 8 every cue dropped: 0.48-0.71). Face-free finds that
    # get this far, skin or grey, from the face-free sets, their blurred copies (sigma 2-7 px) and
    # grey copies: 52 blurred ones re-score <= 0.21; the bar sits midway. Sharp ones are not asked:
    # grey Mandelbrot finds with detail 1.0-1.3 re-score up to 0.34. The colourful Mandelbrot finds,
    # blurred, re-score up to 0.46 sharpened: the skin gate matters. Neighbouring sharpenings
    # (sigma 1/32-1/19, amount 2.5-6) keep real and face-free finds apart too, with less room.
    sharp_max_detail: float = 0.2
    sharp_sigma_share: float = 1 / 24
    sharp_amount: float = 4.0
    sharp_redetect_keep: float = 0.35


class VerifyingDetector:
    """A `Detector` that drops the finds every cue of `VerifyPolicy` calls no face.

    Wraps any detector; `input_size` and the rest of its attributes are the wrapped one's.
    `dropped` counts the finds dropped (for the benchmark; the pipeline does not read it)."""

    def __init__(self, inner: Detector, policy: Optional[VerifyPolicy] = None):
        self.inner = inner
        self.policy = policy or VerifyPolicy()
        self.confirmers = Confirmers()
        self.dropped = 0
        self.confirmed: list[list[np.ndarray]] = []  # per recent call: boxes (detector px) confirmed

    _OWN = ("inner", "policy", "confirmers", "dropped", "confirmed")

    def __getattr__(self, name):  # name, threshold, min_size, ... of the wrapped detector
        if name in self._OWN:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __setattr__(self, name, value):  # det.threshold = 0.5 sets the wrapped detector's
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return self.inner.input_size(width, height)

    def warmup(self) -> None:
        """Build every confirmer now (~2-4 s on these CPUs) rather than at the first weak find,
        where it would stall that frame. Optional: nothing depends on it."""
        crop = np.zeros((CROP_PX, CROP_PX, 3), np.uint8)
        for name in (*self.policy.confirmers, "cnn"):
            self.confirmers.run(name, crop)

    def is_false(self, image_rgb: np.ndarray, face: Face, scale: Scale = 1.0) -> bool:
        """True only when every cue says `face` (full-frame coordinates) is not a face, or the
        confirmers' yes is vetoed by the human-face cues (`_vetoed`)."""
        p = self.policy
        if face.score >= p.keep_score:
            return False
        sx, sy = _scale_xy(scale)
        box = np.asarray(face.box, np.float64) / [sx, sy, sx, sy]
        if max(box[2] - box[0], box[3] - box[1]) < p.min_judged_px:
            return False
        crop, _, _, _ = face_crop(image_rgb, box)
        roll = face_roll(face, sx, sy)
        maybe_skin = skin_share(crop) >= p.skin_min or chroma_spread(crop) < p.grey_chroma
        size_px = max(box[2] - box[0], box[3] - box[1])
        detail = fine_detail(image_rgb, box)  # cheap: a 64 px resize and a Laplacian
        for name in p.confirmers:
            found = self.confirmers.run(name, crop, roll)
            # HOG's confidences are its score + 1: >= 1 is over dlib's own threshold
            if found >= 1.0 or (found > 0 and (name != "hog" or maybe_skin)):
                return self._vetoed(crop, size_px, roll, detail)
        opinion = self._second_opinion(crop, size_px, roll, maybe_skin)
        if opinion == "redetect" and p.redetect_keep >= p.redetect_veto:
            return False  # CenterFace re-asked already scored over the veto's bar: asking again cannot veto
        if opinion:
            return self._vetoed(crop, size_px, roll, detail)
        if size_px < p.tiny_view_max_px and self.confirmers.tiny(image_rgb, box) >= p.tiny_view_score:
            return False  # a heavily blurred small face: kept (before dlib's CNN, which is slow)
        if not maybe_skin:
            return True
        if detail <= p.sharp_max_detail and self.sharp_redetect(crop) >= p.sharp_redetect_keep:
            return False  # a heavily blurred face, its features back once sharpened (before the CNN too)
        return not self.confirmers.run("cnn", crop) > 0

    def sharp_redetect(self, crop: np.ndarray) -> float:
        """CenterFace re-asked (`redetect`, as found: no levelling) on the crop `sharpened`."""
        p = self.policy
        return self.redetect(sharpened(crop, p.sharp_sigma_share, p.sharp_amount), enough=p.sharp_redetect_keep)

    def _second_opinion(self, crop: np.ndarray, size_px: float, roll: float, maybe_skin: bool) -> Optional[str]:
        """"redetect" where the second opinions say face, else None: for the real faces the confirmers
        miss at the crop's scale (blurred, half covered, colourless), so that they are not dropped:

        * BlazeFace on the face shrunk to 32-48 px (`small_views`: blur there is what it is used to
          at that size). Its yes alone is not enough: a blurred skin-coloured motorcycle part (66 px)
          got 0.64 there, and the lamp of the animals set (23-28 px) up to 0.84; so CenterFace
          re-asked must agree (real faces it kept re-score >= 0.64).
        * CenterFace re-asked (`redetect`) where the crop could be a face by its colour (skin, or
          none: grey footage), by the shrunk BlazeFace's weaker yes, or is a close-up. Alone it
          would keep Mandelbrot's false finds (re-scored up to 0.68), but those are colourful,
          skinless and under 68 px; the skin-coloured false finds of the animals set (the lamp,
          the dog, others) re-score <= 0.32."""
        p = self.policy
        small = self.confirmers.run("blaze_small", crop)
        if not ((small >= p.small_view_score and size_px >= p.small_view_min_px)
                or small >= p.small_view_score_small or maybe_skin or chroma_spread(crop) < p.pale_chroma
                or size_px >= p.redetect_keep_px):
            return None
        return "redetect" if self.redetect(crop, roll, enough=p.redetect_keep) >= p.redetect_keep else None

    def redetect(self, crop: np.ndarray, roll: float = 0.0, enough: float = math.inf) -> float:
        """The wrapped detector's best score for a face at the crop's centre, the crop resized to
        each of `redetect_sides`, as it is and turned so that the eye line (`roll`, from keypoints
        that may be wrong) is level; stops once a score reaches `enough`. 1.0 where the wrapped
        detector cannot be asked (then nothing is vetoed)."""
        raw = getattr(self.inner, "raw", None)
        if raw is None:
            return 1.0
        n = crop.shape[0]
        views = [crop]
        if abs(roll) > 0.05:
            m = cv2.getRotationMatrix2D((n / 2, n / 2), math.degrees(roll), 1.0)
            views.append(cv2.warpAffine(crop, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        best = 0.0
        for view in views:
            for side in self.policy.redetect_sides:
                c = view if side == n else cv2.resize(view, (side, side), interpolation=cv2.INTER_AREA)
                boxes, scores, _ = raw(c, 0.05)
                for b, s in zip(boxes, scores):
                    if s > best and _near_centre([b], side):
                        best = float(s)
                if best >= enough:
                    return best
        return best

    def _vetoed(self, crop: np.ndarray, size_px: float, roll: float = 0.0, detail: float = 0.0) -> bool:
        """A confirmed find that CenterFace (re-asked) and dlib's CNN both call no human face.
        `detail`: the find's `fine_detail` (a sharp small find faces a higher bar, `sharp_veto`)."""
        p = self.policy
        if not any(lo <= size_px < hi for lo, hi in p.veto_sizes):
            return False
        bar = p.sharp_veto if size_px < p.sharp_veto_max_px and detail > p.sharp_max_detail else p.redetect_veto
        return self.redetect(crop, roll, enough=bar) < bar and self.confirmers.run("cnn", crop) <= 0

    def _remembered(self, box: np.ndarray) -> bool:
        recent = [b for call in self.confirmed for b in call]
        return bool(recent) and float(iou_matrix(box[None], np.asarray(recent)).max()) >= self.policy.remember_iou

    def detect(self, image_rgb: np.ndarray, scale: Scale = 1.0) -> list[Face]:
        faces = self.inner.detect(image_rgb, scale)
        sx, sy = _scale_xy(scale)
        keep, confirmed = [], []
        for f in faces:
            box = np.asarray(f.box, np.float64) / [sx, sy, sx, sy]
            if f.score < self.policy.keep_score and self._remembered(box):
                keep.append(f)
            elif not self.is_false(image_rgb, f, scale):
                keep.append(f)
            else:
                continue
            if f.score < self.policy.keep_score:
                confirmed.append(box)
        self.confirmed = (self.confirmed + [confirmed])[-self.policy.remember_calls:]
        self.dropped += len(faces) - len(keep)
        return keep
