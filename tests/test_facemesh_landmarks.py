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


def test_faces_fitted_two_at_once_get_the_meshes_fitted_one_by_one():
    """`LandmarkStage.prefetch` runs every other face's FaceMesh on a second graph on its own thread:
    the meshes are the ones the stage fits alone, face by face and frame by frame."""
    from fractions import Fraction

    from clips import moving_faces
    from ideud.stream.detect import make_detector
    from ideud.stream.landmarks import LandmarkStage
    from ideud.stream.track import Tracker
    from ideud.stream.types import Frame

    detector = make_detector("centerface")
    mesh = fm.FaceMesh()
    stages = {}
    try:
        for parallel in (True, False):
            tracker = Tracker()
            stage = LandmarkStage(mesh, tracker)
            stage.parallel = parallel
            found = []
            for i, rgb in enumerate(moving_faces(6, 640, 360, size=110, faces=4)):
                frame = Frame(index=i, pts=i, time_base=Fraction(1, 25), time=i / 25, pix_fmt="rgb", full_range=True,
                              planes=[np.ascontiguousarray(rgb[..., c]) for c in range(3)])
                pairs = tracker.update(detector.detect(rgb), i)
                stage.prefetch(frame, pairs)
                found.append([(track.id, stage.fit(frame, track, face)) for track, face in pairs])
            stages[parallel] = (stage, found)
    finally:
        mesh.close()
    (two, two_found), (one, one_found) = stages[True], stages[False]
    assert one.prefetched == 0 and two.prefetched >= 6  # faces 2 and 4 of each frame, but held ones
    assert sum(lm is not None for frame in one_found for _, lm in frame) >= 20
    for a, b in zip(two_found, one_found):
        assert [t for t, _ in a] == [t for t, _ in b]
        for (_, la), (_, lb) in zip(a, b):
            assert (la is None and lb is None) or np.array_equal(la, lb)
