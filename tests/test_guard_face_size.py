"""The measurement behind EdgeFace thresholds by face size (tools/build/calibrate_edgeface_sizes.py):
it must shrink a face to the size the guard would measure, and its threshold rule must be monotone.
(The guard does not use such thresholds: that script's docstring says why.)"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from portrait_faces import PORTRAITS, build_portrait_faces
from ideud.models import facemesh as fm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "build"))
from calibrate_edgeface_sizes import face_size, shrink, thresholds_by_size  # noqa: E402

needs_portraits = pytest.mark.skipif(PORTRAITS is None, reason="public-domain portraits not found")


@needs_portraits
@pytest.mark.parametrize("w", [20, 32, 64])
def test_a_face_shrunk_to_w_px_is_w_px_for_the_guard_too(w):
    rgb, lm = build_portrait_faces(1)[0]
    small, pts = shrink(rgb, lm, w)
    assert abs(face_size(pts) - w) <= 1.0  # the scaled points
    assert small.shape[0] < 4 * w and small.shape[1] < 4 * w
    mesh = fm.FaceMesh()
    try:  # FaceMesh on the small image finds the face where the scaled points say, about as big
        found = mesh(small, fm.roi_from_landmarks(np.c_[pts, np.zeros(len(pts))]))
    finally:
        mesh.close()
    assert found is not None
    assert abs(face_size(found[:, :2]) - w) <= 0.25 * w
    assert np.median(np.linalg.norm(found[:, :2] - pts, axis=1)) <= 0.1 * w


def test_the_rule_is_monotone_from_the_small_end_and_never_under_full():
    meas = {str(w): {"edgeface": {"impostor": {"p99": p99, "p95": p99 - 0.05}}}
            for w, p99 in ((16, 0.30), (24, 0.25), (32, 0.27), (48, 0.20))}
    by = thresholds_by_size(meas, (16, 24, 32, 48), {"balanced": 0.214, "strict": 0.15})
    assert [by[w]["balanced"] for w in ("16", "24", "32", "48")] == [0.30, 0.25, 0.25, 0.214]
    assert [by[w]["strict"] for w in ("16", "24", "32", "48")] == [0.25, 0.20, 0.20, 0.15]
