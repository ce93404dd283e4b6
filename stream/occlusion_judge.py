"""Is a face's frame fit to be its occlusion reference? Judged against what does not come from the person.

stream/occlusion.py compares each frame with a reference of the face's own appearance; an occluder
already in that reference is taken for face. So a reference is judged before it is keyed, by two
cues that need no earlier frame of the person:

- **Features erased.** The mouth and the nose on the shape-free canvas (models/face_prior.py) are
  correlated with the prior's mean log-reflectance there: a real mouth has lips where the mean face
  has them, a hand or a microphone over it has not. On 39 build portraits ([:40]): clean mouths correlate
  >= 0.22 (all but 4 >= 0.3), the same portraits with a hand pasted over the mouth <= 0.21.
  `MOUTH_PRESENT` sits between; a clean face read as erased (a thick moustache) only goes without a
  reference: it is rendered whole, over anything in front of it (the safe side).
- **Foreign colour.** Broad regions far from the face's own skin colour (the median of forehead,
  glabella, nose bridge and cheek points, when most of them agree) that reach past the face
  outline: a microphone, a sleeve, a glove. They block the key where they lie over the nose or the
  mouth (hair over the forehead is foreign too, but stable: the reference may hold it). A
  skin-coloured hand is not foreign: its colour is within the spread of skin colours across one
  face (Lab distance 3-13 here against a patch spread of up to 20).

Where a feature is erased, the occluder is delineated by a flood fill from the pixels over the
feature that have its dominant colour, stopped by small colour steps and by edges (where a hand
meets a cheek of its own colour there is still its outline). It is kept only if it covers the
feature, reaches past the face outline, leaves the eyes and the skin points alone and covers under
`MAX_SHARE` of the face, and only on a near-frontal head (a turned head's canvas is out of shape:
its features read as erased). Fail closed: what cannot be delineated is not cut out, the face is
rendered over it.

Measured on 60 other build portraits (ideud.eval.portraits.build_names()[100:160]; a hand with its
forearm down out of the crop or a microphone pasted over the mouth; tests/test_occlusion_judge.py):
clean faces judged clean 90 %, share of a clean face shown as occluder mean 0.000, max 0.022; a
hand judged not clean 95 %, delineated 72 % (precision 0.86, min 0.73; recall 0.80); a microphone
judged not clean 100 %, delineated 53 % (precision 0.96, min 0.89; recall 0.89). About 4 ms a
face (one core, WORK px), run only while a track has no reference and when a re-key is due.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ideud.models import face_prior as fp

MOUTH_PRESENT = 0.25  # correlation with the prior's mean mouth (and nose) below which it is erased
REGION_INDEX = {"nose": 2, "mouth": 3}  # rows of fp.canvas_regions()
FOREIGN = 20.0  # Lab distance (L weighted LIGHT_WEIGHT) from the face's own skin
LIGHT_WEIGHT = 0.35  # shadows and highlights change lightness, much less the chroma
SKIN_POINTS = (151, 108, 337, 9, 6, 50, 280, 117, 346)  # forehead, glabella, nose bridge, cheeks (mesh indices)
SKIN_AGREE = 2 / 3  # share of the skin points within FOREIGN / 2 of their median, or the skin is not known
EYE_POINTS = (159, 145, 386, 374)  # upper and lower lid middles
SEEDS = {"mouth": tuple(fp.LIPS[0] + fp.LIPS[1]), "nose": tuple(fp.NOSTRILS) + (1, 4, 5)}  # an erased feature's hull
SEED_LEVELS = 8  # grey levels from the hull's median colour within which its pixels seed the fill
SEED_COUNT = 12  # seeds at most per feature
HULL_COVER = 0.5  # share of the erased feature's hull that one grown region must cover
EDGE_LOW = 12  # Canny's lower threshold on the blurred crop's grey (the upper one twice it)
GROW_LEVELS = 3  # grey levels between neighbours that a flood fill crosses (the blurred crop)
MIN_OUTSIDE = 0.15  # share of an occluder region that must lie past the face outline
MAX_SHARE = 0.6  # of the face: a larger region is more likely the face itself
FRONTAL = 0.2  # |yaw_position - 0.5| under which an erased feature means an occluder, not the pose
MIN_INSIDE = 0.03  # of the face: less is background along the outline, not something in front


@dataclass
class Judgement:
    clean: bool  # nothing in front of the face: the frame may become the reference
    occluder: np.ndarray  # bool, crop shape: pixels shown to be an occluder (may be empty when not clean)


def feature_presence(crop_rgb: np.ndarray, lm2: np.ndarray) -> dict[str, float]:
    """Correlation of the nose and mouth log-reflectance with the prior's mean face there."""
    prior = fp.default_prior()
    vec = fp.canvas_reflectance(crop_rgb, lm2).reshape(-1, 3)
    mean = prior.mean.reshape(-1, 3)
    weights = fp.canvas_regions()
    out = {}
    for name, row in REGION_INDEX.items():
        w = weights[row][:, None]
        total = float(w.sum())
        a = vec - (w * vec).sum(0) / total
        b = mean - (w * mean).sum(0) / total
        den = float(np.sqrt((w * a * a).sum() * (w * b * b).sum()))
        out[name] = float((w * a * b).sum() / den) if den > 0 else 0.0
    return out


def yaw_position(lm2: np.ndarray) -> float:
    """Where the nose tip lies between the cheek points (0.5: in the middle): a head turn moves it,
    a hand pulling the mouth and jaw of the mesh hardly."""
    right, left, nose = lm2[234, :2], lm2[454, :2], lm2[1, :2]
    d = left - right
    return float(np.dot(nose - right, d) / max(float(np.dot(d, d)), 1e-6))


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(img, np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def warmup() -> None:
    """OpenCV builds its float Lab tables at a process's first such conversion (~0.14 s): here,
    rather than in the first face's judgement."""
    _lab(np.zeros((32, 32, 3), np.uint8))


def _point(lm2: np.ndarray, i: int, w: int, h: int) -> tuple[int, int]:
    x, y = lm2[i, :2]
    return int(np.clip(round(float(x)), 0, w - 1)), int(np.clip(round(float(y)), 0, h - 1))


def _reaching(regions: np.ndarray, mask: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """The parts inside the face's `interior` of the regions that reach past the face outline and
    cover a sane share of it. Only the interior part is returned: the stage's cut adds a margin
    about it, which must not eat the face's edge where background lies next to it."""
    n, labels = cv2.connectedComponents(regions.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(regions.shape, bool)
    area = np.bincount(labels.ravel(), minlength=n)
    outside = np.bincount(labels[(mask < 0.05) & (regions > 0)], minlength=n)
    inside = np.bincount(labels[interior & (regions > 0)], minlength=n)
    total = max(int(interior.sum()), 1)
    ok = (outside >= MIN_OUTSIDE * np.maximum(area, 1)) & (inside >= MIN_INSIDE * total) & (inside <= MAX_SHARE * total)
    ok[0] = False
    return ok[labels] & interior


def foreign_regions(lab: np.ndarray, lm2: np.ndarray, mask: np.ndarray, interior: np.ndarray,
                    size: float) -> np.ndarray:
    """Broad regions far from the face's own skin colour that reach past the face outline."""
    h, w = lab.shape[:2]
    samples = np.array([lab[_point(lm2, i, w, h)[::-1]] for i in SKIN_POINTS])
    skin = np.median(samples, 0)
    spread = samples - skin
    spread[:, 0] *= LIGHT_WEIGHT
    if (np.sqrt((spread * spread).sum(-1)) < FOREIGN / 2).mean() < SKIN_AGREE:
        return np.zeros((h, w), bool)  # the skin points disagree (hair, a hand, a turned head): nothing is shown
    d = lab - skin
    d[..., 0] *= LIGHT_WEIGHT
    far = (np.sqrt((d * d).sum(-1)) > FOREIGN).astype(np.uint8)
    r = max(1, int(round(0.04 * size)))
    far = cv2.morphologyEx(far, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    return _reaching(far, mask, interior)


def grown_from(blurred: np.ndarray, lm2: np.ndarray, mask: np.ndarray, interior: np.ndarray, points) -> np.ndarray:
    """The occluder over an erased feature: an edge-aware flood fill from the pixels over the
    feature (the hull of its mesh `points`) that have the region's dominant colour (not from one
    point: it may fall into a gap between fingers), kept only where it reaches past the face
    outline and leaves the eyes and the skin points alone."""
    h, w = blurred.shape[:2]
    hull = np.zeros((h, w), np.uint8)
    corners = cv2.convexHull(lm2[list(points), :2].astype(np.float32))[:, 0]
    cv2.fillConvexPoly(hull, np.round(corners).astype(np.int32), 1)
    ys, xs = np.nonzero(hull)
    if len(ys) < 4:
        return np.zeros((h, w), bool)
    colours = blurred[ys, xs].astype(np.float32)
    near = np.abs(colours - np.median(colours, 0)).max(-1) < SEED_LEVELS
    ys, xs = ys[near], xs[near]
    # the fill stops at edges too: where a hand meets a cheek of its own colour there is still its outline
    grey = cv2.cvtColor(blurred, cv2.COLOR_RGB2GRAY)
    fill = np.zeros((h + 2, w + 2), np.uint8)
    fill[1:-1, 1:-1] = cv2.Canny(grey, EDGE_LOW, 2 * EDGE_LOW) > 0
    edges = fill.copy()
    for j in range(0, len(ys), max(1, len(ys) // SEED_COUNT)):
        x, y = int(xs[j]), int(ys[j])
        if not fill[y + 1, x + 1]:
            cv2.floodFill(blurred, fill, (x, y), 0, (GROW_LEVELS,) * 3, (GROW_LEVELS,) * 3,
                          4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
    region = (fill[1:-1, 1:-1] > 0) & (edges[1:-1, 1:-1] == 0)
    if not region.any() or any(region[_point(lm2, i, w, h)[::-1]] for i in EYE_POINTS + SKIN_POINTS):
        return np.zeros((h, w), bool)  # grown into the face itself: not shown to be an occluder
    region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
    # what hides the feature covers it: a fill that got out along the face's edge and left the
    # feature itself is not it
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    over = np.bincount(labels[hull > 0], minlength=n)
    over[0] = 0
    region = (over >= HULL_COVER * int(hull.sum()))[labels]
    return _reaching(region, mask, interior)


def judge(crop_rgb: np.ndarray, lm2: np.ndarray, mask: np.ndarray) -> Judgement:
    """`crop_rgb` (uint8, the work size of stream/occlusion.py), its landmarks, its face mask."""
    size = float(np.ptp(lm2[:, :2], 0).max())
    sigma = max(0.8, 0.01 * size)
    blurred = cv2.GaussianBlur(crop_rgb, (0, 0), sigma)
    r = max(1, int(round(0.05 * size)))  # the stage's cut margin
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
    interior = cv2.erode((mask > 0.5).astype(np.uint8), disc) > 0
    presence = feature_presence(crop_rgb, lm2)
    erased = [name for name, c in presence.items() if c < MOUTH_PRESENT]
    if abs(yaw_position(lm2) - 0.5) >= FRONTAL:
        # turned away: the canvas is out of shape (features read as erased) and the skin points
        # fall on hair or background, so nothing is shown to be an occluder; keyed if it looks whole
        return Judgement(clean=not erased, occluder=np.zeros(crop_rgb.shape[:2], bool))
    occluder = foreign_regions(_lab(blurred), lm2, mask, interior, size)
    for name in erased:
        occluder |= grown_from(blurred, lm2, mask, interior, SEEDS[name])
    # broad inside the face too: a sliver along the outline (a shadow under the jaw, the collar) is not
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * max(1, int(round(0.03 * size))) + 1,) * 2)
    occluder = cv2.morphologyEx(occluder.astype(np.uint8), cv2.MORPH_OPEN, disc) > 0
    # hair over the forehead, background inside a loose outline: foreign but stable, the reference
    # may hold them; only what lies over the nose or the mouth keeps a frame from being keyed
    h, w = occluder.shape
    covered = any(occluder[_point(lm2, i, w, h)[::-1]] for pts in SEEDS.values() for i in pts)
    return Judgement(clean=not erased and not covered, occluder=occluder)
