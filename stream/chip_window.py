"""The part of a crop that EdgeFace's chips of some faces read, so that only it is converted to RGB.

A chip (`edgeface.align`, 112x112) reads the pixels inside its four corners, one more around for
the interpolation, and, where it passes the image's edge, the pixels it mirrors back from inside
(BORDER_REFLECT_101). Cut from a window that holds all of those, with its corner on even pixels as
the crop's (so that 4:2:0 chroma is upsampled in the same phase) and a margin for the chroma
upsampled at the window's own edge, a chip is the chip cut from the whole crop, bit for bit, for a
fraction of the crop's YUV->RGB conversion (the guard's per-frame look at 720p converted a context
2.3 times the face's width each way: ~13 % of the main thread).
"""
from __future__ import annotations

import math

import numpy as np

from ideud.models import edgeface as ef
from ideud.models.face_align import five_points_from_facemesh
from ideud.stream.types import Crop

CHIP_MARGIN = 4  # px around a chip's corners: its interpolation, and the chroma upsampled at a window's edge


def chip_window(ctx: Crop, faces: list) -> Crop:
    """The part of `ctx` (x0, y0 even) that the chips (`edge_views(full=False)`) of these faces read,
    their FaceMesh points given in frame pixels: each chip's corners grown by CHIP_MARGIN px, and
    where that passes ctx's edge, what the chip mirrors back from inside."""
    corners = np.vstack([ef.chip_corners(five_points_from_facemesh(np.asarray(p, np.float64)[:, :2])) for p in faces])
    (lx, ly), (hx, hy), out = corners.min(0), corners.max(0), []
    for lo, hi, a, b in ((lx, hx, ctx.x0, ctx.x1), (ly, hy, ctx.y0, ctx.y1)):
        lo, hi = math.floor(lo) - CHIP_MARGIN, math.ceil(hi) + CHIP_MARGIN
        if lo < a:
            hi = max(hi, 2 * a - lo)
        if hi > b - 1:
            lo = min(lo, 2 * (b - 1) - hi)
        out.append((max(a, (lo // 2) * 2), min(b, hi + 1)))
    (x0, x1), (y0, y1) = out
    return ctx if x1 <= x0 or y1 <= y0 else Crop(x0, y0, x1, y1)
