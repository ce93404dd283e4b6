"""Where the person's hair falls over the forehead: kept, not painted over by a new face.

The prior's new face (stream/restore_prior.py) covers the face oval up to 40 % of the forehead's
height above the brows (facemesh.face_polygon), fading out over its upper part. A fringe that comes
down nearly to the brows reaches into that oval: the new skin was drawn over the tips of its strands,
smeared them into a smooth skin-coloured edge, and the skin-only shading counted them as dark skin.
The method's visual-similarity mask keeps hair; this is its embedded-tier stand-in for a fringe:
above the brows, what is far from the colour of the person's own cheeks, in a mass wider than a
hairline.

Colour alone: the cheeks' median in the same frame (`skin_colour`), and a pixel is hair where it
is much darker than that (dark and brown hair) or of another hue (blonde or red hair over fair skin). Lighter at the skin's hue is the forehead's own light, a highlight: not hair
(grey hair there has no hue to tell and stays painted over, as before). An opening drops lines
thinner than OPEN_SHARE of the face width: a forehead's wrinkles are darker than its skin too, and
they are the person's, not hair. On 699 build portraits the mask covers 0.1-1.8 % of the drawn face
on 96 (fringes, strands across the forehead, a low hairline), less on the rest; ~0.3 ms a face.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ideud.models import face_prior as fp
from ideud.models import facemesh as fm

ABOVE_BROWS = 0.02  # share of the face width above the brows' top where the forehead starts
DISTANCE = (2.5, 4.0)  # distance from the cheeks' colour (in the units below): skin under, hair over, a ramp between
# log units of luma darker than the cheeks' median per unit of distance: hair begins at 0.375 (69 % of
# the skin's luma) and is whole at 0.6 (55 %); a forehead's own shading stays mostly above that
DARK_SCALE = 0.15
LIGHTER = 0.1  # log units of luma over the cheeks' at which a hue no longer tells hair (a highlight)
HUE_SPREAD = 0.12  # radians of hue per unit of distance (skin's hue angle varies ~0.1 over a face)
CHROMA_MIN = 16.0  # opponent chroma (levels) under this has no hue worth comparing (grey hair, a highlight), twice it has
OPEN_SHARE = 0.03  # hair masses wider than this share of the face width; wrinkles and strands' edges are thinner
FEATHER = 0.01  # the mask's edge, share of the face width


def _colour(image: np.ndarray, box: tuple, inside: np.ndarray) -> np.ndarray:
    """(N, 3) of the pixels of `image` (RGB, 0..255) in `box` where `inside`: luma and two opponent
    colours (red - green, yellow - blue), whose angle is the hue. Plain numpy on the few pixels: an
    OpenCV conversion of a small box costs more in its thread pool's dispatch than in its work."""
    x0, y0, x1, y1 = box
    rgb = image[y0:y1, x0:x1][inside].astype(np.float32)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return np.stack([0.299 * r + 0.587 * g + 0.114 * b, r - g, 0.5 * (r + g) - b], 1)


def _box(points: np.ndarray, pad: float, shape) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of `points` grown by `pad` px, inside an image of `shape`."""
    x0, y0 = np.floor(points.min(0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(0) + pad).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _inside(polys: list, box: tuple) -> np.ndarray:
    """Boolean mask of the filled polygons over `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    return fp.fill((y1 - y0, x1 - x0), [p - (x0, y0) for p in polys]) > 0.5


def skin_colour(image: np.ndarray, lm: np.ndarray) -> Optional[np.ndarray]:
    """The cheeks' median colour (`_colour`'s three numbers); None where they hold too few pixels."""
    cheeks = fp.cheek_hulls(lm)
    box = _box(np.vstack(cheeks), 1, image.shape[:2])
    inside = _inside(cheeks, box)
    if np.count_nonzero(inside) < 16:
        return None
    return np.median(_colour(image, box, inside), 0)


def hair_mask(image: np.ndarray, lm: np.ndarray, face: np.ndarray, fw: float) -> np.ndarray:
    """Soft mask (float32 0..1, `image`'s height and width) of hair over the forehead, inside
    `face` (> 0.05: where a new face would be drawn). `image`: RGB, uint8 or float 0..255."""
    shape = image.shape[:2]
    out = np.zeros(shape, np.float32)
    up = fm.face_up(lm[:, :2])
    brow = fm.brow_top(lm[:, :2], up) + ABOVE_BROWS * fw
    poly = fm.face_polygon(lm[:, :2])
    pad = 3 * FEATHER * fw + 2
    top = poly[poly @ up > brow - 0.1 * fw]  # the oval's upper part: the box the forehead is judged in
    x0, y0, x1, y1 = _box(top if len(top) > 1 else poly, pad, shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    height = (np.arange(y0, y1, dtype=np.float32)[:, None] * np.float32(up[1])
              + np.arange(x0, x1, dtype=np.float32)[None, :] * np.float32(up[0]))
    drawn = face[y0:y1, x0:x1] > 0.05
    # judged over the whole box above the brows, not only where a new face is drawn: the opening must
    # see a fringe's full mass, of which the drawn oval holds a thin band along its top
    zone = height > brow
    med = skin_colour(image, lm)
    if med is None or np.count_nonzero(zone & drawn) < 4:
        return out
    px = _colour(image, (x0, y0, x1, y1), zone)
    # darker than the skin (dark and brown hair), or of another hue (blonde and red over fair skin);
    # lighter at the skin's hue is the forehead's own light (a highlight), not hair
    darker = np.log(max(float(med[0]), 1.0) / np.maximum(px[:, 0], 1.0)) / DARK_SCALE
    hue = np.arctan2(px[:, 2], px[:, 1]) - np.arctan2(med[2], med[1])
    hue = np.abs((hue + np.pi) % (2 * np.pi) - np.pi)
    chroma = np.hypot(px[:, 1], px[:, 2])
    off_hue = hue / HUE_SPREAD * np.clip(chroma / CHROMA_MIN - 1.0, 0, 1)  # grey has no hue to tell
    # ... nor skin lit brighter than the cheeks: a highlight clips red first and turns yellow like blonde hair
    off_hue *= np.clip(1.0 + darker * (DARK_SCALE / LIGHTER), 0, 1)
    share = np.clip((np.maximum(darker, off_hue) - DISTANCE[0]) / (DISTANCE[1] - DISTANCE[0]), 0, 1)
    if not share[drawn[zone]].any():  # most faces: a bare forehead (no morphology, no blur to pay for)
        return out
    hair = np.zeros(zone.shape, np.float32)
    hair[zone] = share
    k = int(round(OPEN_SHARE * fw))
    if k >= 2:
        hair = cv2.morphologyEx(hair, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    out[y0:y1, x0:x1] = fp.blur(hair * drawn, FEATHER * fw)
    return out
