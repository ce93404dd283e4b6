"""Second opinions on the face detector's finds, so that face-free pictures stop getting faces.

CenterFace is tuned for recall (threshold 0.3): on a Mandelbrot zoom it finds a "face" in most
frames, and the pipeline obfuscates it. Raising the threshold would lose real faces, and a single
verifier (FaceMesh or BlazeFace on the crop) also rejects hard real faces (small, blurred, turned)
-- which would then be written raw. So a detection is dropped only when every cue agrees that it
is not a face (fail closed):

* its CenterFace score is under `keep_score` (0.8; false finds measured at most 0.73), and
* it is big enough in the detector's input to be judged (`min_judged_px`; smaller finds are kept,
  but for grey ones, below, and those big in a large frame: stream/verify_frame.py), and
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

Grey footage loses the colour gate: every grey crop could be skin, so every grey find gets the
generous last cues. Three checks hold grey finds only (colour footage is judged as before): grey
finds of 12-16 px, which colour ones skip as too small to judge, are dropped when no cue at all
takes them for a face (`grey_small_*`); a sharp grey find that only dlib's CNN accepts must keep
the CNN's yes on a mirrored or enlarged view (`grey_cnn_recheck`); and a blurred grey find the
sharpened look keeps is not vetoed (`grey_veto_sharpened`: it would not be dropped unconfirmed).

Each of those rescues is one cue, and through the video path (H.264, then swscale) each let a
false find through on its own. So a find kept by a weak path -- a confirmer's yes on a small find,
CenterFace re-asked, the tiny views, the sharpened look -- also needs a second cue that takes it
for a face (`_corroborated`), and colour finds of 12-16 px need one: real faces those paths keep
showed two or more, the false finds one or none (thirteenth session, `VerifyPolicy.corroborate`).

A face half hidden behind something (a door, a pillar, another head) is boxed by CenterFace with
its cover, and every cue misses it on the crop. So a narrow find about to be dropped is looked at
once more (`_half_face`): each half of the crop beside its own mirror image is a whole face if the
find is one, and two cues must agree there (stricter ones for a box less narrow: a face half hidden
at an angle, or a cover boxed only in part).

A find that overlaps one confirmed in the last few frames is kept without asking again (a real
face is confirmed once, not on every frame; keeping is the fail-closed direction). Detection worker
processes (stream/workers.py) run the same code through `make_detector`; each remembers its own
frames, which can only keep a find that one process would have dropped. Nothing here is kept or
logged beyond the boxes of recent confirmed finds. The crops, views and face finders themselves
are stream/verify_cues.py's, the policy's bars stream/verify_policy.py's; the order of asking is here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.models.geometry import iou_matrix
from ideud.stream.protocols import Detector, Scale
from ideud.stream.soften import FINE_SHARE, change
from ideud.stream.types import Face
from ideud.stream.verify_cues import (CROP_PX, Confirmers, chroma_spread, face_crop, face_roll, fine_detail,
                                      mirrored_halves, near_centre, sharpened, skin_share)
from ideud.stream.verify_policy import VerifyPolicy


def overlaps_recent(calls: list, box, min_iou: float) -> bool:
    """Does `box` overlap one of the boxes confirmed in the recent calls (`calls`: per call, a list of
    boxes) by `min_iou` or more? The verifier's memory, and the frame look's (stream/verify_frame.py)."""
    recent = [b for call in calls for b in call]
    return bool(recent) and float(iou_matrix(np.asarray(box, np.float64)[None], np.asarray(recent)).max()) >= min_iou


def _scale_xy(scale: Scale) -> tuple[float, float]:
    if np.ndim(scale) == 0:
        return float(scale), float(scale)
    return float(scale[0]), float(scale[1])


@dataclass
class _Cue:
    """What `_corroborated` looks at for one find: the detector's input, the box in it, the crop."""

    image: np.ndarray
    box: np.ndarray
    crop: np.ndarray
    roll: float
    size_px: float
    detail: float
    grey: bool = False


class VerifyingDetector:
    """A `Detector` that drops the finds every cue of `VerifyPolicy` calls no face.

    Wraps any detector; `input_size` and the rest of its attributes are the wrapped one's.
    `dropped` counts the finds dropped (for the benchmark; the pipeline does not read it). A dropped
    find smooth enough to be a heavily blurred face is still returned, after the faces, flagged
    `soft` (`VerifyPolicy.soften_max_change`, stream/soften.py); `softened` counts those."""

    def __init__(self, inner: Detector, policy: Optional[VerifyPolicy] = None):
        self.inner = inner
        self.policy = policy or VerifyPolicy()
        self.confirmers = Confirmers()
        self.dropped = self.softened = 0
        self.confirmed: list[list[np.ndarray]] = []  # per recent call: boxes (detector px) confirmed

    _OWN = ("inner", "policy", "confirmers", "dropped", "softened", "confirmed")

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
        confirmers' yes is vetoed by the human-face cues (`_vetoed`), or a weak path's yes has no
        second cue (`_corroborated`), and it is not a half-hidden face (`_half_face`). Finds under
        `grey_small_min_px` are kept; grey ones from there up to `min_judged_px` are judged by
        `_grey_small_is_false`, colour ones need one cue."""
        return self._judged_false(image_rgb, face, scale) and not self._half_face(image_rgb, face, scale)

    def _judged_false(self, image_rgb: np.ndarray, face: Face, scale: Scale) -> bool:
        p = self.policy
        if face.score >= p.keep_score:
            return False
        sx, sy = _scale_xy(scale)
        box = np.asarray(face.box, np.float64) / [sx, sy, sx, sy]
        size_px = max(box[2] - box[0], box[3] - box[1])
        if size_px < min(p.min_judged_px, p.grey_small_min_px):
            return False
        crop, _, _, _ = face_crop(image_rgb, box)
        roll = face_roll(face, sx, sy)
        grey = chroma_spread(crop) < p.grey_chroma
        if size_px < p.min_judged_px:
            if grey:
                return self._grey_small_is_false(image_rgb, box, crop, roll)
            if not p.corroborate or size_px < p.grey_small_min_px:
                return False
            cue = _Cue(image_rgb, box, crop, roll, size_px, fine_detail(image_rgb, box))
            return not (self._first_confirmer(crop, roll, True) is not None or self._corroborated(cue, own=None))
        maybe_skin = grey or skin_share(crop) >= p.skin_min
        detail = fine_detail(image_rgb, box)  # cheap: a 64 px resize and a Laplacian
        cue = _Cue(image_rgb, box, crop, roll, size_px, detail, grey)
        first = self._first_confirmer(crop, roll, maybe_skin)
        if first is not None:
            name, found = first
            if self._vetoed(crop, size_px, roll, detail, grey):
                return True
            weak_hog = name == "hog" and size_px >= p.corroborate_max_px and found < 1  # under dlib's own threshold
            upto = p.corroborate_weak_hog_max_px if weak_hog else p.corroborate_max_px
            return size_px < upto and not self._corroborated(cue, own=name, maybe_skin=maybe_skin)
        opinion = self._second_opinion(crop, size_px, roll, maybe_skin)
        if opinion is not None and p.redetect_keep >= p.redetect_veto:
            # CenterFace re-asked already scored over the veto's bar: asking again cannot veto
            return not self._corroborated(cue, own="redetect")
        if opinion is not None:
            return self._vetoed(crop, size_px, roll, detail, grey) or not self._corroborated(cue, own="redetect")
        if size_px < p.tiny_view_max_px and self.confirmers.tiny(image_rgb, box) >= p.tiny_view_score:
            return not self._corroborated(cue, own="tiny")  # a heavily blurred small face
        if not maybe_skin:
            return True
        if detail <= p.sharp_max_detail and self.sharp_redetect(crop) >= p.sharp_redetect_keep:
            return not self._corroborated(cue, own="sharp")  # a heavily blurred face: features back once sharpened
        return not self._cnn_face(crop, recheck=grey and p.grey_cnn_recheck and detail > p.sharp_max_detail)

    def _first_confirmer(self, crop: np.ndarray, roll: float, maybe_skin: bool,
                         but: str = "") -> Optional[tuple[str, float]]:
        """The first confirmer (in policy order, `but` skipped) that finds a face on the crop, with its
        confidence, or None; weak HOG counts where `maybe_skin`."""
        return next(self._confirming(crop, roll, maybe_skin, but), None)

    def _confirming(self, crop: np.ndarray, roll: float, maybe_skin: bool, but: str = ""):
        """(name, confidence) of each confirmer that finds a face on the crop, asked lazily in policy order."""
        for name in self.policy.confirmers:
            if name != but:
                found = self.confirmers.run(name, crop, roll)
                # HOG's confidences are its score + 1: >= 1 is over dlib's own threshold
                if found >= 1.0 or (found > 0 and (name != "hog" or maybe_skin)):
                    yield name, found

    def _half_face(self, image_rgb: np.ndarray, face: Face, scale: Scale) -> bool:
        """A find about to be dropped whose box is narrow (`half_face_aspect`: CenterFace boxes a face
        half hidden behind something with the cover) is kept when one of the crop's mirrored halves
        (`mirrored_halves`) is a face to two cues: a confirmer and another one, or CenterFace
        re-asked at `corroborate_redetect` (a second cue's bar). Every cue missed such faces on the crop
        itself. A less narrow find (up to `half_face_wide_aspect`) needs stricter cues: weak HOG does
        not count, and CenterFace's bar is `half_face_wide_redetect`."""
        p = self.policy
        sx, sy = _scale_xy(scale)
        box = np.asarray(face.box, np.float64) / [sx, sy, sx, sy]
        w, h = box[2] - box[0], box[3] - box[1]
        if not p.half_face_aspect or h <= 0 or w / h >= max(p.half_face_aspect, p.half_face_wide_aspect):
            return False
        wide = w / h >= p.half_face_aspect
        crop = face_crop(image_rgb, box)[0]
        maybe_skin = not wide and (chroma_spread(crop) < p.grey_chroma or skin_share(crop) >= p.skin_min)
        bar = p.half_face_wide_redetect if wide else p.corroborate_redetect
        for view in mirrored_halves(crop):
            saying = self._confirming(view, 0.0, maybe_skin)  # the second yes picks up after the first
            if next(saying, None) is not None and (
                    next(saying, None) is not None or self.redetect(view, enough=bar) >= bar):
                return True
        return False

    def _corroborated(self, cue: "_Cue", own: Optional[str], maybe_skin: bool = True) -> bool:
        """A cue besides `own` (the one that kept the find: a confirmer's name, "redetect", "tiny",
        "sharp"; None: any one cue), of another network where it matters, also takes it for a face,
        or `own` alone scores high enough (`corroborate_*`); the cheap ones first, dlib's CNN last."""
        p = self.policy
        if not p.corroborate:
            return True
        if own == "redetect":
            if cue.size_px >= p.redetect_keep_px:
                return True  # a close-up: the second opinion's own bar, as before (no tiny views there)
            if p.corroborate_other_view and not cue.grey and cue.size_px < p.tiny_view_max_px:
                return self._other_view(cue)
            mirrored = np.ascontiguousarray(cue.crop[:, ::-1])
            if self.redetect(mirrored, -cue.roll, enough=p.redetect_keep) >= p.redetect_keep:
                return True
        elif self.redetect(cue.crop, cue.roll, enough=p.corroborate_redetect) >= p.corroborate_redetect:
            return True
        if own == "tiny":  # BlazeFace on the face shrunk is the same network: CenterFace or dlib must back it
            bar = p.corroborate_tiny_sharp
            if cue.detail <= p.sharp_max_detail and self._sharp_score(cue.crop, bar) >= bar:
                return True
            return self.confirmers.run("cnn", cue.crop) > 0
        if own == "sharp":
            bar = p.corroborate_sharp_alone
            if self._sharp_score(cue.crop, bar) >= bar:
                return True
        blaze = own != "blaze_full"  # BlazeFace's own views back no yes of BlazeFace's
        if blaze and self.confirmers.run("blaze_small", cue.crop) >= p.corroborate_blaze_small:
            return True
        if blaze and cue.size_px < p.tiny_view_max_px and self.confirmers.tiny(cue.image, cue.box) >= p.tiny_view_score:
            return True
        if (own != "sharp" and cue.detail <= p.sharp_max_detail
                and self.sharp_redetect(cue.crop) >= p.sharp_redetect_keep):
            return True
        if own in p.confirmers and self._first_confirmer(cue.crop, cue.roll, maybe_skin, but=own) is not None:
            return True
        return self.confirmers.run("cnn", cue.crop) > 0

    def _other_view(self, cue: "_Cue") -> bool:
        """A small colour find CenterFace re-asked kept (`corroborate_other_view`): the tiny views, the
        crop sharpened or dlib's CNN must agree -- not the crop mirrored (the same network on the same
        pixels) nor BlazeFace on the face shrunk (it let the find into the second opinion)."""
        p = self.policy
        if self.confirmers.tiny(cue.image, cue.box) >= p.tiny_view_score:
            return True
        bar = p.corroborate_tiny_sharp
        if self._sharp_score(cue.crop, bar) >= bar:
            return True
        return self.confirmers.run("cnn", cue.crop) > 0

    def _cnn_face(self, crop: np.ndarray, recheck: bool = False) -> bool:
        """dlib's CNN finds a face at the crop's centre; with `recheck`, on the crop mirrored or
        enlarged to `grey_cnn_recheck_px` too (a face is one on either view; asked only after a yes)."""
        if not self.confirmers.run("cnn", crop) > 0:
            return False
        if not recheck:
            return True
        if self.confirmers.run("cnn", np.ascontiguousarray(crop[:, ::-1])) > 0:
            return True
        n = self.policy.grey_cnn_recheck_px
        return self.confirmers.run("cnn", cv2.resize(crop, (n, n), interpolation=cv2.INTER_CUBIC)) > 0

    def _grey_small_is_false(self, image_rgb: np.ndarray, box: np.ndarray, crop: np.ndarray, roll: float) -> bool:
        """A grey find under `min_judged_px` that no cue takes for a face (`grey_small_*`): CenterFace
        re-asked as found and sharpened, the tiny views, dlib's CNN; the cheap ones first."""
        p = self.policy
        bar = p.grey_small_redetect
        if self.redetect(crop, roll, enough=bar) >= bar:
            return False
        if self.confirmers.tiny(image_rgb, box) >= p.tiny_view_score:
            return False
        if self._sharp_score(crop, bar) >= bar:
            return False
        return not self._cnn_face(crop)

    def sharp_redetect(self, crop: np.ndarray) -> float:
        """CenterFace re-asked (`redetect`, as found: no levelling) on the crop `sharpened`."""
        return self._sharp_score(crop, self.policy.sharp_redetect_keep)

    def _sharp_score(self, crop: np.ndarray, enough: float) -> float:
        """CenterFace re-asked on the crop `sharpened`, stopping once a score reaches `enough`."""
        p = self.policy
        return self.redetect(sharpened(crop, p.sharp_sigma_share, p.sharp_amount), enough=enough)

    def _second_opinion(self, crop: np.ndarray, size_px: float, roll: float, maybe_skin: bool) -> Optional[float]:
        """CenterFace re-asked's score where the second opinions say face, else None: for the real
        faces the confirmers miss at the crop's scale (blurred, half covered, colourless), so that
        they are not dropped:

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
        score = self.redetect(crop, roll, enough=p.redetect_keep)
        return score if score >= p.redetect_keep else None

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
                    if s > best and near_centre([b], side):
                        best = float(s)
                if best >= enough:
                    return best
        return best

    def _vetoed(self, crop: np.ndarray, size_px: float, roll: float = 0.0, detail: float = 0.0,
                grey: bool = False) -> bool:
        """A confirmed find that CenterFace (re-asked) and dlib's CNN both call no human face.
        `detail`: the find's `fine_detail` (a sharp small find faces a higher bar, `sharp_veto`).
        A blurred grey find the sharpened look keeps is not vetoed (`grey_veto_sharpened`)."""
        p = self.policy
        if not any(lo <= size_px < hi for lo, hi in p.veto_sizes):
            return False
        bar = p.sharp_veto if size_px < p.sharp_veto_max_px and detail > p.sharp_max_detail else p.redetect_veto
        if self.redetect(crop, roll, enough=bar) >= bar:
            return False
        if (grey and p.grey_veto_sharpened and detail <= p.sharp_max_detail
                and self.sharp_redetect(crop) >= p.sharp_redetect_keep):
            return False  # before dlib's CNN: cheaper
        return self.confirmers.run("cnn", crop) <= 0

    def smooth_enough(self, image_rgb: np.ndarray, box: np.ndarray) -> bool:
        """A find about to be dropped that could still be a heavily blurred face: a blur of a tenth of
        its box (`box` in `image_rgb`'s pixels) changes it by at most `soften_max_change` (0: never),
        or it is grey and a blur of a twentieth changes it by at most `soften_max_fine_change_grey`."""
        p = self.policy
        if p.soften_max_change <= 0:
            return False
        if change(image_rgb, box) <= p.soften_max_change:
            return True
        return (p.soften_max_fine_change_grey > 0 and chroma_spread(face_crop(image_rgb, box)[0]) < p.grey_chroma
                and change(image_rgb, box, FINE_SHARE) <= p.soften_max_fine_change_grey)

    def _remembered(self, box: np.ndarray) -> bool:
        return overlaps_recent(self.confirmed, box, self.policy.remember_iou)

    def detect(self, image_rgb: np.ndarray, scale: Scale = 1.0) -> list[Face]:
        faces = self.inner.detect(image_rgb, scale)
        sx, sy = _scale_xy(scale)
        keep, confirmed, soft = [], [], []
        for f in faces:
            box = np.asarray(f.box, np.float64) / [sx, sy, sx, sy]
            if f.score < self.policy.keep_score and self._remembered(box):
                keep.append(f)
            elif not self.is_false(image_rgb, f, scale):
                keep.append(f)
            else:
                if self.smooth_enough(image_rgb, box):
                    f.soft = True  # could be a heavily blurred face (stream/soften.py)
                    soft.append(f)
                continue
            if f.score < self.policy.keep_score:
                confirmed.append(box)
        self.confirmed = (self.confirmed + [confirmed])[-self.policy.remember_calls:]
        self.dropped += len(faces) - len(keep)
        self.softened += len(soft)
        return keep + soft
