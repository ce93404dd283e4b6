"""Small numeric helpers of the report: rounding for JSON, means over optional values, embedding distances."""
from __future__ import annotations

import math

import numpy as np


def rounded(v, nd: int = 4):
    """A float for the JSON report: rounded, None for None/NaN/inf."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    return round(v, nd)


def short(v):
    """Three significant digits for a log line."""
    return "n/a" if v is None else f"{v:.3g}"


def mean_or_none(vals):
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def median_or_none(vals):
    v = [x for x in vals if x is not None]
    return float(np.median(v)) if v else None


def evenly_spaced(n: int, k: int) -> list:
    """At most k indices spread evenly over range(n), first and last included."""
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d, 0.0))


def pairwise_distances(e: np.ndarray) -> np.ndarray:
    """Distances of every pair (i < j) of rows."""
    n = len(e)
    d = cdist(e, e)
    return d[np.triu_indices(n, 1)]


def mean_pairwise_distance(e: np.ndarray) -> float:
    p = pairwise_distances(e)
    return float(p.mean()) if p.size else 0.0
