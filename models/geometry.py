"""Plane and space geometry shared by the stages: box overlap, suppression, similarity fits, matching.

One copy of each; detectors, the tracker, the face bank and the evaluator all use these.
"""
from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4) with every box in `b` (M,4), x0 y0 x1 y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_iou(a, b) -> float:
    """IoU of two boxes x0 y0 x1 y1."""
    return float(iou_matrix(a, b)[0, 0])


def covered_by(box, others, share: float) -> bool:
    """At least `share` of `box`'s area lies inside one of the boxes `others` (x0 y0 x1 y1)."""
    box = np.asarray(box, np.float64)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-6)
    for other in others:
        o = np.asarray(other, np.float64)
        iw = min(box[2], o[2]) - max(box[0], o[0])
        ih = min(box[3], o[3]) - max(box[1], o[1])
        if iw > 0 and ih > 0 and iw * ih >= share * area:
            return True
    return False


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ov = iou_matrix(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ov < iou]
    return np.asarray(keep, dtype=np.int64)


SMALL_ASSIGNMENT = 32  # matchings up to this many rows and columns are solved here, not by scipy


def match(score: np.ndarray, min_score: float = -np.inf) -> list[tuple[int, int]]:
    """Hungarian assignment maximising `score` (rows × cols); pairs scoring below `min_score` are dropped.
    The tracker's small matrices are solved here (`_assign_small`): importing scipy.optimize costs a
    run ~0.3 s at its start; larger ones (the face bank's 468-point mirror) by scipy."""
    score = np.asarray(score, np.float64)
    if score.size == 0:
        return []
    if max(score.shape) <= SMALL_ASSIGNMENT:
        rows, cols = _assign_small(-score)
    else:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-score)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= min_score]


def _assign_small(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular matrix as scipy's linear_sum_assignment finds it:
    rows in order, each joined by the shortest augmenting path over the columns not yet reached
    (reduced costs under row and column potentials; D. F. Crouse, "On implementing 2D rectangular
    assignment algorithms", IEEE TAES 2016), ties broken as there: the first lowest column in the
    order of the columns left, an unassigned one preferred. Returns (rows ascending, their columns);
    tests/test_geometry.py compares it with scipy on ties too."""
    if cost.shape[0] > cost.shape[1]:
        cols, rows = _assign_small(cost.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    n, m = cost.shape
    u, v = np.zeros(n), np.zeros(m)
    col_of, row_of = np.full(n, -1), np.full(m, -1)
    path = np.full(m, -1)
    for row in range(n):
        dist = np.full(m, np.inf)
        rows_seen, cols_seen = np.zeros(n, bool), np.zeros(m, bool)
        left = list(range(m - 1, -1, -1))  # the columns not reached, in the order they are scanned
        low, i, sink = 0.0, row, -1
        while sink < 0:
            rows_seen[i] = True
            idx = np.asarray(left)
            reduced = low + cost[i, idx] - u[i] - v[idx]
            closer = reduced < dist[idx]
            path[idx[closer]] = i
            dist[idx[closer]] = reduced[closer]
            d = dist[idx]
            tied = np.flatnonzero(d == d.min())
            free = tied[row_of[idx[tied]] < 0]
            k = int(free[-1] if len(free) else tied[0])
            low, j = float(d[k]), int(idx[k])
            if row_of[j] < 0:
                sink = j
            else:
                i = row_of[j]
            cols_seen[j] = True
            left[k] = left[-1]
            left.pop()
        u[row] += low
        others = rows_seen.copy()
        others[row] = False
        u[others] += low - dist[col_of[others]]
        v[cols_seen] -= low - dist[cols_seen]
        j = sink
        while True:  # flip the path back to the row
            i = path[j]
            row_of[j] = i
            col_of[i], j = j, col_of[i]
            if i == row:
                break
    return np.arange(n), col_of


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """s, R, t minimising sum w |dst - (s R src + t)|^2 (Umeyama, no reflection), any dimension.

    Returns (scale, rotation d×d, translation d).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    dim = src.shape[1]
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    var = (w * (a**2).sum(1)).sum()
    if var < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(dim)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var)
    trans = mu_d - scale * rot @ mu_s
    return scale, rot, trans


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2-D similarity taking `src` points onto `dst` as a 2×3 matrix (for cv2.warpAffine)."""
    scale, rot, trans = similarity_fit(src, dst)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = trans
    return m
