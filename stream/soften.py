"""Softened surroundings: the guard's last escalation steps blur a band around the new face.

What the method keeps of the person (hair, hairline, ears, outline) carries much of what a
recognizer still matches: for some people no new face inside the oval gets both recognizers under
their limits, and the whole face box used to be obfuscated. From `guard_policy.SOFTENED_FROM` on,
a candidate is drawn with a band around the face oval blurred (the hair and ears next to the face,
a soft halo), and it is checked by the guard exactly as drawn here. The inner face (the new one,
with the person's pose and expression) stays sharp; only tracks that would otherwise be obfuscated
get it. Measured on 20 held-out portraits (the track's own candidate, no search): EdgeFace mean
similarity to the person 0.237 -> 0.181, candidates under both search limits 7 -> 12 of 20.

One function draws it on an RGB image (`soften_rgb`); the blend stage applies it to the frame
(`soften_frame`) and the guard to its checked context (`soften_context`): both cut the same region
around the same points, so the guard checks the pixels the frame gets (before the YUV round trip).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream.types import Crop, Frame

BAND = 1.6  # the band reaches this far out: the face oval scaled about the face centre
INNER = 0.97  # the face inside the oval scaled by this stays sharp
SIGMA = 0.08  # blur of the band, as a share of the face width
INNER_FEATHER = 0.02  # feather of the sharp face's edge, share of the face width
OUTER_FEATHER = 0.08  # feather of the band's outer edge
WORK_SIGMA = 3.0  # the blur runs on a copy shrunk until its sigma is this many pixels (large faces)
MASK_WIDTH = 100.0  # the band's mask is drawn with the face at most this wide, then enlarged (smooth anyway)


def _geometry(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    pts = np.asarray(pts, np.float64)[:, :2]
    oval = pts[fm.FACE_OVAL]
    centre = pts.mean(0)
    return oval, centre, float(max(np.ptp(oval[:, 0]), 1.0))


def region(pts: np.ndarray, width: int, height: int) -> Crop:
    """The frame region the softening touches for a face with these points (frame pixels)."""
    oval, centre, fw = _geometry(pts)
    outer = centre + (oval - centre) * BAND
    m = 3.0 * OUTER_FEATHER * fw + 2
    x0, y0 = np.floor(outer.min(0) - m).astype(int)
    x1, y1 = np.ceil(outer.max(0) + m).astype(int)
    x0, y0 = max(0, x0 - (x0 % 2)), max(0, y0 - (y0 % 2))
    x1, y1 = min(width, x1 + (x1 % 2)), min(height, y1 + (y1 % 2))
    return Crop(int(x0), int(y0), max(int(x0), int(x1)), max(int(y0), int(y1)))


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    k = min(1.0, WORK_SIGMA / max(sigma, 1e-6))
    if k >= 1.0:
        return cv2.GaussianBlur(rgb, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), WORK_SIGMA, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _feathered(shape: tuple[int, int], poly: np.ndarray, sigma: float) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    m = m.astype(np.float32) / 255.0
    return cv2.GaussianBlur(m, (0, 0), max(sigma, 0.5)) if sigma > 0.3 else m


def _occluder_in(crop: Crop, occluder: Optional[tuple[Crop, np.ndarray]]) -> Optional[np.ndarray]:
    """The occluder the occlusion stage found in this frame ((its crop, uint8 mask), stream/occlusion.py),
    as a bool mask over `crop`; None where there is none or it lies elsewhere."""
    if occluder is None:
        return None
    oc, m = occluder
    x0, y0, x1, y1 = max(crop.x0, oc.x0), max(crop.y0, oc.y0), min(crop.x1, oc.x1), min(crop.y1, oc.y1)
    if x1 <= x0 or y1 <= y0:
        return None
    out = np.zeros(crop.shape, bool)
    out[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0] = m[y0 - oc.y0:y1 - oc.y0, x0 - oc.x0:x1 - oc.x0] > 127
    return out


def soften_rgb(rgb: np.ndarray, pts: np.ndarray, keep: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """(blurred image, float mask of the band) for a face with these points in `rgb`'s pixels;
    `keep` (bool, same pixels): an occluder in front of the face, left as it is."""
    oval, centre, fw = _geometry(pts)
    h, w = rgb.shape[:2]
    k = min(1.0, MASK_WIDTH / fw)
    shape = (max(1, round(h * k)), max(1, round(w * k)))
    inner = _feathered(shape, (centre + (oval - centre) * INNER) * k, INNER_FEATHER * fw * k)
    outer = _feathered(shape, (centre + (oval - centre) * BAND) * k, OUTER_FEATHER * fw * k)
    mask = outer * (1.0 - inner)
    if k < 1.0:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    if keep is not None:
        mask[keep] = 0.0
    mask[mask < 1.0 / 255.0] = 0.0
    return _blur(rgb, SIGMA * fw), mask


def soften_frame(frame: Frame, pts: np.ndarray, occluder: Optional[tuple[Crop, np.ndarray]] = None) -> None:
    """Blur the band around the face with these points (frame pixels) in the frame, in place;
    `occluder`: this frame's occluder of the face (kept as it is)."""
    crop = region(pts, frame.width, frame.height)
    if crop.x1 - crop.x0 < 2 or crop.y1 - crop.y0 < 2:
        return
    rgb = bl.crop_rgb(frame, crop)
    soft, mask = soften_rgb(rgb, np.asarray(pts, np.float64)[:, :2] - crop.offset, _occluder_in(crop, occluder))
    bl.paste_rgb(frame, crop, soft, mask)


def soften_context(img: np.ndarray, ctx: Crop, pts: np.ndarray, width: int, height: int,
                   occluder: Optional[tuple[Crop, np.ndarray]] = None) -> np.ndarray:
    """The guard's context image (frame region `ctx`) softened as `soften_frame` would the frame;
    `pts` in the context's pixels, `width`/`height` the frame's. Returns a new image."""
    full = region(np.asarray(pts, np.float64)[:, :2] + ctx.offset, width, height)
    crop = Crop(max(full.x0, ctx.x0), max(full.y0, ctx.y0), min(full.x1, ctx.x1), min(full.y1, ctx.y1))
    out = img.copy()
    if crop.x1 - crop.x0 < 2 or crop.y1 - crop.y0 < 2:
        return out
    ys, xs = slice(crop.y0 - ctx.y0, crop.y1 - ctx.y0), slice(crop.x0 - ctx.x0, crop.x1 - ctx.x0)
    a = out[ys, xs]
    soft, mask = soften_rgb(a, np.asarray(pts, np.float64)[:, :2] + ctx.offset - crop.offset,
                            _occluder_in(crop, occluder))
    af = a.astype(np.float32)
    out[ys, xs] = np.clip(af + mask[..., None] * (soft.astype(np.float32) - af) + 0.5, 0, 255).astype(np.uint8)
    return out
