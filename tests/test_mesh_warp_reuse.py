"""MeshWarp (models/face_bank.py) keeps no triangulation between faces: the located grid is the one
of a fresh Qhull triangulation of its own mesh, bit for bit, whatever was warped before."""
from __future__ import annotations

import cv2
import numpy as np

from ideud.models import face_bank as fbk
from ideud.models import meshhead as mh
from ideud.models import piecewise_affine as pa


def _face(frame: float, size: float = 110.0, lips: float = 1.0) -> np.ndarray:
    """The canonical mesh in a slowly turning, drifting head, (468, 2) px; `lips` < 1 closes the
    mouth (the inner lips' slivers)."""
    r = cv2.Rodrigues(np.array([0.05, 0.2 * np.sin(frame / 9), 0.05 * np.cos(frame / 7)]))[0]
    p = mh.canonical() @ r.T
    xy = (p[:, :2] - p[:, :2].min(0)) / np.ptp(p[:, 1]) * size + 40 + 0.4 * frame
    mouth = np.array([13, 14, 78, 308, 82, 87, 312, 317, 80, 88, 310, 318])
    centre = xy[mouth].mean(0)
    xy[mouth, 1] = centre[1] + (xy[mouth, 1] - centre[1]) * lips
    return xy


def _fresh(warp: fbk.MeshWarp, shape: tuple, step: int) -> tuple:
    """What MeshWarp locates, from Qhull's triangulation of this frame alone."""
    nodes = np.vstack([warp.target, warp.extra])[warp.keep]
    tris = pa.delaunay(nodes)
    tris = tris[(tris < int(np.count_nonzero(warp.keep < len(warp.target)))).any(1)]
    gx, gy, _ = fbk._grid(shape[0], shape[1], step)
    vid, weights = pa.locate_grid(nodes, tris, gx, gy)
    inside = vid[:, 0] >= 0
    return inside, vid[inside], weights[inside]


def test_the_located_grid_is_qhulls_whatever_was_warped_before():
    """The faces of several tracks, interleaved as the restorer gets them: each MeshWarp locates
    its grid in Qhull's triangulation of its own mesh, bit for bit, and the fast triangulation
    (OpenCV's, models/piecewise_affine.py) is the one used."""
    rng = np.random.default_rng(3)
    frames, tracks = 8, 4
    for frame in range(frames):
        for t in range(tracks):
            lm = _face(0.3 * frame + 5 * t, size=100 + 3 * t, lips=0.05 if t == 1 else 1.0)
            lm = lm + rng.normal(0, 0.05, lm.shape)
            shape = (230 + 2 * (frame % 3), 200 + 2 * (frame % 2))
            warp = fbk.MeshWarp(lm, shape, step=2)
            for ours, ref in zip((warp.inside, warp.corners, warp.weights), _fresh(warp, shape, 2)):
                assert np.array_equal(ours, ref)
            nodes = np.vstack([warp.target, warp.extra])[warp.keep]
            assert pa.subdiv_triangles(nodes) is not None


def test_maps_depend_on_the_mesh_alone():
    """A face warped, other faces warped (one that jumps about), the first again: the same maps."""
    rng = np.random.default_rng(4)
    canvas = _face(0.0, size=120.0)
    smooth = _face(2.0)
    first = fbk.MeshWarp(smooth, (220, 200), step=2).maps(canvas)
    for frame in range(6):
        fbk.MeshWarp(_face(0.0) + rng.normal(0, 3.0, (468, 2)), (220, 200), step=2).maps(canvas)
        fbk.MeshWarp(_face(0.2 * frame, lips=0.05), (220, 200), step=2).maps(canvas)
    again = fbk.MeshWarp(smooth, (220, 200), step=2).maps(canvas)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
