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
