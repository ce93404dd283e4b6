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


def match(score: np.ndarray, min_score: float = -np.inf) -> list[tuple[int, int]]:
    """Hungarian assignment maximising `score` (rows × cols); pairs scoring below `min_score` are dropped."""
    from scipy.optimize import linear_sum_assignment

    score = np.asarray(score, np.float64)
    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(-score)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= min_score]


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
