"""The fast piecewise-affine warp (models/piecewise_affine.py): OpenCV's Delaunay triangulation
checked against Qhull's, the vectorised point location, and the one-BLAS-thread limit a
FaceProcessor holds."""
from __future__ import annotations

import cv2
import matplotlib.tri as mtri
import numpy as np

from ideud.models import facemesh as fm
from ideud.models import meshhead as mh
from ideud.models import piecewise_affine as pa
from ideud.stream import blas_threads
from ideud.stream.render import warp_anchors, warp_field

UPPER_LIP = [13, 82, 81, 80, 191, 312, 311, 310, 415]
LOWER_LIP = [14, 87, 178, 88, 95, 317, 402, 318, 324]


def _face(frame: float, size: float = 120.0) -> np.ndarray:
    """The canonical mesh seen in a slowly turning, drifting head: (468, 2) px."""
    r = cv2.Rodrigues(np.array([0.05, 0.15 * np.sin(frame / 9), 0.05 * np.cos(frame / 7)]))[0]
    p = mh.canonical() @ r.T
    return (p[:, :2] - p[:, :2].min(0)) / np.ptp(p[:, 1]) * size + 30 + 0.3 * frame


def fm_ring(points: np.ndarray, scale: float = 1.3) -> np.ndarray:
    oval = points[fm.FACE_OVAL]
    c = points.mean(0)
    return c + (oval - c) * scale


def test_locate_grid_matches_matplotlib_trifinder():
    nodes = np.vstack([_face(0), [[0, 0], [199, 0], [0, 209], [199, 209]]])
    tris = pa.triangulate(nodes)
    gx, gy = np.linspace(0, 199, 48), np.linspace(0, 209, 48)
    vid, weights = pa.locate_grid(nodes, tris, gx, gy)
    values = np.random.default_rng(0).normal(size=(len(nodes), 2))
    ours = pa.interpolate(values, vid, weights)
    tri = mtri.Triangulation(nodes[:, 0], nodes[:, 1], tris)
    xx, yy = np.meshgrid(gx, gy)
    for d in range(2):
        ref = mtri.LinearTriInterpolator(tri, values[:, d])(xx.ravel(), yy.ravel())
        assert not np.ma.is_masked(ref) or not ref.mask.any()
        np.testing.assert_allclose(ours[:, d], np.asarray(ref), atol=1e-9)
    # outside every triangle: no hit
    vid, _ = pa.locate_grid(nodes, tris, np.array([-5.0, 250.0]), np.array([-5.0]))
    assert (vid == -1).all()


def _meshes(rng):
    """What the three warps triangulate: face meshes with their ring, at several sizes, turning,
    with jitter, crop corners, closed lips and negative coordinates."""
    for k in range(40):
        face = _face(k / 2, size=40 + 5 * k) + rng.normal(0, 0.05, (468, 2))
        if k % 3 == 0:
            face[LOWER_LIP] = face[UPPER_LIP] + [0.0, 0.06]  # closed lips: slivers
        if k % 5 == 0:
            face -= 80.0  # a face partly off the crop's top-left
        ring = fm_ring(face, 1.3 + 0.1 * (k % 4))
        lo, hi = face.min(0) - 20, face.max(0) + 20
        corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]])
        nodes = np.vstack([face, ring, corners] if k % 2 else [face, ring])
        yield nodes[pa.unique_rows(nodes)]


def test_opencv_gives_qhulls_delaunay_triangulation():
    """Subdiv2D's triangles, checked and put in canonical order, are Qhull's bit for bit on face
    meshes (the warps' outputs then do not change), and the fast path is the one taken."""
    rng = np.random.default_rng(5)
    fast = 0
    for nodes in _meshes(rng):
        found = pa.subdiv_triangles(nodes)
        fast += found is not None
        assert np.array_equal(pa.triangulate(nodes), pa.delaunay(nodes))
        if found is not None:
            assert np.array_equal(found, pa.delaunay(nodes))
            assert found.dtype == np.int32 and np.all(pa.signed_areas(nodes, found) > 0)
    assert fast == 40


def test_what_opencv_cannot_triangulate_goes_to_qhull():
    rng = np.random.default_rng(6)
    nodes = rng.uniform(0, 100, (60, 2))
    # two points that differ in float64 but not in float32: Subdiv2D keeps one of them
    twins = np.vstack([nodes, nodes[7] + [1e-7, 0.0]])
    assert pa.subdiv_triangles(twins) is None
    tris = pa.triangulate(twins)
    assert np.array_equal(tris, pa.delaunay(twins)) and 60 in tris
    assert pa.subdiv_triangles(nodes[:2]) is None  # too few points
    bad = nodes.copy()
    bad[3] = np.nan
    assert pa.subdiv_triangles(bad) is None
    far = nodes * 1e6  # OpenCV's rectangle around them would pass int32
    assert pa.subdiv_triangles(far) is None
    assert np.array_equal(pa.triangulate(far), pa.delaunay(far))


def _restorer_meshes(rng, n: int):
    """What the restorer's mesh warp triangulates (models/face_bank.py MeshWarp): a face, its ring at
    1.6x and the crop's corners, one crop edge passing within a few thousandths of a px of a ring point
    (a hull triangle thin enough for Subdiv2D to leave out)."""
    for k in range(n):
        face = _face(k / 3, size=60 + (k % 50) * 3) + rng.normal(0, 0.05, (468, 2))
        ring = fm_ring(face, 1.6)
        lo, hi = face.min(0) - rng.uniform(0, 30, 2), face.max(0) + rng.uniform(0, 30, 2)
        hi[1] = ring[rng.integers(len(ring)), 1] + (1e-3, -1e-3, 2e-3)[k % 3]
        nodes = np.vstack([face, ring, [[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]]])
        yield nodes[pa.unique_rows(nodes)]


def test_thin_hull_triangles_opencv_leaves_out_are_put_back_as_qhull_has_them(monkeypatch):
    """Subdiv2D may leave out a hull triangle thin enough for its circle to reach its virtual
    vertices; that triangle is put back (no Qhull, whose first call imports matplotlib: ~0.3 s of a
    restore process), and what comes back is Qhull's triangulation bit for bit."""
    calls = []
    put_back = pa._with_hull_slivers
    monkeypatch.setattr(pa, "_with_hull_slivers", lambda *a: calls.append(1) or put_back(*a))
    repaired = 0
    for nodes in _restorer_meshes(np.random.default_rng(1), 300):
        before = len(calls)
        found = pa.subdiv_triangles(nodes)
        if len(calls) > before and found is not None:  # this mesh needed the repair
            repaired += 1
            assert np.array_equal(found, pa.delaunay(nodes))
    assert repaired >= 3  # the case happens on such meshes (3 of 300 here; Qhull took them before)


def test_a_gap_that_is_no_hull_triangle_is_left_to_qhull():
    nodes = np.vstack([_face(1.0), [[0, 0], [199, 0], [0, 209], [199, 209]]])
    tris = pa.delaunay(nodes)
    hull = cv2.convexHull(np.ascontiguousarray(nodes, np.float32), returnPoints=False)[:, 0]
    on_hull = np.isin(tris, hull).sum(1) >= 2
    inner = tris[~on_hull]
    # an inner triangle missing: no hull edge is open, so there is nothing to put back
    assert pa._with_hull_slivers(nodes, np.delete(tris, np.flatnonzero(~on_hull)[0], 0), hull) is None
    # a hull triangle missing: put back, the whole triangulation again
    k = np.flatnonzero(on_hull)[0]
    back = pa._with_hull_slivers(nodes, np.delete(tris, k, 0), hull)
    assert back is not None and np.array_equal(pa.canonical(back), tris)
    assert len(inner) > 0


def test_triangles_depend_on_the_points_alone():
    """No triangulation is kept between calls: a mesh gives the same triangles and the same warp
    whatever was triangulated before (the restore processes' bit identity rests on it)."""
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 1.5, (468, 2))
    src = _face(3.0)
    dst = src - offsets * 0.5
    h, w = 220, 210
    anchors = warp_anchors(fm_ring(src), w, h)
    first = warp_field((h, w), src, dst, anchors)
    first_tris = pa.triangulate(np.vstack([dst, anchors]))
    for f in range(5):  # other faces in between
        other = _face(f) + rng.normal(0, 2.0, (468, 2))
        warp_field((h, w), other, other + 1.0, warp_anchors(fm_ring(other), w, h))
    again = warp_field((h, w), src, dst, anchors)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert np.array_equal(first_tris, pa.triangulate(np.vstack([dst, anchors])))


def test_the_warp_field_is_the_one_of_every_delaunay_triangle():
    """warp_field leaves out triangles of anchors only (their offset is zero): its maps are those
    of the whole Qhull triangulation."""
    rng = np.random.default_rng(2)
    for f in range(6):
        src = _face(f / 4) + rng.normal(0, 0.02, (468, 2))
        dst = src - rng.normal(0, 1.5, (468, 2)) * 0.5 - np.sin(src / 25.0)
        h, w = 220, 210
        anchors = warp_anchors(fm_ring(src), w, h)
        map_x, map_y = warp_field((h, w), src, dst, anchors)
        nodes = np.vstack([dst, anchors])
        offsets = np.vstack([src - dst, np.zeros_like(anchors)])
        gx, gy = np.linspace(0, w - 1, 48), np.linspace(0, h - 1, 48)
        vid, weights = pa.locate_grid(nodes, pa.delaunay(nodes), gx, gy)
        coarse = pa.interpolate(offsets, vid, weights).astype(np.float32).reshape(48, 48, 2)
        fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        assert np.array_equal(map_x, xx + fine[..., 0]) and np.array_equal(map_y, yy + fine[..., 1])
        assert np.abs(fine).max() > 1.0  # the warp moves something


def test_corners_inside_the_ring_stay_anchors_and_those_outside_are_dropped():
    ring = fm_ring(_face(0))
    assert len(warp_anchors(ring, 400, 400)) == len(ring)  # the crop is bigger than the ring
    lo = ring.min(0)
    clipped = warp_anchors(ring - lo + [-20, -20], 60, 60)  # a face cut by the frame's top-left edge
    assert len(clipped) > len(ring)


def test_a_face_processor_limits_openblas_to_one_thread_while_open(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    controls = blas_threads._openblas_controls()
    if not controls:  # no OpenBLAS found (not Linux, or another BLAS): nothing to limit
        return
    start = blas_threads.current()
    for setter, _ in controls:
        setter(2)  # what a library caller who set nothing gets on a 2-core machine
    raised = blas_threads.current()  # a pool started with one thread stays at one
    try:
        blas_threads.acquire(1)
        blas_threads.acquire(1)  # a second processor
        assert blas_threads.current() == [1] * len(controls)
        blas_threads.release()
        assert blas_threads.current() == [1] * len(controls)  # the first still holds it
        blas_threads.release()
        assert blas_threads.current() == raised  # given back
    finally:
        for (setter, _), n in zip(controls, start):
            setter(n)
