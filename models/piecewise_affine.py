"""Piecewise-affine maps over a triangulated point set, fast enough to run per face and frame.

Two costs dominated the per-face warps (render, occluder reference, restorer canvas): a Delaunay
triangulation of ~500 points (Qhull, ~2.7 ms) and the point location of the grid in it
(matplotlib's trapezoid map, ~7 ms). Both are cut here:

- Topology is reused. A face mesh moves smoothly, so the Delaunay triangulation of the last
  frame is still a triangulation of this frame's points as long as no triangle folds, and a few
  edge flips (Lawson) make it this frame's Delaunay triangulation again. `Triangulations` keeps
  the last few per key (which points take part) and tries them first; Qhull runs only when none
  fits, or near a tie (four points nearly on one circle). The result is always the Delaunay
  triangulation, in one canonical order, so the output does not depend on what was warped before.
- Point location is a vectorised rasteriser: each triangle tests the grid points inside its
  bounding box (barycentric coordinates), so no search structure is built per frame.

Points outside every triangle get index -1 (the caller decides: zero offset, or a similarity).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable, Optional

import numpy as np

MIN_AREA = 1e-6  # share of the nodes' bounding-box area: a thinner triangle counts as folded
INCIRCLE_MARGIN = 1e-6  # incircle determinant, over its points' largest squared distance squared: a tie
MAX_FLIP_ROUNDS = 4  # rounds of independent edge flips tried before Qhull is asked
TRIED = 2  # held triangulations tried (nearest points first) before Qhull is asked
KEEP_PER_KEY = 4  # triangulations remembered per key
KEYS = 64  # keys remembered (oldest forgotten first)


def delaunay(nodes: np.ndarray) -> np.ndarray:
    """(n, 3) int32 vertex ids of the Delaunay triangulation (Qhull via matplotlib; duplicates
    must be removed by the caller), in canonical order (`canonical`)."""
    import matplotlib.tri as mtri

    tris = np.asarray(mtri.Triangulation(nodes[:, 0], nodes[:, 1]).triangles, np.int32)
    clockwise = signed_areas(nodes, tris) < 0
    return canonical(np.where(clockwise[:, None], tris[:, [0, 2, 1]], tris))


def canonical(tris: np.ndarray) -> np.ndarray:
    """Each (counter-clockwise) triangle rotated to start at its smallest vertex id, rows sorted:
    one array for one set of triangles, so a reused triangulation gives bit-identical output."""
    first = np.argmin(tris, axis=1)
    rows = np.arange(len(tris))[:, None]
    rolled = tris[rows, (first[:, None] + np.arange(3)[None, :]) % 3]
    order = np.lexsort((rolled[:, 2], rolled[:, 1], rolled[:, 0]))
    return np.ascontiguousarray(rolled[order])


def signed_areas(nodes: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = nodes[tris[:, 0]], nodes[tris[:, 1]], nodes[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def fits(nodes: np.ndarray, tris: np.ndarray, orientation: np.ndarray) -> bool:
    """Whether `tris` (found for other positions of the same points) still triangulates `nodes`:
    no triangle folded or collapsed, and together they cover the convex hull (their oriented
    areas sum to its area). Unfolded triangles of one orientation whose boundary is the hull
    tile the hull exactly."""
    import cv2

    ext = np.ptp(nodes, axis=0)
    areas = signed_areas(nodes, tris) * orientation
    if not np.all(areas > MIN_AREA * max(float(ext[0] * ext[1]), 1e-12)):
        return False
    hull = float(cv2.contourArea(cv2.convexHull(nodes.astype(np.float32))))
    return abs(float(areas.sum()) - hull) <= 1e-4 * hull + 1e-3


def _inner_edges(tris: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of (triangle * 3 + k) slots, k the vertex opposite the edge, that share an edge."""
    ends = np.stack([tris[:, [1, 2]], tris[:, [2, 0]], tris[:, [0, 1]]], 1).reshape(-1, 2).astype(np.int64)
    key = ends.min(1) * (n_nodes + 1) + ends.max(1)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    pair = np.flatnonzero(ks[1:] == ks[:-1])
    return order[pair], order[pair + 1]


def _not_delaunay(nodes: np.ndarray, ccw: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Per inner edge: the point across it is inside (or within a tie margin of) the
    circumcircle of the triangle on this side (`ccw`: triangles counter-clockwise)."""
    t1 = e1 // 3
    a, b, c = nodes[ccw[t1, 0]], nodes[ccw[t1, 1]], nodes[ccw[t1, 2]]
    d = nodes[ccw.reshape(-1)[e2]]
    ad, bd, cd = a - d, b - d, c - d
    det = (((ad ** 2).sum(1)) * (bd[:, 0] * cd[:, 1] - cd[:, 0] * bd[:, 1])
           - ((bd ** 2).sum(1)) * (ad[:, 0] * cd[:, 1] - cd[:, 0] * ad[:, 1])
           + ((cd ** 2).sum(1)) * (ad[:, 0] * bd[:, 1] - bd[:, 0] * ad[:, 1]))
    # scale-free: a ~1 px triangle and a ~100 px one alike
    r2 = np.maximum(np.maximum((ad ** 2).sum(1), (bd ** 2).sum(1)), (cd ** 2).sum(1))
    return det >= -INCIRCLE_MARGIN * r2 * r2


def _area2(xy: list, i: int, j: int, k: int) -> float:
    (ax, ay), (bx, by), (cx, cy) = xy[i], xy[j], xy[k]
    return (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)


def to_delaunay(nodes: np.ndarray, tris: np.ndarray, orientation: np.ndarray) -> Optional[np.ndarray]:
    """The Delaunay triangulation from a valid triangulation of the same points, by edge flips
    (Lawson); None when it does not settle within `MAX_FLIP_ROUNDS` or an edge is near a tie
    (four points on one circle: Qhull decides those). The result is checked, so it is the unique
    Delaunay triangulation and gives what Qhull gives."""
    ccw = np.where((orientation < 0)[:, None], tris[:, [0, 2, 1]], tris).astype(np.int32)
    n = len(nodes)
    for _ in range(MAX_FLIP_ROUNDS):
        e1, e2 = _inner_edges(ccw, n)
        bad = np.flatnonzero(_not_delaunay(nodes, ccw, e1, e2))
        if len(bad) == 0:
            return canonical(ccw)
        used = set()
        flat = ccw.reshape(-1)
        xy = nodes.tolist()
        for i in bad.tolist():  # independent flips this round: no triangle twice
            s1, s2 = int(e1[i]), int(e2[i])
            t1, t2 = s1 // 3, s2 // 3
            if t1 in used or t2 in used:
                continue
            p, q = int(flat[s1]), int(flat[s2])  # the vertices across the shared edge
            k = s1 % 3
            u, v = int(ccw[t1, (k + 1) % 3]), int(ccw[t1, (k + 2) % 3])  # t1 = (p, u, v) counter-clockwise
            new1, new2 = (p, u, q), (p, q, v)
            if min(_area2(xy, *new1), _area2(xy, *new2)) <= 0:
                return None  # not a convex quad: only a tie can get here
            ccw[t1], ccw[t2] = new1, new2
            used.update((t1, t2))
    return None


class Triangulations:
    """Triangulations of point sets that move a little from call to call, reused while they fit."""

    def __init__(self, keys: int = KEYS, per_key: int = KEEP_PER_KEY):
        self._held: OrderedDict = OrderedDict()  # key -> [(tris, orientation, the points they were for)]
        self.keys, self.per_key = keys, per_key
        self.reused = 0
        self.computed = 0
        self._lock = threading.Lock()  # the guard and a restore thread may warp at once

    def get(self, nodes: np.ndarray, key: Hashable) -> np.ndarray:
        """Triangles over `nodes` ((n, 2), no duplicates); `key` names which points these are
        (the same key must mean the same points in the same order)."""
        nodes = np.asarray(nodes, np.float64)
        with self._lock:
            return self._get(nodes, key)

    def _get(self, nodes: np.ndarray, key: Hashable) -> np.ndarray:
        held = self._held.setdefault((key, len(nodes)), [])
        self._held.move_to_end((key, len(nodes)))
        # the held points nearest to these first: the same face's last frame, not another face's
        near = sorted(range(len(held)), key=lambda i: float(np.mean((held[i][2] - nodes) ** 2)))
        for i in near[:TRIED]:
            tris, orient, _ = held[i]
            found = to_delaunay(nodes, tris, orient) if fits(nodes, tris, orient) else None
            if found is not None:
                held[i] = (found, np.ones(len(found)), nodes.copy())  # canonical triangles run counter-clockwise
                self.reused += 1
                return found
        tris = delaunay(nodes)
        self.computed += 1
        entry = (tris, np.ones(len(tris)), nodes.copy())
        if near and len(held) >= self.per_key:
            held[near[-1]] = entry  # the farthest goes
        else:
            held.append(entry)
        while len(self._held) > self.keys:
            self._held.popitem(last=False)
        return tris


def unique_rows(nodes: np.ndarray, decimals: int = 3) -> np.ndarray:
    """Indices of the first of each set of (rounded) equal rows, in their original order:
    duplicates break a triangulation, and the order must not change between frames."""
    _, first = np.unique(np.round(nodes, decimals), axis=0, return_index=True)
    return np.sort(first)


def locate_grid(nodes: np.ndarray, tris: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the grid points (gx[i], gy[j]) (gx, gy increasing), flattened row by row (y outer):
    the vertex ids of a triangle containing each ((n, 3); -1 rows: in none) and its barycentric
    weights (n, 3)."""
    nodes = np.asarray(nodes, np.float64)
    # flat triangles (collinear points on the hull) would give any point in them wild weights
    ar = signed_areas(nodes, tris)
    tris = tris[np.abs(ar) > 1e-9 * max(float(np.abs(ar).max(initial=0.0)), 1e-12)]
    a, b, c = nodes[tris[:, 0]], nodes[tris[:, 1]], nodes[tris[:, 2]]
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    ix0 = np.searchsorted(gx, lo[:, 0] - 1e-9, "left")
    ix1 = np.searchsorted(gx, hi[:, 0] + 1e-9, "right")
    iy0 = np.searchsorted(gy, lo[:, 1] - 1e-9, "left")
    iy1 = np.searchsorted(gy, hi[:, 1] + 1e-9, "right")
    nx = np.maximum(ix1 - ix0, 0)
    ny = np.maximum(iy1 - iy0, 0)
    counts = nx * ny
    total = int(counts.sum())
    n_grid = len(gx) * len(gy)
    vid = np.full((n_grid, 3), -1, np.int64)
    weights = np.zeros((n_grid, 3), np.float64)
    if total == 0:
        return vid, weights
    # every (triangle, grid point in its bounding box) pair, tested at once
    t = np.repeat(np.arange(len(tris)), counts)
    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    nx_t = nx[t]
    qx = ix0[t] + local % nx_t
    qy = iy0[t] + local // nx_t
    v0x, v0y = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    v1x, v1y = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    den = v0x * v1y - v1x * v0y
    v2x, v2y = gx[qx] - a[t, 0], gy[qy] - a[t, 1]
    wb = (v2x * v1y[t] - v1x[t] * v2y) / den[t]
    wc = (v0x[t] * v2y - v2x * v0y[t]) / den[t]
    wa = 1.0 - wb - wc
    tol = -1e-9
    inside = (wa >= tol) & (wb >= tol) & (wc >= tol)
    q = (qy * len(gx) + qx)[inside]
    vid[q] = tris[t[inside]]  # on a shared edge either triangle gives the same value
    weights[q] = np.stack([wa[inside], wb[inside], wc[inside]], 1)
    return vid, weights


def interpolate(values: np.ndarray, vid: np.ndarray, weights: np.ndarray,
                outside: Optional[np.ndarray] = None) -> np.ndarray:
    """Per grid point: the barycentric mix of the node `values` (n, d) over its triangle; points
    in no triangle take `outside` (one row per grid point) or zero."""
    out = np.zeros((len(vid), values.shape[1]), np.float64) if outside is None else np.array(outside, np.float64)
    hit = vid[:, 0] >= 0
    out[hit] = np.einsum("nk,nkd->nd", weights[hit], values[vid[hit]])
    return out
