"""The report check itself (tests/report_checks.py): it finds a leaked code or embedding, and a
report's own numbers do not trip it by chance."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from report_checks import _hits, assert_nothing_of_the_person

# the numbers a default run's report held (tests/test_default_path.py, seed 3): thresholds, margins,
# the guard's distances per track, timings; the kind that met 4 values of a dlib embedding there
REPORT = {
    "options": {"scale": 0.25},
    "privacy": {"tau": 0.6, "margin": 0.04, "edgeface_max": 0.214, "edgeface_margin": 0.06},
    "timing": {k: {"total_s": v} for k, v in zip("abcdefghi", (0.0165, 0.0976, 0.1452, 0.0315, 0.1636,
                                                               0.0834, 0.0079, 0.4447, 0.0086))},
    "tracks": [{"privacy": {"distance": d, "edgeface": e, "inversion": {"dlib": i, "edgeface": j},
                            "max_edgeface": m, "min_distance": n, "seconds": s}}
               for d, e, i, j, m, n, s in ((0.741, 0.206, 0.606, 0.163, 0.175, 0.671, 0.64),
                                           (0.776, 0.113, 0.622, 0.12, 0.166, 0.668, 0.142))],
}


def _embedding(rng, size: int) -> np.ndarray:
    v = rng.normal(0, 1, size)
    return v / np.linalg.norm(v)  # dlib's (128) and EdgeFace's (512) are unit length


def _report_with_chance_numbers(rng) -> dict:
    # more distances and timings of the size an embedding's values have, as a longer run writes them
    extra = {f"t{i}": round(float(x), 3) for i, x in enumerate(rng.uniform(0, 0.3, 30))}
    return {**REPORT, "timing_more": extra}


def test_a_reports_own_numbers_do_not_trip_it():
    rng = np.random.default_rng(0)
    old_failed = 0
    for run in range(400):
        emb = _embedding(rng, (128, 512)[run % 2])
        report = _report_with_chance_numbers(rng)
        assert_nothing_of_the_person(report, [emb])
        # the fixed allowance it had (a twentieth of the values) failed some of these runs
        values = [float(v) for v in emb if abs(v) > 0.05]
        numbers = {float(x) for x in re.findall(r"-?\d+\.\d+", json.dumps(report))}
        old_failed += _hits(values, numbers, 3) > max(2, len(values) // 20)
    assert old_failed > 0, "these reports do not test chance matches"


@pytest.mark.parametrize("digits", [3, 4, 6])
@pytest.mark.parametrize("kind", ["dlib", "edgeface", "id_code"])
def test_a_whole_leak_is_found(kind, digits):
    rng = np.random.default_rng(1)
    for _ in range(30):
        if kind == "id_code":  # the ID code: 40 values clipped to [-1, 1]
            vec = np.clip(rng.normal(0, 0.6, 40), -1, 1)
        else:
            vec = _embedding(rng, 128 if kind == "dlib" else 512)
        report = _report_with_chance_numbers(rng)
        leaked = {**report, "oops": {f"v{i}": round(float(v), digits) for i, v in enumerate(vec)}}
        with pytest.raises(AssertionError, match="values of an ID code or embedding"):
            assert_nothing_of_the_person(leaked, [vec])
