import pytest
import numpy as np

from ideud.stream.track import Tracker
from ideud.stream.types import Face


def face_at(x, y, s=60):
    return Face(box=np.array([x, y, x + s, y + s], float), score=0.9)


def test_track_survives_detector_misses_at_predicted_place():
    tr = Tracker(max_misses=5, seed_rng=np.random.default_rng(0))
    ids = []
    for i in range(20):
        x = 100 + 4 * i  # steady motion
        faces = [] if i in (10, 11, 12) else [face_at(x, 50)]
        out = tr.update(faces, i)
        assert len(out) == 1, f"frame {i}: the face must stay tracked"
        track, det = out[0]
        ids.append(track.id)
        if det is None:  # predicted box follows the motion
            assert abs(track.box[0] - x) < 6
    assert set(ids) == {1}


def test_track_ends_after_max_misses_and_new_face_gets_new_id_and_seed():
    tr = Tracker(max_misses=2, seed_rng=np.random.default_rng(0))
    first = tr.update([face_at(10, 10)], 0)[0][0]
    for i in range(1, 4):
        tr.update([], i)
    assert not tr.tracks and tr.finished[0].id == first.id
    second = tr.update([face_at(10, 10)], 4)[0][0]
    assert second.id != first.id and second.seed != first.seed


def test_two_faces_keep_their_ids_side_by_side():
    tr = Tracker(seed_rng=np.random.default_rng(0))
    seen = {}
    for i in range(15):
        out = tr.update([face_at(50 + 2 * i, 40), face_at(300 - 2 * i, 40)], i)
        for track, det in out:
            seen.setdefault(track.id, []).append(det.box[0])
    assert len(seen) == 2
    a, b = seen.values()
    assert np.all(np.diff(a) > 0) and np.all(np.diff(b) < 0)  # no swaps


def test_seeds_reproducible_from_run_seed():
    a = Tracker(seed_rng=np.random.default_rng(42)).update([face_at(0, 0)], 0)[0][0].seed
    b = Tracker(seed_rng=np.random.default_rng(42)).update([face_at(0, 0)], 0)[0][0].seed
    assert a == b


def test_reset_at_a_cut_ends_every_track_and_keeps_no_predicted_box():
    tr = Tracker(max_misses=12, seed_rng=np.random.default_rng(0))
    for i in range(5):
        tr.update([face_at(10 + 3 * i, 10), face_at(200, 40)], i)
    ended = {t.id for t in tr.tracks.values()}
    tr.reset()  # what the processor does at a scene cut
    assert {t.id for t in tr.finished} == ended and not tr.tracks
    out = tr.update([face_at(400, 100)], 5)  # the new shot: only its own face, on a new track
    assert len(out) == 1 and out[0][0].id not in ended and out[0][1] is not None


def test_box_filter_is_filterpys_kalman_filter_bit_for_bit():
    """The box filter is written here (filterpy's package imports scipy.stats, ~0.5 s of every
    run's start); it must give filterpy's KalmanFilter's numbers exactly, set up as SORT sets it."""
    kalman = pytest.importorskip("filterpy.kalman")
    from ideud.stream.track import _box_to_z, _BoxFilter

    rng = np.random.default_rng(3)
    for run in range(20):
        box = np.array([100.0, 80.0, 160.0, 150.0]) + rng.normal(0, 20, 4)
        ours = _BoxFilter(box)
        ref = kalman.KalmanFilter(dim_x=7, dim_z=4)
        ref.F = np.eye(7)
        ref.F[0, 4] = ref.F[1, 5] = ref.F[2, 6] = 1
        ref.H = np.zeros((4, 7))
        ref.H[:4, :4] = np.eye(4)
        ref.R[2:, 2:] *= 10.0
        ref.P[4:, 4:] *= 1000.0
        ref.P *= 10.0
        ref.Q[-1, -1] *= 0.01
        ref.Q[4:, 4:] *= 0.01
        ref.x[:4] = _box_to_z(box)  # as the tracker fed filterpy before
        for step in range(60):
            # a box that shrinks fast at times (the area's rate clamped at zero area) and misses
            if ref.x[6] + ref.x[2] <= 0:
                ref.x[6] = 0
            ref.predict()
            ours.predict()
            if rng.random() < 0.7:
                box = box + rng.normal(0, 3, 4) + np.array([2.0, 1.0, 2.0 - 4 * (step % 17 == 0), 1.0])
                box[2:] = np.maximum(box[2:], box[:2] + 2)
                ref.update(_box_to_z(box))
                ours.update(box)
            assert np.array_equal(ours.x, ref.x), (run, step)
            assert np.array_equal(ours.P, ref.P), (run, step)


def test_the_pipeline_does_not_import_scipy_stats():
    """What the box filter was rewritten for: no run pays scipy.stats' import (~0.5 s) at its start."""
    import subprocess
    import sys

    code = "import sys, ideud.stream.live, ideud.tools.cli; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
