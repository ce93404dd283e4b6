"""A tiny bank of public-domain donor faces, and a mesh-to-mesh warp.

The `bank` restorer (stream/restore_bank.py) takes the mid-frequency detail
of the face (eyes, lids, brows, nose, skin structure) from a donor instead of
from the person in the video. The donors are the two public-domain
portraits of models/data/face_bank.npz (`tools/build_face_bank.py`):
Eileen Collins (NASA) and Grace Hopper (US Navy), each also mirrored, so
four variants. Nothing else ships: no photo of the test sets, no average
derived from them.

A donor is carried onto a target face by a piecewise-affine warp over the
468-point FaceMesh topology (the donor's triangle -> the same triangle of
the target), so eyes, lids, nostrils and lips land where the target has
them, not where a similarity transform would put them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from ideud.models import meshhead as mh
from ideud.models import piecewise_affine as pa
from ideud.models.geometry import match

COMPONENTS = ("eyes", "brows", "nose", "mouth", "skin")


@dataclass(frozen=True)
class Donor:
    name: str
    image: np.ndarray  # HxWx3 float32 RGB, 0..255
    landmarks: np.ndarray  # (468, 2) float32, pixels of `image`
    valid: np.ndarray  # HxW float32 in [0, 1]: where its detail may be used
    brows: bool  # its brows may be used
    mirrored: bool = False


@functools.lru_cache(maxsize=1)
def mirror_index() -> np.ndarray:
    """FaceMesh vertex i <-> its mirror image vertex (left/right swapped)."""
    c = mh.canonical()
    m = c * np.array([-1.0, 1.0, 1.0])
    cost = np.linalg.norm(c[:, None, :] - m[None, :, :], axis=2)
    idx = np.empty(len(c), int)
    for r, col in match(-cost):
        idx[r] = col
    return idx


def _mirror(d: Donor) -> Donor:
    w = d.image.shape[1]
    lm = d.landmarks.copy()
    lm[:, 0] = w - 1 - lm[:, 0]
    return Donor(d.name, np.ascontiguousarray(d.image[:, ::-1]), lm[mirror_index()].astype(np.float32),
                 np.ascontiguousarray(d.valid[:, ::-1]), d.brows, not d.mirrored)


@functools.lru_cache(maxsize=1)
def donors() -> tuple[Donor, ...]:
    """Every donor variant: each portrait as it is, then mirrored."""
    with resources.files("ideud.models").joinpath("data/face_bank.npz").open("rb") as f:
        z = np.load(f)
        base = []
        for name in [str(n) for n in z["names"]]:
            img = cv2.imdecode(z[f"{name}_jpg"], cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32)
            valid = cv2.imdecode(z[f"{name}_valid_png"], cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
            base.append(Donor(name, np.ascontiguousarray(img), z[f"{name}_landmarks"].astype(np.float32),
                              valid, bool(z[f"{name}_brows"])))
    return tuple(base) + tuple(_mirror(d) for d in base)


class MeshWarp:
    """Backward piecewise-affine maps onto one target mesh, reusable for many sources.

    The target's triangles (Delaunay of the 468 points plus a ring and the
    crop corners) are located once; `sample(image, landmarks)` then only
    interpolates that source's vertex positions. Outside the ring the source
    follows the similarity that best fits the two meshes.
    """

    def __init__(self, target: np.ndarray, shape: tuple[int, int], step: int = 2):
        """The triangles are the Delaunay ones of this mesh (models/piecewise_affine.py): the maps
        depend on `target` and `shape` alone, not on what was warped before."""
        self.target = np.asarray(target, np.float64)
        self.shape = shape
        h, w = shape
        centre = self.target.mean(0)
        ring = centre + (self.target[_oval()] - centre) * 1.6
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
        self.extra = np.vstack([ring, corners])
        nodes = np.vstack([self.target, self.extra])
        keep = _unique_rows(nodes)  # duplicates break the triangulation
        nodes = nodes[keep]
        self.keep = keep
        gx, gy, self.q = _grid(int(h), int(w), int(step))
        self.grid = (len(gy), len(gx))
        # triangles with no face vertex (ring and crop corners only) carry the similarity, which
        # all three of their vertices follow: their grid points take it directly (`_compute_maps`),
        # the same up to float64 rounding (identical maps on the bench clip), and are not located
        # (over 40 % of the point-in-triangle tests of a face crop)
        tris = pa.triangulate(nodes)
        on_face = (tris < int(np.count_nonzero(keep < len(self.target)))).any(1)
        vid, weights = pa.locate_grid(nodes, tris[on_face], gx, gy)
        self.inside = vid[:, 0] >= 0
        self.weights = weights[self.inside]
        self.corners = vid[self.inside]
        self.step = step
        self._maps: list = []  # (source landmarks, their maps), the last few

    def maps(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The maps for one source mesh; the last few are kept (a donor's image and mask share them)."""
        key = np.array(landmarks, copy=True)
        for held, found in list(self._maps):
            if held.shape == key.shape and np.array_equal(held, key):
                return found
        found = self._compute_maps(key)
        self._maps = (self._maps + [(key, found)])[-4:]
        return found

    def _compute_maps(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        src = np.asarray(landmarks, np.float64)
        m, _ = cv2.estimateAffinePartial2D(self.target.astype(np.float32), src.astype(np.float32))
        if m is None:
            raise ValueError("meshes do not fit")
        extra_src = self.extra @ m[:, :2].T + m[:, 2]
        nodes_src = np.vstack([src, extra_src])[self.keep]
        res = self.q @ m[:, :2].T + m[:, 2]
        res[self.inside] = np.einsum("nk,nkd->nd", self.weights, nodes_src[self.corners])
        coarse = res.reshape(*self.grid, 2).astype(np.float32)
        if self.step == 1:
            return np.ascontiguousarray(coarse[..., 0]), np.ascontiguousarray(coarse[..., 1])
        # grid node k sits on pixel k * step: bilinear upsampling with those nodes as anchors
        ux, uy = _upsampling_grid(tuple(int(v) for v in self.shape), int(self.step))
        full = cv2.remap(coarse, ux, uy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(full[..., 0]), np.ascontiguousarray(full[..., 1])

    def sample(self, image: np.ndarray, landmarks: np.ndarray, border=cv2.BORDER_REFLECT) -> np.ndarray:
        mx, my = self.maps(landmarks)
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=border)


def _unique_rows(nodes: np.ndarray) -> np.ndarray:
    """pa.unique_rows (which skips np.unique's ~1 ms when no two rows are equal)."""
    return pa.unique_rows(nodes)


@functools.lru_cache(maxsize=64)  # crop sizes vary by a few px frame to frame
def _grid(h: int, w: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coarse grid's x and y (every `step` px, past the last pixel) and its points row by
    row ((n, 2)); read-only."""
    gy, gx = np.arange(0, h + step - 1, step, dtype=float), np.arange(0, w + step - 1, step, dtype=float)
    qx, qy = np.meshgrid(gx, gy)
    q = np.stack([qx.ravel(), qy.ravel()], 1)
    for a in (gx, gy, q):
        a.flags.writeable = False
    return gx, gy, q


@functools.lru_cache(maxsize=64)  # crop sizes vary by a few px frame to frame
def _upsampling_grid(shape: tuple, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, its position on the coarse grid (grid node k on pixel k * step); read-only."""
    h, w = shape
    ux, uy = np.meshgrid(np.arange(w, dtype=np.float32) / step, np.arange(h, dtype=np.float32) / step)
    ux.flags.writeable = False
    uy.flags.writeable = False
    return ux, uy


@functools.lru_cache(maxsize=1)
def _oval() -> list:
    from ideud.models import facemesh as fm

    return list(fm.FACE_OVAL)
