"""Piecewise-affine maps over a triangulated point set, fast enough to run per face and frame.

Two costs dominated the per-face warps (render, occluder reference, restorer canvas): a Delaunay
triangulation of ~500 points (Qhull, ~2.7 ms) and the point location of the grid in it
(matplotlib's trapezoid map, ~7 ms). Both are cut here:

- Topology is reused. A face mesh moves smoothly, so the Delaunay triangulation of the last
  frame is still a triangulation of this frame's points as long as no triangle folds, and a few
  edge flips (Lawson) make it this frame's Delaunay triangulation again. `Triangulations` keeps
  the last few per key (which points take part) and tries them first; Qhull runs only when none
  fits, near a tie (four points nearly on one circle), or when the held boundary is no longer the
  convex hull (a point that joined the hull adds a sliver). The result is always the Delaunay
  triangulation, in one canonical order, so the output does not depend on what was warped before.
  After a round of flips only the edges next to them are tested again; a held triangulation that
  needed no flip is handed out as it is (read-only), with its edges kept.
- Point location is a vectorised rasteriser: each triangle tests the grid points inside its
  bounding box (barycentric coordinates), so no search structure is built per frame.

Points outside every triangle get index -1 (the caller decides: zero offset, or a similarity).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable, Optional

import numpy as np

# share of the nodes' bounding-box area: a thinner triangle counts as folded. Far above float64
# rounding (~1e-15 of it) and far below FaceMesh's own slivers: at the restorer's working size
# the closed lips' triangles are 0.002-0.03 px^2, 1e-7..1e-6 of the box, and at 1e-6 a held
# triangulation was turned down on 4 frames in 5 for them (Qhull instead; the same triangles)
MIN_AREA = 1e-10
INCIRCLE_MARGIN = 1e-6  # incircle determinant, over its points' largest squared distance squared: a tie
MAX_FLIP_ROUNDS = 4  # rounds of independent edge flips tried before Qhull is asked
TRIED = 2  # held triangulations tried (nearest points first) before Qhull is asked
HULL_TURN = 1e-6  # sine of the least turn at a hull vertex for a held triangulation to be taken
GIVE_UP = 8  # calls in a row without a fit after which a key's held triangulations are tried ...
RETRY_EVERY = 4  # ... only every this many calls
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
    # rows by (first, second, third) vertex: one int64 key per row sorts like np.lexsort, at half the cost
    r = rolled.astype(np.int64)
    n = int(r.max(initial=0)) + 1
    order = np.argsort((r[:, 0] * n + r[:, 1]) * n + r[:, 2], kind="stable")
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
    x, y = nodes[:, 0], nodes[:, 1]  # by column: the same arithmetic as on (n, 2) rows, fewer temporaries
    ia, ib, ic, idd = ccw[t1, 0], ccw[t1, 1], ccw[t1, 2], ccw.reshape(-1)[e2]
    dx, dy = x[idd], y[idd]
    adx, ady = x[ia] - dx, y[ia] - dy
    bdx, bdy = x[ib] - dx, y[ib] - dy
    cdx, cdy = x[ic] - dx, y[ic] - dy
    a2, b2, c2 = adx * adx + ady * ady, bdx * bdx + bdy * bdy, cdx * cdx + cdy * cdy
    det = (a2 * (bdx * cdy - cdx * bdy)
           - b2 * (adx * cdy - cdx * ady)
           + c2 * (adx * bdy - bdx * ady))
    # scale-free: a ~1 px triangle and a ~100 px one alike
    r2 = np.maximum(np.maximum(a2, b2), c2)
    return det >= -INCIRCLE_MARGIN * r2 * r2


def hull_loop(tris: np.ndarray, edges: tuple) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The boundary of a counter-clockwise triangulation as (u, v, w) vertex ids: each boundary
    edge u -> v and the boundary vertex w after v; None when the boundary is not one simple loop.
    Edge flips leave it as it is, so it is found once per held triangulation."""
    e1, e2 = edges
    inner = np.zeros(3 * len(tris), bool)
    inner[e1] = True
    inner[e2] = True
    slots = np.flatnonzero(~inner)
    t, k = slots // 3, slots % 3
    u, v = tris[t, (k + 1) % 3].astype(np.int64), tris[t, (k + 2) % 3].astype(np.int64)
    n = int(tris.max()) + 1
    nxt = np.full(n, -1, np.int64)
    nxt[u] = v
    if len(np.unique(u)) != len(u) or np.any(nxt[v] < 0):
        return None
    return u, v, nxt[v]


def convex_hull_loop(nodes: np.ndarray, loop) -> bool:
    """Whether the boundary loop turns left at every vertex, none near straight: then it is the
    convex hull of the points (`fits` allows the hull's area a tolerance that a sliver missing
    at the hull, where a point joined it, can hide in; Qhull has that sliver)."""
    if loop is None:
        return False
    u, v, w = loop
    d1, d2 = nodes[v] - nodes[u], nodes[w] - nodes[v]
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return bool(np.all(cross > HULL_TURN * np.hypot(d1[:, 0], d1[:, 1]) * np.hypot(d2[:, 0], d2[:, 1])))


def _area2(xy: list, i: int, j: int, k: int) -> float:
    (ax, ay), (bx, by), (cx, cy) = xy[i], xy[j], xy[k]
    return (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)


def to_delaunay(nodes: np.ndarray, tris: np.ndarray, orientation: np.ndarray) -> Optional[np.ndarray]:
    """The Delaunay triangulation from a valid triangulation of the same points, by edge flips
    (Lawson); None when it does not settle within `MAX_FLIP_ROUNDS` or an edge is near a tie
    (four points on one circle: Qhull decides those). The result is checked, so it is the unique
    Delaunay triangulation and gives what Qhull gives."""
    return _flipped_to_delaunay(nodes, tris, orientation)[0]


def _flipped_to_delaunay(nodes: np.ndarray, tris: np.ndarray, orientation: np.ndarray, is_canonical: bool = False,
                         edges: Optional[tuple] = None) -> tuple[Optional[np.ndarray], Optional[tuple]]:
    """`to_delaunay`, and the inner edges of what it returns when no flip was needed.
    `is_canonical`: `tris` is in canonical order, counter-clockwise (then, without a flip, it is
    returned itself); `edges`: `_inner_edges(tris)`, when known."""
    ccw = np.where((orientation < 0)[:, None], tris[:, [0, 2, 1]], tris).astype(np.int32)
    n = len(nodes)
    used: set = set()
    for round_ in range(MAX_FLIP_ROUNDS):
        e1, e2 = edges if (round_ == 0 and edges is not None) else _inner_edges(ccw, n)
        if round_ == 0:
            bad = np.flatnonzero(_not_delaunay(nodes, ccw, e1, e2))
        else:
            # only edges of a triangle flipped last round can have changed: every other edge was
            # tested then and passed (a bad edge left for this round has a flipped triangle)
            changed = np.zeros(len(ccw), bool)
            changed[list(used)] = True
            near = np.flatnonzero(changed[e1 // 3] | changed[e2 // 3])
            bad = near[_not_delaunay(nodes, ccw, e1[near], e2[near])]
        if len(bad) == 0:
            if round_ == 0 and is_canonical:
                return tris, (e1, e2)
            return canonical(ccw), None
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
                return None, None  # not a convex quad: only a tie can get here
            ccw[t1], ccw[t2] = new1, new2
            used.update((t1, t2))
    return None, None


class Triangulations:
    """Triangulations of point sets that move a little from call to call, reused while they fit."""

    def __init__(self, keys: int = KEYS, per_key: int = KEEP_PER_KEY):
        # key -> [[tris, orientation, the points they were for, inner edges, boundary loop]]
        self._held: OrderedDict = OrderedDict()
        self.keys, self.per_key = keys, per_key
        self.reused = 0
        self.computed = 0
        self._misses: dict = {}  # key -> calls in a row where no held triangulation fitted
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
        misses = self._misses.get(key, 0)
        # a key whose meshes have not fitted for a while (faces that move a lot, or several faces
        # under one key) is tried only now and then: trying costs ~0.3 ms, and Qhull gives the same
        tries = near[:TRIED] if misses < GIVE_UP or misses % RETRY_EVERY == 0 else []
        for i in tries:
            tris, orient, _, edges, loop = held[i]
            found, found_edges = None, None
            if fits(nodes, tris, orient):
                if loop is None:  # canonical triangles run counter-clockwise
                    edges = edges if edges is not None else _inner_edges(tris, len(nodes))
                    loop = held[i][4] = hull_loop(tris, edges)
                if convex_hull_loop(nodes, loop):
                    found, found_edges = _flipped_to_delaunay(nodes, tris, orient, is_canonical=True, edges=edges)
            if found is not None:
                # unflipped, the edges are known; flips leave the boundary loop as it is
                found.flags.writeable = False  # held and handed out again: nobody may change it
                held[i] = [found, np.ones(len(found)), nodes.copy(), found_edges, loop]
                self.reused += 1
                self._misses.pop(key, None)
                return found
        tris = delaunay(nodes)
        self.computed += 1
        self._misses[key] = misses + 1
        tris.flags.writeable = False
        entry = [tris, np.ones(len(tris)), nodes.copy(), None, None]
        if near and len(held) >= self.per_key:
            held[near[-1]] = entry  # the farthest goes
        else:
            held.append(entry)
        while len(self._held) > self.keys:
            old_key, _ = self._held.popitem(last=False)
            self._misses.pop(old_key[0], None)
        return tris


def unique_rows(nodes: np.ndarray, decimals: int = 3) -> np.ndarray:
    """Indices of the first of each set of (rounded) equal rows, in their original order:
    duplicates break a triangulation, and the order must not change between frames."""
    r = np.round(nodes, decimals)
    # nearly always no two rows are equal: a lexsort tells that at a third of np.unique's cost
    order = np.lexsort(r.T[::-1])
    s = r[order]
    if not np.any(np.all(s[1:] == s[:-1], axis=1)):
        return np.arange(len(nodes))
    _, first = np.unique(r, axis=0, return_index=True)
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
