"""The fast piecewise-affine warp (models/piecewise_affine.py): reused triangulations, the
vectorised point location, and the one-BLAS-thread limit a FaceProcessor holds."""
from __future__ import annotations

import cv2
import matplotlib.tri as mtri
import numpy as np

from ideud.models import facemesh as fm
from ideud.models import meshhead as mh
from ideud.models import piecewise_affine as pa
from ideud.stream import blas_threads
from ideud.stream.render import warp_anchors, warp_field


def _face(frame: float, size: float = 120.0) -> np.ndarray:
    """The canonical mesh seen in a slowly turning, drifting head: (468, 2) px."""
    r = cv2.Rodrigues(np.array([0.05, 0.15 * np.sin(frame / 9), 0.05 * np.cos(frame / 7)]))[0]
    p = mh.canonical() @ r.T
    return (p[:, :2] - p[:, :2].min(0)) / np.ptp(p[:, 1]) * size + 30 + 0.3 * frame


def test_locate_grid_matches_matplotlib_trifinder():
    nodes = np.vstack([_face(0), [[0, 0], [199, 0], [0, 209], [199, 209]]])
    tris = pa.delaunay(nodes)
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


def test_a_folded_triangulation_is_not_reused():
    nodes = _face(0)
    tris = pa.delaunay(nodes)
    orient = np.sign(pa.signed_areas(nodes, tris))
    assert pa.fits(nodes + 0.01, tris, orient)  # moved: still a triangulation of the points
    folded = nodes.copy()
    a, b, c = tris[0]
    folded[a] = folded[b] + 2.0 * (folded[c] - folded[b]) + (folded[b] - folded[a])  # across its edge
    assert not pa.fits(folded, tris, orient)
    cache = pa.Triangulations()
    cache.get(nodes, "k")
    moved = nodes + np.random.default_rng(2).normal(0, 0.02, nodes.shape)  # jitter
    assert np.array_equal(cache.get(moved, "k"), pa.delaunay(moved)) and cache.reused == 1
    again = cache.get(folded, "k")
    assert np.array_equal(again, pa.delaunay(folded)) and cache.computed == 2
    assert np.all(pa.signed_areas(folded, again) > 0)


def test_the_warp_field_over_a_turning_face_is_the_delaunay_one_bit_for_bit():
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 1.5, (468, 2))
    cache_before = warp_field.__globals__["TRIANGULATIONS"].reused
    for f in range(25):
        src = _face(f / 4) + rng.normal(0, 0.02, (468, 2))  # a slow turn, a little jitter
        dst = src - offsets * 0.5 - np.sin(src / 25.0)
        h, w = 220, 210
        anchors = warp_anchors(fm_ring(src), w, h)
        reused = warp_field((h, w), src, dst, anchors, key=("test", 1))
        fresh = warp_field((h, w), src, dst, anchors, key=None)
        assert np.array_equal(reused[0], fresh[0]) and np.array_equal(reused[1], fresh[1])
    assert warp_field.__globals__["TRIANGULATIONS"].reused > cache_before  # the fast way was taken


def fm_ring(points: np.ndarray) -> np.ndarray:
    oval = points[fm.FACE_OVAL]
    c = points.mean(0)
    return c + (oval - c) * 1.3


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


def test_reused_triangulations_are_qhulls_after_flips_and_hull_changes():
    """Reuse re-tests only the edges next to last round's flips, and takes a held triangulation
    only while its boundary is the hull (a point joining the hull adds a sliver Qhull has): the
    result is Qhull's, bit for bit."""
    rng = np.random.default_rng(5)
    flipped = reused = 0
    for k in range(60):
        nodes = _face(k / 3)
        cache = pa.Triangulations()
        tris = cache.get(nodes, "k")
        moved = nodes + rng.normal(0, 0.02, nodes.shape)  # jitter: flips, now and then a hull change
        e1, e2 = pa._inner_edges(tris, len(nodes))
        flipped += int(pa._not_delaunay(moved, tris, e1, e2).sum() > 1)
        assert np.array_equal(cache.get(moved, "k"), pa.delaunay(moved))
        reused += cache.reused
    assert flipped > 20 and reused > 30  # the flip path was taken, and mostly settled


def test_a_key_that_keeps_missing_still_gets_the_delaunay_triangulation():
    cache = pa.Triangulations()
    rng = np.random.default_rng(6)
    for k in range(pa.GIVE_UP + 3 * pa.RETRY_EVERY):
        nodes = rng.uniform(0, 100, (60, 2))  # unrelated point sets: no held one fits
        assert np.array_equal(cache.get(nodes, "k"), pa.delaunay(nodes))
    assert cache.reused == 0
    base = rng.uniform(0, 100, (60, 2))
    got = [cache.get(base + 1e-4 * i, "k") for i in range(2 * pa.RETRY_EVERY)]  # now it fits again
    assert all(np.array_equal(g, pa.delaunay(base)) for g in got) and cache.reused > 0


def test_a_held_triangulation_with_closed_lips_slivers_is_reused_and_is_qhulls():
    """Closed lips put FaceMesh's inner-lip points a fraction of a pixel apart: Delaunay slivers of
    ~1e-7 of the mesh's box at the restorer's working size. Such a held triangulation is still
    reused (it was turned down at a 1e-6 floor, and Qhull ran on nearly every frame), and what
    comes out is Qhull's triangulation, bit for bit."""
    upper = [13, 82, 81, 80, 191, 312, 311, 310, 415]
    lower = [14, 87, 178, 88, 95, 317, 402, 318, 324]
    rng = np.random.default_rng(5)
    reused = slivers = 0
    for k in range(30):
        nodes = _face(k / 3, size=65)
        nodes[lower] = nodes[upper] + [0.0, 0.06]
        cache = pa.Triangulations()
        first = cache.get(nodes, "k")
        ext = np.ptp(nodes, axis=0)
        slivers += pa.signed_areas(nodes, first).min() < 1e-6 * ext[0] * ext[1]
        moved = nodes + rng.normal(0, 0.002, nodes.shape)
        assert np.array_equal(cache.get(moved, "k"), pa.delaunay(moved))
        reused += cache.reused
    assert slivers >= 20 and reused >= 25, (slivers, reused)
