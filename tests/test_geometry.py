"""The small assignments the tracker solves itself (models/geometry.py `_assign_small`) are scipy's,
ties included, so that tracks pair with detections exactly as before it stopped importing scipy."""
import subprocess
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

from ideud.models.geometry import SMALL_ASSIGNMENT, _assign_small, match


def _same(cost):
    rows, cols = linear_sum_assignment(cost)
    ours = _assign_small(cost)
    return np.array_equal(rows, ours[0]) and np.array_equal(cols, ours[1])


def test_small_assignments_are_scipys_on_continuous_costs():
    rng = np.random.default_rng(0)
    for _ in range(1500):
        n, m = rng.integers(1, 14, 2)
        assert _same(rng.normal(size=(n, m)))


def test_small_assignments_are_scipys_on_ties():
    """IoU matrices are mostly zeros: many optima. The one picked is scipy's."""
    rng = np.random.default_rng(1)
    for _ in range(3000):
        n, m = rng.integers(1, 9, 2)
        score = np.round(rng.random((n, m)) * (rng.random((n, m)) < 0.4), 1)
        assert _same(-score)
    assert _same(np.zeros((5, 3))) and _same(np.ones((3, 5)))


def test_match_keeps_scipy_for_large_matrices_and_drops_low_pairs():
    rng = np.random.default_rng(2)
    big = rng.random((SMALL_ASSIGNMENT + 3, SMALL_ASSIGNMENT + 1))
    rows, cols = linear_sum_assignment(-big)
    assert match(big) == list(zip(rows.tolist(), cols.tolist()))
    assert match(np.array([[0.9, 0.1], [0.1, 0.15]]), min_score=0.2) == [(0, 0)]
    assert match(np.zeros((0, 3))) == []


def test_tracking_does_not_import_scipy():
    """What it is for: a run's start without scipy.optimize's import (~0.3 s)."""
    code = ("import sys, numpy as np; from ideud.stream.track import Tracker; from ideud.stream.types import Face\n"
            "t = Tracker(seed_rng=np.random.default_rng(0))\n"
            "for i in range(3): t.update([Face(box=np.array([10. + i, 10, 70, 80]), score=0.9),"
            " Face(box=np.array([100., 10, 160, 80]), score=0.9)], i)\n"
            "print(sorted(m for m in sys.modules if m.startswith('scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
