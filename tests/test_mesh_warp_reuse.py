"""MeshWarp's per-track triangulation keys (models/face_bank.py, stream/restore_prior.py): the faces
of one frame no longer push each other's held triangulations out, and the located grid is the
one of a fresh Delaunay triangulation bit for bit, whatever was warped before."""
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


def test_per_track_keys_reuse_triangulations_and_change_nothing(monkeypatch):
    monkeypatch.setattr(fbk, "_TRIANGULATIONS", pa.Triangulations())  # this test's counts only
    rng = np.random.default_rng(3)
    frames, tracks = 12, 4
    for frame in range(frames):
        for t in range(tracks):  # the faces of one frame, in the order the restorer gets them
            lm = _face(0.3 * frame + 5 * t, size=100 + 3 * t, lips=0.05 if t == 1 else 1.0)
            lm = lm + rng.normal(0, 0.05, lm.shape)
            shape = (230 + 2 * (frame % 3), 200 + 2 * (frame % 2))
            warp = fbk.MeshWarp(lm, shape, step=2, key=("prior", t))
            for ours, ref in zip((warp.inside, warp.corners, warp.weights), _fresh(warp, shape, 2)):
                assert np.array_equal(ours, ref)
    assert fbk._TRIANGULATIONS.reused >= 0.5 * frames * tracks


def _smooth_and_jumping(key_of) -> int:
    """Frames of a smoothly moving face whose held triangulation was reused, while another face
    of the same frames jumps about (its held triangulation never fits)."""
    cache = pa.Triangulations()
    rng = np.random.default_rng(4)
    reused = 0
    for frame in range(40):
        smooth = _face(0.2 * frame, lips=1.0)
        jumping = _face(0.0) + rng.normal(0, 3.0, (468, 2))
        before = cache.reused
        cache.get(smooth, key_of(1))
        reused += cache.reused - before
        cache.get(jumping[pa.unique_rows(jumping)], key_of(2))
    return reused


def test_a_face_that_never_fits_does_not_stop_another_tracks_reuse():
    """Under one key the misses of one face count against all (after a few, held triangulations
    are only tried now and then): per track, the smooth face keeps reusing its own."""
    per_track = _smooth_and_jumping(lambda t: ("prior", t))
    shared = _smooth_and_jumping(lambda t: "all")
    print("smooth face reused: per-track keys", per_track, "one key", shared)
    assert per_track >= 25
    assert shared < 0.6 * per_track
