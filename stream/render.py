"""Re-render the face with its perturbed geometry, and build its masks.

The re-rendering is a piecewise-affine warp over a triangulation of
the perturbed landmark positions (those facing the camera), closed by a ring
of fixed points around the face so the warp fades to the identity before the
hair and background: each output pixel samples the original crop at the
place its triangle came from (cv2.remap). The displacement field is smooth, so
it is evaluated on a coarse grid and upsampled.

Masks (visual similarity assistance): the face region is the face oval with
the forehead cut below the hairline, taken from both the original and the
perturbed geometry; hair, ears, neck, accessories and background stay
original.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models import piecewise_affine as pa
from ideud.models.facemesh import face_polygon
from ideud.stream.types import Crop, Rendered

RING_SCALE = 1.3  # fixed ring: face oval grown by this factor about the face centre
CROP_MARGIN = 0.08  # crop around the ring, as a share of the face size
GRID = 48  # coarse grid for the displacement field, per crop side


def face_size(lm: np.ndarray) -> float:
    return float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])))


def _ring(points2d: np.ndarray, scale: float) -> np.ndarray:
    oval = points2d[fm.FACE_OVAL]
    centre = points2d.mean(0)
    return centre + (oval - centre) * scale


def warp_anchors(ring: np.ndarray, width: int, height: int) -> np.ndarray:
    """The fixed points of a warp: the ring, and the crop's corners that lie inside it (a face
    clipped by the frame edge). Corners outside the ring add nothing (the field is zero beyond
    the ring either way) but thin triangles between them and the ring fold with every motion,
    and would force a new triangulation each frame."""
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], float)
    poly = ring.astype(np.float32).reshape(-1, 1, 2)
    inside = [cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0 for x, y in corners]
    return np.vstack([ring, corners[inside]])


def crop_for(lm: np.ndarray, target: np.ndarray, width: int, height: int) -> Crop:
    """The frame region that the warp and masks of one face can touch."""
    pts = np.vstack([_ring(lm[:, :2], RING_SCALE), _ring(target, RING_SCALE)])
    m = CROP_MARGIN * face_size(lm)
    x0, y0 = np.floor(pts.min(0) - m).astype(int)
    x1, y1 = np.ceil(pts.max(0) + m).astype(int)
    x0, y0 = max(0, x0 - (x0 % 2)), max(0, y0 - (y0 % 2))
    x1, y1 = min(width, x1 + (x1 % 2)), min(height, y1 + (y1 % 2))
    return Crop(int(x0), int(y0), int(x1), int(y1))


def face_mask(shape: tuple[int, int], polygons: list[np.ndarray], feather: float) -> np.ndarray:
    """Filled union of polygons, feathered by a Gaussian centred on the polygon edge."""
    # drawn at a coarser scale: the feather is several pixels wide, so nothing is lost
    k = 0.5 if feather >= 4 else 1.0
    h, w = shape
    small = (max(1, int(round(w * k))), max(1, int(round(h * k))))
    mask = np.zeros(small[::-1], np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.round(poly * k * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    if feather > 0.5:
        f = feather * k
        r = int(round(f))
        if r > 0:  # grow first so the feather's midpoint sits on the polygon's edge
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        mask = cv2.GaussianBlur(mask, (0, 0), f)
    mask = mask.astype(np.float32) * (1.0 / 255.0)
    if k != 1.0:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    mask[mask < 1.0 / 255.0] = 0.0  # the far tail stays exactly untouched
    return mask


def warp_field(shape: tuple[int, int], src: np.ndarray, dst: np.ndarray,
               anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps (map_x, map_y) for cv2.remap that carry `src` points to `dst`.

    Piecewise affine on the Delaunay triangulation of dst + anchors (anchors do not move;
    models/piecewise_affine.py); evaluated on a coarse grid, then upsampled (the field is smooth).
    It depends on these points alone, not on what was warped before.
    """
    h, w = shape
    nodes = np.vstack([dst, anchors])
    offsets = np.vstack([src - dst, np.zeros_like(anchors)])
    moving = np.arange(len(nodes)) < len(dst)
    keep = pa.unique_rows(nodes)  # duplicates break the triangulation
    if len(keep) < len(nodes):
        nodes, offsets, moving = nodes[keep], offsets[keep], moving[keep]
    tris = pa.triangulate(nodes)
    # a triangle of anchors only carries a zero offset: as if no triangle held its grid points
    tris = tris[moving[tris].any(1)]
    gx = np.linspace(0, w - 1, min(GRID, w))
    gy = np.linspace(0, h - 1, min(GRID, h))
    vid, weights = pa.locate_grid(nodes, tris, gx, gy)
    field = pa.interpolate(offsets, vid, weights).astype(np.float32)
    coarse = field.reshape(len(gy), len(gx), 2)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    base_x, base_y = _base_grid(h, w)
    return base_x + fine[..., 0], base_y + fine[..., 1]


@functools.lru_cache(maxsize=32)
def _base_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    base_x, base_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    base_x.flags.writeable = False
    base_y.flags.writeable = False
    return base_x, base_y


def render(rgb_crop: np.ndarray, crop: Crop, landmarks: np.ndarray, target: np.ndarray, visible: np.ndarray,
           warp: bool = True) -> Rendered:
    """Warp one face crop to its perturbed geometry and make its face mask (the warp depends on this face alone).
    `warp=False`: the mask only (the crop as it is for the image), for a face obfuscated anyway whose
    occluders are all that is asked (the mask does not depend on the warp)."""
    off = crop.offset
    src = landmarks[:, :2] - off
    dst = target - off
    h, w = crop.shape
    warped = rgb_crop
    if warp:
        vis = visible.copy()
        vis[fm.FACE_OVAL] = True  # the silhouette is always on screen
        anchors = warp_anchors(_ring(src, RING_SCALE), w, h)
        map_x, map_y = warp_field((h, w), src[vis], dst[vis], anchors)
        warped = cv2.remap(rgb_crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Rendered(crop, warped, render_mask((h, w), src, dst), dst)


def render_mask(shape: tuple[int, int], src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The paste-back mask of a face warped from `src` to `dst` (crop pixels): both outlines, feathered."""
    return face_mask(shape, [face_polygon(src), face_polygon(dst)], feather=max(1.0, 0.04 * face_size(src)))
