"""Finds the verifier drops that could still be a heavily blurred face: blurred a little more.

The verifier (stream/verify.py) drops a weak find only when every cue says it is no face, but a
heavily blurred real face (sigma = face size / 14 to / 10) beats every cue now and then, and it
was written raw. What tells such a face from the false finds of face-free footage is how smooth
it already is: a blur of sigma = a tenth of the find's box changes it by 2.5-6 levels on average
inside the box (`change`; build portraits 0-99, 12 of the 13 real faces the verifier dropped),
the face-free sets' false finds by 7.7 and more (Mandelbrot, animals; colour and grey; one find
of blurred animals footage 4.0; checked on 1,000 frames a set afterwards: 3 per 1,000 grey
Mandelbrot frames under the bar, none elsewhere). So a dropped find that such a blur changes by at most
`VerifyPolicy.soften_max_change` is kept as a soft find (`Face.soft`), and the processor blurs
it so in the output (`soften`): a face there loses the detail it had left, anything else hardly
changes, being that smooth already. A grey find gets a finer look too (`FINE_SHARE`,
`VerifyPolicy.soften_max_fine_change_grey`): a blurred face's box may hold a sharper edge (its
portrait's, its hair against a wall) that the tenth of the box sees and the twentieth hardly. A soft
find is not tracked, rendered or checked, and a find that overlaps a face the pipeline handles is
left to that face.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ideud.models.geometry import covered_by
from ideud.stream.blend import crop_rgb, paste_rgb
from ideud.stream.types import Crop, Frame

SIGMA_SHARE = 0.1  # the blur: sigma = this x the box's longer side
FINE_SHARE = 0.05  # the finer look at a grey find (`VerifyPolicy.soften_max_fine_change_grey`)
GROW = 0.15  # the softened ellipse reaches this share of the box past each side (the box is the detector's)
FEATHER = 0.05  # its edge, feathered over this share of the box
COVERED = 0.3  # a soft find sharing this much of its box with a handled face is left to that face


def _region(box: np.ndarray, sigma: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixels a blur of `sigma` inside the grown box reads: x0, y0, x1, y1 (x0, y0 even for the chroma)."""
    w, h = box[2] - box[0], box[3] - box[1]
    pad = GROW * max(w, h) + 3 * sigma + 2
    x0, y0 = max(0, math.floor(box[0] - pad)) // 2 * 2, max(0, math.floor(box[1] - pad)) // 2 * 2
    return x0, y0, min(width, math.ceil(box[2] + pad)), min(height, math.ceil(box[3] + pad))


def _ellipse(shape: tuple, box: np.ndarray, offset: tuple, grow: float, feather: float) -> np.ndarray:
    """Float mask (0..1) of the ellipse inscribed in `box` grown by `grow` of its longer side, feathered."""
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h)
    m = np.zeros(shape, np.uint8)
    cx, cy = (box[0] + box[2]) / 2 - offset[0], (box[1] + box[3]) / 2 - offset[1]
    centre = (int(round(16 * cx)), int(round(16 * cy)))  # 4 fractional bits
    axes = (max(16, int(round(16 * (w / 2 + grow * side)))), max(16, int(round(16 * (h / 2 + grow * side)))))
    cv2.ellipse(m, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    f = m.astype(np.float32) / 255.0
    return cv2.GaussianBlur(f, (0, 0), feather * side) if feather * side > 0.3 else f


def _sigma(box: np.ndarray, share: float) -> float:
    return max(0.5, share * float(max(box[2] - box[0], box[3] - box[1])))


def change(image: np.ndarray, box: np.ndarray, share: float = SIGMA_SHARE) -> float:
    """Mean |change| (levels, over the channels) a blur of sigma = `share` x the box's longer side
    makes inside the ellipse inscribed in `box` (pixels of `image`, an RGB array): how much detail
    the find has at that scale. inf where the box holds no pixel."""
    box = np.asarray(box, np.float64)
    sigma = _sigma(box, share)
    x0, y0, x1, y1 = _region(box, sigma, image.shape[1], image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return math.inf
    region = image[y0:y1, x0:x1].astype(np.float32)
    inside = _ellipse(region.shape[:2], box, (x0, y0), 0.0, 0.0) > 0.5
    if not inside.any():
        return math.inf
    return float(np.abs(cv2.GaussianBlur(region, (0, 0), sigma) - region)[inside].mean())


def soften(frame: Frame, box: np.ndarray, share: float = SIGMA_SHARE) -> None:
    """Blur the frame (in place) inside the ellipse of `box` grown by GROW, sigma = `share` x the
    box's longer side (full-frame pixels)."""
    box = np.asarray(box, np.float64)
    sigma = _sigma(box, share)
    x0, y0, x1, y1 = _region(box, sigma, frame.width, frame.height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    crop = Crop(x0, y0, x1, y1)
    rgb = crop_rgb(frame, crop)
    mask = _ellipse(rgb.shape[:2], box, (x0, y0), GROW, FEATHER)
    paste_rgb(frame, crop, cv2.GaussianBlur(rgb, (0, 0), sigma), mask)


def covered(box: np.ndarray, handled: list) -> bool:
    """The soft find shares at least COVERED of its box with one of the `handled` face boxes."""
    return covered_by(box, handled, COVERED)


def soften_finds(frame: Frame, boxes: list, handled: list) -> list:
    """`soften` each soft find's box not `covered` by a handled face's box; the boxes softened
    (rounded to 0.1 px, for the report's frame log)."""
    todo = [b for b in boxes if not covered(b, handled)]
    for box in todo:
        soften(frame, box)
    return [[round(float(v), 1) for v in b] for b in todo]
