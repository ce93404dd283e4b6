"""Re-render the face with its perturbed geometry, and build its masks.

The re-rendering is a piecewise-affine warp over a Delaunay triangulation of
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

import cv2
import numpy as np
import matplotlib.tri as mtri

from ideud.models import facemesh as fm
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


def warp_field(shape: tuple[int, int], src: np.ndarray, dst: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps (map_x, map_y) for cv2.remap that carry `src` points to `dst`.

    Piecewise affine on the Delaunay triangulation of dst + anchors (anchors do
    not move); evaluated on a coarse grid, then upsampled (the field is smooth).
    Triangles are looked up with matplotlib's trapezoid map: Qhull's own
    point location can walk for seconds on near-degenerate meshes.
    """
    h, w = shape
    nodes = np.vstack([dst, anchors])
    offsets = np.vstack([src - dst, np.zeros_like(anchors)])
    nodes, keep = np.unique(np.round(nodes, 3), axis=0, return_index=True)  # duplicates break the triangulation
    offsets = offsets[keep]
    tri = mtri.Triangulation(nodes[:, 0], nodes[:, 1])
    gx = np.linspace(0, w - 1, min(GRID, w))
    gy = np.linspace(0, h - 1, min(GRID, h))
    xx, yy = np.meshgrid(gx, gy)
    q = np.stack([xx.ravel(), yy.ravel()], 1)
    idx = tri.get_trifinder()(q[:, 0], q[:, 1])
    inside = idx >= 0
    corners = tri.triangles[idx[inside]]  # (n, 3) vertex ids
    a, b, c = nodes[corners[:, 0]], nodes[corners[:, 1]], nodes[corners[:, 2]]
    v0, v1, v2 = b - a, c - a, q[inside] - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    wa = 1.0 - wb - wc
    field = np.zeros((len(q), 2), np.float32)
    field[inside] = (wa[:, None] * offsets[corners[:, 0]] + wb[:, None] * offsets[corners[:, 1]]
                     + wc[:, None] * offsets[corners[:, 2]])
    coarse = field.reshape(len(gy), len(gx), 2)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    base_x, base_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return base_x + fine[..., 0], base_y + fine[..., 1]


def render(rgb_crop: np.ndarray, crop: Crop, landmarks: np.ndarray, target: np.ndarray, visible: np.ndarray) -> Rendered:
    """Warp one face crop to its perturbed geometry and make its face mask."""
    off = crop.offset
    src = landmarks[:, :2] - off
    dst = target - off
    vis = visible.copy()
    vis[fm.FACE_OVAL] = True  # the silhouette is always on screen
    h, w = crop.shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
    anchors = np.vstack([_ring(src, RING_SCALE), corners])
    map_x, map_y = warp_field((h, w), src[vis], dst[vis], anchors)
    warped = cv2.remap(rgb_crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    size = face_size(src)
    mask = face_mask((h, w), [face_polygon(src), face_polygon(dst)], feather=max(1.0, 0.04 * size))
    return Rendered(crop, warped, mask, dst)
