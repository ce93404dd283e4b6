"""Step II without weights: re-synthesise the face's detail from a donor bank (`--restorer bank`).

What makes a face recognisable at the sizes a recogniser looks at is the
mid-frequency structure of the inner face: the shape and darkness of the lids,
lashes and brows, the nostrils, creases and skin marks. The geometric warp
of Step I moves that structure but keeps it; blurring removes it and leaves a
soft, unnatural face. This restorer replaces it:

    out = base(person) * exp(detail(donor) * gain) + fine(person)

- base: the warped face low-passed at sigma = `low` x face width with the
  features (eye openings, brows, nostrils, lips) left out (normalised
  convolution): light, shading and skin tone stay the person's, and no
  halo of a dark eye or a bright row of teeth spreads into the skin;
- detail: the donor face's log ratio to its own base, per colour channel,
  between the fine scale and `low`, in two sub-bands. The donor is a
  public-domain portrait (models/face_bank.py: Eileen Collins, Grace Hopper,
  each also mirrored) carried onto the perturbed mesh by a 468-point
  piecewise-affine warp; each sub-band's contrast is matched per component
  (eyes, brows, nose, mouth, skin) to the person's, so a soft video stays
  soft and a sharp one sharp. Highlights are capped (+10 %): a donor's flash
  on a brow ridge is its light, not its face. The lips and what expression
  moves around the mouth keep the person's own detail (a donor's lips over
  another mouth shape ghost);
- fine: the warped face's own finest band (sigma ~0.9 % of the face width,
  below the resolution recognisers align faces at: sensor grain, compression
  texture), so the face matches the noise of the frame around it.

Where the chosen donor has no usable detail (Grace Hopper: only her eye
openings, behind glasses, are used) a second donor fills in. Each track
draws its donors from its seed, so one person keeps one new face. Limits:
two donor people; a face that IS one of them (the astronaut test clips)
only has the other's eyes to change to.

`RestoreItem.level` (the privacy guard's escalation) takes more of the
face from the donor:

    level 0  base sigma 5 % of the face width; brows and lips stay the person's
    level 1  base sigma 7 %; the person's brow detail halved (donor brows where
             the donor has usable ones)
    level 2  base sigma 10 %; brows from the donor or a quarter of the
             person's; the lips 70 % the person's
    level 3+ level 2 and a pair of glasses (frame shape, size and colour from
             the seed) drawn on the perturbed mesh: an accessory changes how
             a face is recognised more than any detail left to change, and is
             still a face with its pose and expression (the alternative at this
             point is obfuscation)

Cost on the 2-core CPU box: ~16 ms for a 110 px face; bigger faces are worked at 112 px face
width and the change is added at full size (~20 ms however big the face; the DIS it reaches
changed by < 0.02 against working at full size, sharpness ratio 0.99 either way).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models import face_bank as fbk
from ideud.models.face_prior import ring, scaled
from ideud.stream import render as rd
from ideud.stream.types import RestoreItem

R_EYE = ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133])
L_EYE = ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362])
R_BROW = ([70, 63, 105, 66, 107], [46, 53, 52, 65, 55])
L_BROW = ([300, 293, 334, 296, 336], [276, 283, 282, 295, 285])
LIPS = ([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291], [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
NOSTRILS = [98, 97, 2, 326, 327, 64, 294, 240, 460, 75, 305]
NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 64, 294, 48, 278, 115, 344, 220, 440, 45, 275]
CHEEK_R, CHEEK_L = 234, 454


@dataclass(frozen=True)
class Level:
    low: float  # base sigma (share of the face width): below it the face stays the person's
    brows_kept: float  # share of the person's own brow detail where the donor has no brows
    mouth_kept: float  # share of the lips' own pixels kept (the donor's detail is never used there)
    glasses: bool = False


LEVELS = (Level(0.05, 1.0, 1.0), Level(0.07, 0.5, 1.0), Level(0.10, 0.25, 0.7), Level(0.10, 0.25, 0.7, True))
MAX_LEVEL = len(LEVELS) - 1
FINE = 0.009  # fine band: sigma below this share of the face width stays the person's (grain)
GAIN_RANGE = (0.5, 1.4)
HIGHLIGHT = 0.1  # a donor's detail may brighten the person's skin by at most e^0.1 = +10 %


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma) if sigma > 0.3 else x


def _fill(shape, polys, feather: float, grow: float = 0.0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    for p in polys:
        cv2.fillPoly(m, [np.round(np.asarray(p) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    if grow >= 1:
        k = int(round(grow))
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    m = m.astype(np.float32) / 255.0
    return _blur(m, feather)


def component_masks(lm: np.ndarray, shape, fw: float) -> dict:
    """Soft masks (crop pixels) of the face's components and of the whole inner face."""
    f = max(0.6, 0.015 * fw)
    eyes = _fill(shape, [scaled(ring(lm, e), 1.3, 2.2) for e in (R_EYE, L_EYE)], f)
    brows = _fill(shape, [ring(lm, b) for b in (R_BROW, L_BROW)], f, grow=0.03 * fw)
    nose = _fill(shape, [cv2.convexHull(lm[NOSE].astype(np.float32))[:, 0]], f, grow=0.02 * fw)
    # the mouth with what expression moves around it (philtrum, nasolabial folds, chin dimple)
    peri = np.vstack([ring(lm, LIPS), lm[[98, 327, 2, 205, 425, 200]]])
    mouth = _fill(shape, [cv2.convexHull(peri.astype(np.float32))[:, 0]], f, grow=0.04 * fw)
    poly = rd.face_polygon(lm)
    c = lm.mean(0)
    face = _fill(shape, [c + (poly - c) * 0.93], 0.03 * fw)
    brows = brows * (1 - eyes)
    nose = nose * (1 - eyes) * (1 - brows)
    mouth = mouth * (1 - nose)
    skin = np.clip(face - eyes - brows - nose - mouth, 0, 1)
    # the features themselves: left out of the smooth light-and-skin field, kept whole where they stay
    lips = _fill(shape, [ring(lm, LIPS)], f, grow=0.025 * fw)
    features = np.maximum.reduce([
        _fill(shape, [scaled(ring(lm, e), 1.2, 1.6) for e in (R_EYE, L_EYE)], f),
        _fill(shape, [ring(lm, b) for b in (R_BROW, L_BROW)], f, grow=0.03 * fw),
        _fill(shape, [cv2.convexHull(lm[NOSTRILS].astype(np.float32))[:, 0]], f, grow=0.015 * fw),
        lips])
    return {"eyes": eyes, "brows": brows, "nose": nose, "mouth": mouth, "skin": skin, "face": face,
            "lips": lips, "features": features}


def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


def _gain_map(yo: np.ndarray, yd: np.ndarray, weight_d: np.ndarray, masks: dict) -> np.ndarray:
    """Per-component contrast match of a donor band to the person's, as a smooth map."""
    lo_, hi_ = GAIN_RANGE
    num = np.zeros(yo.shape[:2], np.float32)
    den = np.full(yo.shape[:2], 1e-4, np.float32)
    for name in ("eyes", "brows", "nose", "mouth", "skin"):
        m = masks[name]
        w = m * weight_d
        if w.sum() < 4:
            continue
        so = np.sqrt((m * yo * yo).sum() / max(m.sum(), 1e-3))
        sd = np.sqrt((w * yd * yd).sum() / max(w.sum(), 1e-3))
        g = float(np.clip(so / max(sd, 1e-3), lo_, hi_))
        num += m * g
        den += m
    return np.where(den > 1e-3, num / den, 1.0).astype(np.float32)


WORK_FACE_PX = 112.0  # face width (cheek to cheek) above which the detail is made at this size


class BankRestorer:
    """Mid-frequency face detail from a public-domain donor bank; see the module docstring."""

    name = "bank"
    on_gpu = False
    cpu_heavy = True  # ~10 ms of Python and numpy a face: worth a process of its own (restore_processes.py)
    max_batch = 16

    def __init__(self, donors: Optional[Sequence[fbk.Donor]] = None, exclude: Sequence[str] = ()):
        """`exclude`: donor names to leave out (e.g. to measure a donor's own photo fairly)."""
        pool = tuple(donors) if donors is not None else fbk.donors()
        self.donors = tuple(d for d in pool if d.name not in set(exclude))
        if not self.donors:
            raise ValueError("the face bank is empty")

    def recipe(self, seed: int) -> tuple[int, Optional[int]]:
        """(primary, secondary) donor variants of a seed; the secondary is another person, if any."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xBA4C])
        first = int(rng.integers(len(self.donors)))
        others = [i for i, d in enumerate(self.donors) if d.name != self.donors[first].name]
        second = others[int(rng.integers(len(others)))] if others else None
        return first, second

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        return [self.scaled(it) for it in items]

    def warmup(self) -> None:
        """Nothing to prepare: the donors are loaded in __init__."""

    def forget(self, track_id: int) -> None:
        """Nothing kept per track."""

    def scaled(self, it: RestoreItem) -> np.ndarray:
        """Big faces are re-synthesised at WORK_FACE_PX and the change is added at full size.

        The donor detail lives at mid frequencies (and the donors are smaller than that); what
        is finer stays the person's own grain anyway. ~4x cheaper on a 420 px face.
        """
        lm = np.asarray(it.landmarks, np.float64)
        fw = float(np.linalg.norm(lm[CHEEK_R] - lm[CHEEK_L]))
        k = WORK_FACE_PX / fw if fw > WORK_FACE_PX else 1.0
        if k >= 1.0:
            return self._one(it)
        h, w = it.image.shape[:2]
        size = (max(8, round(w * k)), max(8, round(h * k)))
        small = cv2.resize(it.image, size, interpolation=cv2.INTER_AREA)
        sk = np.array([size[0] / w, size[1] / h])
        done = self._one(RestoreItem(image=small, original=cv2.resize(it.original, size, interpolation=cv2.INTER_AREA),
                                     mask=cv2.resize(it.mask, size, interpolation=cv2.INTER_AREA),
                                     landmarks=lm[:, :2] * sk, track_id=it.track_id, seed=it.seed, level=it.level))
        change = cv2.resize(done.astype(np.float32) - small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(it.image.astype(np.float32) + change + 0.5, 0, 255).astype(np.uint8)

    def _one(self, it: RestoreItem) -> np.ndarray:
        lm = np.asarray(it.landmarks, np.float64)
        fw = float(np.linalg.norm(lm[CHEEK_R] - lm[CHEEK_L]))
        if fw < 8 or it.image.shape[0] < 8 or it.image.shape[1] < 8:
            return it.image
        lv = LEVELS[min(max(int(it.level), 0), MAX_LEVEL)]
        shape = it.image.shape[:2]
        img = it.image.astype(np.float32)
        s_low, s_fine = lv.low * fw, max(0.6, FINE * fw)
        masks = component_masks(lm, shape, fw)
        warp = fbk.MeshWarp(lm, shape, step=3)

        s_mid = float(np.sqrt(s_fine * s_low))
        # light and skin tone: a smooth field that leaves the features out (no halo of a dark eye
        # or a bright row of teeth spreads into the skin around it)
        skin_w = np.clip(1.0 - masks["features"], 1e-3, 1.0)
        norm = _blur(skin_w, s_low)

        def base(x):
            return _blur(x * (skin_w[..., None] if x.ndim == 3 else skin_w), s_low) / (
                norm[..., None] if x.ndim == 3 else norm)

        def bands(x):  # log ratios to the base, in two sub-bands (fine..mid, mid..base)
            g1, g2 = np.log(np.maximum(_blur(x, s_fine), 1.0)), np.log(np.maximum(_blur(x, s_mid), 1.0))
            return g1 - g2, g2 - np.log(np.maximum(base(x), 1.0))

        base_o = base(img)
        fine_o = img - _blur(img, s_fine)
        bands_o = bands(img)
        # how much of the person's own detail stays where no donor gives any (brows as the level says)
        own_scale = 1.0 - masks["brows"] * (1.0 - lv.brows_kept)
        no_donor = 1.0 - masks["mouth"]
        log_new = np.zeros_like(img)
        left = np.ones(shape, np.float32)  # share of the detail not yet given to a donor
        for k in (i for i in self.recipe(it.seed) if i is not None):
            d = self.donors[k]
            valid = warp.sample(d.valid, d.landmarks, border=cv2.BORDER_CONSTANT)
            allow = valid * no_donor
            if not d.brows:
                allow = allow * (1.0 - masks["brows"])
            w = left * np.clip(allow, 0, 1)
            for bo, bd in zip(bands_o, bands(warp.sample(d.image, d.landmarks))):
                # a donor's highlights (flash on a brow ridge, an oily nose) are its light, not its face
                bd = np.minimum(bd, HIGHLIGHT)
                log_new += (w * _gain_map(_luma(bo), _luma(bd), w, masks))[..., None] * bd
            left = left - w
        log_new += (left * own_scale)[..., None] * (bands_o[0] + bands_o[1])
        new = base_o * np.exp(log_new) + fine_o
        lips = (masks["lips"] * lv.mouth_kept)[..., None]  # the lips themselves: the person's pixels
        new = img * lips + new * (1.0 - lips)
        face = masks["face"][..., None]
        out = img * (1.0 - face) + new * face
        if lv.glasses:
            out = draw_glasses(out, lm, it.seed)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


FRAME_COLOURS = np.array([[28, 24, 22], [60, 40, 28], [90, 90, 95], [150, 120, 70], [45, 45, 60]], np.float32)


def _lens(centre, u, v, a, b, power, n=72) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = np.sign(c) * np.abs(c) ** (2 / power) * a
    y = np.sign(s) * np.abs(s) ** (2 / power) * b
    return centre + np.outer(x, u) + np.outer(y, v)


def draw_glasses(img: np.ndarray, lm: np.ndarray, seed: int) -> np.ndarray:
    """A pair of glasses on a face (float RGB in, float RGB out), style drawn from `seed`."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x61A5])
    colour = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))]
    power = rng.uniform(2.2, 4.0)  # 2: oval, 4: rounded rectangle
    size, aspect = rng.uniform(0.9, 1.05), rng.uniform(0.58, 0.72)
    h, w = img.shape[:2]
    fw = float(np.linalg.norm(lm[CHEEK_R] - lm[CHEEK_L]))
    thick = max(1.0, rng.uniform(0.012, 0.02) * fw)
    u = lm[L_EYE[0][0]] - lm[R_EYE[0][0]]
    u = u / max(np.linalg.norm(u), 1e-6)
    v = np.array([-u[1], u[0]]) * (1 if u[0] >= 0 else -1)
    frame = np.zeros((h, w), np.float32)
    lenses = []
    for eye, temple in ((R_EYE, CHEEK_R), (L_EYE, CHEEK_L)):
        pts = ring(lm, eye)
        ew = float(np.linalg.norm(lm[eye[0][0]] - lm[eye[0][-1]]))
        centre = pts.mean(0) + v * 0.1 * ew
        outward = 1.0 if temple == CHEEK_L else -1.0
        centre = centre + u * outward * 0.08 * ew
        lens = _lens(centre, u, v, size * ew, aspect * size * ew, power)
        lenses.append(lens)
        cv2.polylines(frame, [np.round(lens * 16).astype(np.int32)], True, 1.0, int(round(thick)), cv2.LINE_AA, 4)
        edge = lens[np.argmax((lens - centre) @ (u * outward))]
        arm = np.array([edge, edge + 0.8 * (lm[temple] - edge) - v * 0.05 * fw])
        cv2.polylines(frame, [np.round(arm * 16).astype(np.int32)], False, 1.0, int(round(thick)), cv2.LINE_AA, 4)
    a = lenses[0][np.argmax(lenses[0] @ u)]
    b = lenses[1][np.argmin(lenses[1] @ u)]
    bridge = np.array([a, (a + b) / 2 - v * 0.06 * np.linalg.norm(b - a) - v * 0.01 * fw, b])
    cv2.polylines(frame, [np.round(bridge * 16).astype(np.int32)], False, 1.0, int(round(thick)), cv2.LINE_AA, 4)
    frame = _blur(frame, 0.25 * thick)
    shadow = _blur(np.roll(frame, int(round(0.012 * fw)), axis=0), 0.012 * fw)
    out = img * (1.0 - 0.3 * shadow)[..., None]
    return out * (1.0 - frame[..., None]) + colour * frame[..., None]

