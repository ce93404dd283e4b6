"""FaceMesh's landmark list read from its wire bytes (models/facemesh.landmarks_array): the same
values as reading it field by field, and the field-by-field way whenever the bytes are not the
plain x, y, z layout."""
from __future__ import annotations

import numpy as np
import pytest

from ideud.models import facemesh as fm

landmark_pb2 = pytest.importorskip("mediapipe.framework.formats.landmark_pb2")


def field_by_field(lms) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float64)


def test_wire_bytes_give_the_fields_values():
    rng = np.random.default_rng(0)
    lms = landmark_pb2.NormalizedLandmarkList()
    values = rng.normal(0, 2, (478, 3)).astype(np.float32)
    values[0] = (0.0, -0.0, 1e-30)  # zeros are still written for set fields
    values[1, 0] = np.nan
    for x, y, z in values:
        lms.landmark.add(x=float(x), y=float(y), z=float(z))
    got = fm.landmarks_array(lms)
    assert got.dtype == np.float64 and got.shape == (478, 3)
    np.testing.assert_array_equal(got, field_by_field(lms))  # NaN == NaN here
    assert np.signbit(got[0, 1])


@pytest.mark.parametrize("extra", ["visibility", "missing_z"])
def test_other_layouts_are_read_field_by_field(extra):
    lms = landmark_pb2.NormalizedLandmarkList()
    for i in range(5):
        p = lms.landmark.add(x=0.1 * i, y=0.2, z=-0.3)
        if extra == "visibility":
            p.visibility = 0.9
        elif i == 2:
            p.ClearField("z")  # z reads as 0.0
    np.testing.assert_array_equal(fm.landmarks_array(lms), field_by_field(lms))


def test_an_empty_list():
    assert fm.landmarks_array(landmark_pb2.NormalizedLandmarkList()).shape[0] == 0
