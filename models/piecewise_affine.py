"""Piecewise-affine maps over a triangulated point set, fast enough to run per face and frame.

Two costs dominated the per-face warps (render, occlusion reference, restorer canvas): a Delaunay
triangulation of ~500 points and the point location of the grid in it. Both are cut here:

- `triangulate` runs OpenCV's incremental Delaunay (cv2.Subdiv2D, ~0.3 ms for a face mesh) and
  checks what it returns; Qhull (~1-2 ms) runs only when the check fails. Subdiv2D starts from a
  big triangle of virtual vertices around the points and leaves out a triangle along the convex
  hull whose circumcircle reaches one of them; put far enough away, that happens only to nearly
  flat hull triangles: what comes back is Qhull's triangulation, in the same canonical order,
  at most less such slivers (on bench_warp's 1,849 warps: one, of three ring points, once; the
  maps were all the same bit for bit). Callers put fixed anchors on the hull. A sliver left out
  (the restorer's mesh, whose ring can pass within a thousandth of a px of a crop edge: 5 of 600
  faces on the 4-face bench clip) is put back (`_with_hull_slivers`): Qhull's triangles again,
  without Qhull, whose first call imported matplotlib (~0.3 s of a restore process's run).
  The result depends only on the points given, never on what was triangulated before: a track's
  output is the same whichever process, or how many, warps it (no triangulation is kept).
- Point location is a vectorised rasteriser: each triangle tests the grid points inside its
  bounding box (barycentric coordinates), so no search structure is built per frame.

Points outside every triangle get index -1 (the caller decides: zero offset, or a similarity).
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

# Subdiv2D's virtual vertices lie ~3 of its rectangle's sides out: the rectangle is the points'
# box grown by this many box sizes each way. At 0 (the box) the thin triangles between the crop
# corners and the ring were missing on 9 warps in 10 of the bench clip, at 1000 none
SUBDIV_MARGIN = 1000
# hull slivers Subdiv2D may still leave out, as a share of the hull's area, at most; more missing
# means something else went wrong, and Qhull decides
MAX_SLIVERS = 1e-6


def delaunay(nodes: np.ndarray) -> np.ndarray:
    """(n, 3) int32 vertex ids of the Delaunay triangulation (Qhull via matplotlib; duplicates
    must be removed by the caller), in canonical order (`canonical`)."""
    import matplotlib.tri as mtri

    tris = np.asarray(mtri.Triangulation(nodes[:, 0], nodes[:, 1]).triangles, np.int32)
    clockwise = signed_areas(nodes, tris) < 0
    return canonical(np.where(clockwise[:, None], tris[:, [0, 2, 1]], tris))


def triangulate(nodes: np.ndarray) -> np.ndarray:
    """(n, 3) int32 counter-clockwise vertex ids, in canonical order: the Delaunay triangulation,
    less thin triangles along the convex hull (module docstring). Duplicates must be removed by
    the caller (`unique_rows`)."""
    nodes = np.asarray(nodes, np.float64)
    found = subdiv_triangles(nodes)
    return found if found is not None else delaunay(nodes)


def subdiv_triangles(nodes: np.ndarray) -> Optional[np.ndarray]:
    """`triangulate` by cv2.Subdiv2D; None when what it gives is not a valid triangulation of
    every point: a point lost (two equal in float32), a triangle folded or flat, triangles that
    overlap (their areas add up to more than the hull), or more than `MAX_SLIVERS` missing."""
    nodes = np.asarray(nodes, np.float64)
    p32 = np.ascontiguousarray(nodes, np.float32)
    if len(p32) < 3:
        return None
    (lx, ly), (hx, hy) = p32.min(0).tolist(), p32.max(0).tolist()  # Python floats: a few us, not tens
    if not all(map(math.isfinite, (lx, ly, hx, hy))):
        return None
    grow = SUBDIV_MARGIN * (max(hx - lx, hy - ly) + 1.0)
    x0, y0 = math.floor(lx - 1 - grow), math.floor(ly - 1 - grow)
    try:
        sub = cv2.Subdiv2D((x0, y0, math.ceil(hx + 2 + grow) - x0, math.ceil(hy + 2 + grow) - y0))
        sub.insert(p32)
        corners = np.ascontiguousarray(sub.getTriangleList(), np.float32)
    except (cv2.error, OverflowError):  # (a rectangle past int32: points millions of px apart)
        return None
    if corners.size == 0:
        return None
    # the triangles come as coordinates: back to vertex ids by exact lookup of the float32 bits
    # (a point's two float32 as one int64)
    keys = p32.view(np.int64).ravel()
    order = np.argsort(keys)
    sorted_keys = keys[order]
    found = corners.view(np.int64).ravel()
    pos = np.minimum(np.searchsorted(sorted_keys, found), len(keys) - 1)
    if not np.array_equal(sorted_keys[pos], found) or np.any(sorted_keys[1:] == sorted_keys[:-1]):
        return None
    tris = order[pos].reshape(-1, 3)
    areas = signed_areas(nodes, tris)
    if areas[0] < 0:  # one orientation for all (the quad-edge structure's); image y points down
        tris, areas = tris[:, ::-1], -areas
    if not (areas > 0).all():
        return None
    hull_ids = cv2.convexHull(p32, returnPoints=False)[:, 0]
    hull = float(cv2.contourArea(p32[hull_ids]))
    if not _covers_hull(tris, areas, hull, len(nodes)):
        if float(areas.sum()) > hull * (1 + 1e-6) + 1e-6:  # overlapping triangles: nothing to put back
            return None
        tris = _with_hull_slivers(nodes, tris, hull_ids)
        if tris is None:
            return None
        areas = signed_areas(nodes, tris)
        if not (areas > 0).all() or not _covers_hull(tris, areas, hull, len(nodes)):
            return None
    return canonical(tris)


def _covers_hull(tris: np.ndarray, areas: np.ndarray, hull: float, n: int) -> bool:
    """Every point in a triangle, and the triangles' areas add up to the hull's (no overlap, at most
    `MAX_SLIVERS` of it missing)."""
    total = float(areas.sum())
    return (hull * (1 - MAX_SLIVERS) <= total <= hull * (1 + 1e-6) + 1e-6
            and np.bincount(tris.ravel(), minlength=n).min() > 0)


def _with_hull_slivers(nodes: np.ndarray, tris: np.ndarray, hull_ids: np.ndarray) -> Optional[np.ndarray]:
    """`tris` with the thin hull triangles Subdiv2D left out put back: each hull edge in no triangle
    gets the one triangle it can have, with the one vertex w joined to both its ends whose triangle
    holds no other point (a point nearly on that edge, or the hull vertex next to it whose chord is
    in a triangle); Qhull has the same one (that triangle is Delaunay: its circle reaches out of the
    hull only). None where an edge has no such triangle or more than one (Qhull decides)."""
    n = len(nodes)
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    nbrs = [set() for _ in range(n)]
    for u, v in edges.tolist():
        nbrs[u].add(v)
        nbrs[v].add(u)
    h = [int(v) for v in hull_ids]
    added = []
    for i in range(len(h)):
        u, v = h[i - 1], h[i]
        if v in nbrs[u]:
            continue
        # w joined to both ends (a point nearly on the edge), or the next hull vertex on either side
        # whose chord to the far end is an edge (both hull edges at the middle vertex are missing)
        cands = (nbrs[u] & nbrs[v]) | {w for w, far in ((h[(i + 1) % len(h)], u), (h[i - 2], v)) if w in nbrs[far]}
        found = [w for w in cands if w not in (u, v) and _empty(nodes, u, v, w)]
        if len(found) != 1:
            return None
        added.append((u, v, found[0]))
    if not added:
        return None
    new = np.unique(np.sort(np.array(added, np.int64), axis=1), axis=0)
    flip = signed_areas(nodes, new) < 0  # the others' orientation (counter-clockwise: positive area)
    new[flip] = new[flip][:, ::-1]
    return np.vstack([tris, new])


def _empty(nodes: np.ndarray, u: int, v: int, w: int) -> bool:
    """No other node strictly inside triangle (u, v, w), and it is not flat."""
    a, b, c = nodes[u], nodes[v], nodes[w]
    den = (b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])
    if abs(den) < 1e-12:
        return False
    p = nodes - a
    wb = (p[:, 0] * (c[1] - a[1]) - (c[0] - a[0]) * p[:, 1]) / den
    wc = ((b[0] - a[0]) * p[:, 1] - p[:, 0] * (b[1] - a[1])) / den
    inside = (wb > 1e-12) & (wc > 1e-12) & (wb + wc < 1 - 1e-12)
    inside[[u, v, w]] = False
    return not inside.any()


def canonical(tris: np.ndarray) -> np.ndarray:
    """Each (counter-clockwise) triangle rotated to start at its smallest vertex id, rows sorted:
    one array for one set of triangles, whichever way it was found."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    a_first = (a < b) & (a < c)
    b_first = ~a_first & (b < c)
    rolled = np.empty((len(tris), 3), np.int64)  # by np.where: a third of a gather's cost
    rolled[:, 0] = np.where(a_first, a, np.where(b_first, b, c))
    rolled[:, 1] = np.where(a_first, b, np.where(b_first, c, a))
    rolled[:, 2] = np.where(a_first, c, np.where(b_first, a, b))
    # rows by (first, second, third) vertex: one int64 key per row sorts like np.lexsort, at half the cost
    n = int(rolled.max(initial=0)) + 1
    order = np.argsort((rolled[:, 0] * n + rolled[:, 1]) * n + rolled[:, 2], kind="stable")
    return rolled[order].astype(np.int32)


def signed_areas(nodes: np.ndarray, tris: np.ndarray) -> np.ndarray:
    x, y = nodes[:, 0], nodes[:, 1]  # by column: the same arithmetic, fewer (n, 2) gathers
    i, j, k = tris[:, 0], tris[:, 1], tris[:, 2]
    ax, ay = x[i], y[i]
    return 0.5 * ((x[j] - ax) * (y[k] - ay) - (x[k] - ax) * (y[j] - ay))


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
    starts = np.cumsum(counts) - counts
    local = np.arange(total) - starts[t]
    nx_t = nx[t]
    qy_l, qx_l = np.divmod(local, nx_t)
    qx = ix0[t] + qx_l
    qy = iy0[t] + qy_l
    ax, ay = a[:, 0], a[:, 1]
    v0x, v0y = b[:, 0] - ax, b[:, 1] - ay
    v1x, v1y = c[:, 0] - ax, c[:, 1] - ay
    den = v0x * v1y - v1x * v0y
    v2x, v2y = gx[qx] - ax[t], gy[qy] - ay[t]
    den_t = den[t]
    wb = (v2x * v1y[t] - v1x[t] * v2y) / den_t
    wc = (v0x[t] * v2y - v2x * v0y[t]) / den_t
    wa = 1.0 - wb - wc
    tol = -1e-9
    inside = np.flatnonzero((wa >= tol) & (wb >= tol) & (wc >= tol))
    q = qy[inside] * len(gx) + qx[inside]
    vid[q] = tris[t[inside]]  # on a shared edge either triangle gives the same value
    weights[q, 0] = wa[inside]
    weights[q, 1] = wb[inside]
    weights[q, 2] = wc[inside]
    return vid, weights


def interpolate(values: np.ndarray, vid: np.ndarray, weights: np.ndarray,
                outside: Optional[np.ndarray] = None) -> np.ndarray:
    """Per grid point: the barycentric mix of the node `values` (n, d) over its triangle; points
    in no triangle take `outside` (one row per grid point) or zero."""
    out = np.zeros((len(vid), values.shape[1]), np.float64) if outside is None else np.array(outside, np.float64)
    hit = vid[:, 0] >= 0
    out[hit] = np.einsum("nk,nkd->nd", weights[hit], values[vid[hit]])
    return out
