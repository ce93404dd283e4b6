"""The mesh head: explainable identity basis, perturbation and re-posing."""
import numpy as np
import pytest

from ideud.models import facemesh as fm
from ideud.models import meshhead as mh
from ideud.models import face_shape as fsh
from ideud.stream.identity import _lip_points, CANDIDATES, FIT_FRAMES, SIGMA_FULL, IdentityStage, perturbation


def rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_canonical_face_has_zero_code_and_sane_size():
    b = mh.identity_basis()
    assert np.allclose(b.code(b.canonical), 0)
    c = b.canonical
    assert np.linalg.norm(c[fm.LEFT_EYE_OUTER] - c[fm.RIGHT_EYE_OUTER]) == pytest.approx(mh.BIOCULAR_MM, rel=1e-3)
    assert c[fm.CHIN, 1] > c[fm.NOSE_TIP, 1] > c[fm.FOREHEAD, 1]  # y down
    assert c[fm.LEFT_EYE_OUTER, 0] > c[fm.RIGHT_EYE_OUTER, 0]  # x to the subject's left
    assert c[fm.NOSE_TIP, 2] < c[fm.LEFT_CHEEK, 2]  # nose closer to the camera


def test_each_component_moves_its_own_measurement():
    b = mh.identity_basis()
    for k, comp in enumerate(mh.COMPONENTS):
        dz = np.zeros(mh.K)
        dz[k] = 0.3
        moved = b.code(b.canonical + b.displacement(dz))
        assert moved[k] == pytest.approx(0.3, rel=0.05), comp.name
        # others move far less, except measurements nested in this one
        # (the upper face height n-sto contains the nose height n-sn)
        names = [c.name for c in mh.COMPONENTS]
        nested = {"face_length": {"nose_length"}}.get(comp.name, set())
        for j, name in enumerate(names):
            if j != k and name not in nested:
                assert abs(moved[j]) < 0.1, (comp.name, name, moved[j])


def test_perturbation_is_a_function_of_seed_and_sigma():
    assert np.array_equal(perturbation(5, 0.25), perturbation(5, 0.25))
    assert not np.array_equal(perturbation(5, 0.25), perturbation(6, 0.25))
    draws = np.stack([perturbation(s, 0.25) for s in range(400)])
    assert draws.std() == pytest.approx(0.25, rel=0.1)
    assert np.allclose(perturbation(3, 0.0), 0)


def someone(k: int = 3) -> np.ndarray:
    """A plausible real face's neutral shape from the shape model (canonical frame, mm)."""
    m = fsh.default_shape()
    return m.shape(np.random.default_rng(100 + k).normal(0, 1, m.k).clip(-2, 2))


def fitted(stage, shape, track=1, seed=11, frames=FIT_FRAMES + 1, scale=2.0):
    out = None
    for i in range(frames):
        out = stage.process(track, seed, scale * shape + [300, 200, 0], t=i / 25)
    return out, stage._tracks[track]


def test_same_fake_3d_face_under_a_head_turn():
    shape = someone()
    stage = IdentityStage(sigma=0.3, smooth=False)
    yaws = [0] * 16 + [10, 25, 35, -30, 0]
    deltas = []
    for i, yaw in enumerate(yaws):
        lm = 2.0 * shape @ rot_y(yaw).T + [300, 200, 0]
        out = stage.process(track_id=1, seed=11, landmarks=lm, t=i / 25)
        assert out.yaw == pytest.approx(yaw, abs=1.0)
        c = out.codes
        # the frame's change is one canonical 3D displacement re-posed by this frame's camera
        st = stage._tracks[1]
        assert np.allclose(out.target - lm[:, :2], (c.scale * st.delta @ c.rotation.T)[:, :2], atol=1e-9)
        assert np.abs(out.target - lm[:, :2]).max() > 0.5  # something moved
        deltas.append(st.delta.copy())
    # frozen ID fit: the same fake 3D face in every pose
    for d in deltas[15:]:
        assert np.allclose(d, deltas[15])
    # hidden vertices: turned far, one cheek faces away, the nose does not
    out = stage.process(1, 11, 2.0 * shape @ rot_y(60).T, t=2.0)
    assert not out.visible.all() and out.visible[fm.NOSE_TIP]


def test_id_fit_ignores_open_mouth_frames_and_freezes():
    stage = IdentityStage(sigma=0.0, smooth=False)
    closed = someone(4)
    opened = closed.copy()
    opened[[fm.LOWER_LIP_INNER, fm.LOWER_LIP_BOTTOM, fm.CHIN]] += [0, 25, 0]  # jaw dropped
    for i in range(30):
        stage.process(2, 1, (opened if i % 2 else closed) * 1.5, t=i / 25)
    st = stage._tracks[2]
    assert st.frozen
    # only the closed-mouth frames counted (a small lip gap is taken out too: it is expression)
    assert np.allclose(st.neutral, stage.model.closed(closed), atol=1e-6)
    # sigma 0: no geometry change at all
    out = stage.process(2, 1, closed * 1.5, t=2.0)
    assert np.allclose(out.target, closed[:, :2] * 1.5, atol=1e-6)
    stage.drop(2)
    assert stage.noise_of(2) is None


def test_sigma_zero_keeps_the_persons_own_shape_within_reconstruction_error():
    m = fsh.default_shape()
    shape = someone(5)
    _, st = fitted(IdentityStage(sigma=0.0, smooth=False), shape)
    assert np.allclose(st.delta, 0)
    # the fitted code is the person's: its shape is theirs up to the model's reconstruction error
    assert np.abs(m.shape(st.z) - st.neutral).max() < 0.05  # mm: the model's reconstruction error
    assert np.abs(st.neutral - shape).max() < 0.05  # mm: (its lip gap is set to a closed mouth's)
    # a real portrait's shape (outside the model's span) comes back within a fraction of a millimetre
    real = shape + 0.3 * np.random.default_rng(0).normal(size=shape.shape)
    _, st = fitted(IdentityStage(sigma=0.0, smooth=False), real)
    assert np.sqrt(((m.shape(st.z) - real) ** 2).sum(1).mean()) < 0.6


def eye_spacing(x):
    return float(x[fm.LEFT_EYE_INNER, 0] - x[fm.RIGHT_EYE_INNER, 0])


def test_default_sigma_throws_the_persons_shape_away():
    m = fsh.default_shape()
    # one candidate: the new neutral shape is the seeded draw whoever the person is
    news = []
    for k in (1, 2):
        _, st = fitted(IdentityStage(sigma=SIGMA_FULL, smooth=False, candidates=1), someone(k))
        news.append(st.neutral + st.delta)
    away = np.setdiff1d(np.arange(len(news[0])), _lip_points())  # the lips keep most of their own height
    assert np.allclose(news[0][away], news[1][away], atol=1e-6)
    # with the default candidates the new shape is far from the person's, inner outline included
    moved, shares = [], []
    for k in range(8):
        _, st = fitted(IdentityStage(sigma=SIGMA_FULL, smooth=False), someone(k), seed=k)
        new = st.neutral + st.delta
        away = np.setdiff1d(np.arange(len(new)), _lip_points())
        if st.share == 1.0:  # (less where the full change would fold the mesh)
            assert np.allclose(new[away], m.shape(st.z_target)[away], atol=1e-6)
        shares.append(st.share)
        # the mouth's opening is expression: a closed mouth stays closed
        gap = lambda x: x[fm.LOWER_LIP_INNER, 1] - x[fm.UPPER_LIP_INNER, 1]  # noqa: E731
        assert gap(new) == pytest.approx(gap(st.neutral), abs=1e-6)
        moved.append(abs(eye_spacing(new) - eye_spacing(st.neutral)))
        assert np.sqrt((st.delta ** 2).sum(1).mean()) > 1.0  # mm, rms over the mesh
    assert np.mean(moved) > 0.5 and np.mean(shares) > 0.7


def test_seeds_differ_shapes_differ_same_seed_same_shape():
    shape = someone(6)
    _, a = fitted(IdentityStage(sigma=SIGMA_FULL, smooth=False), shape, seed=1)
    _, b = fitted(IdentityStage(sigma=SIGMA_FULL, smooth=False), shape, seed=2)
    _, c = fitted(IdentityStage(sigma=SIGMA_FULL, smooth=False), shape, seed=1)
    assert np.abs(a.delta - b.delta).max() > 1.0
    assert np.array_equal(a.delta, c.delta)


def test_larger_sigma_goes_further_from_the_person():
    shape = someone(7)
    dist, codes = [], []
    for sigma in (0.1, SIGMA_FULL, 0.5):
        _, st = fitted(IdentityStage(sigma=sigma, smooth=False), shape, seed=3)
        dist.append(np.sqrt((st.delta ** 2).sum(1).mean()))
        codes.append(np.linalg.norm(st.z_target - st.z))
    assert dist[0] < dist[1] and codes[0] < codes[1] < codes[2]
    # past the new face the mesh may come close to folding: the change is shrunk there, never folded
    assert dist[2] > 0.5 * dist[1]


def test_closing_eyes_do_not_fold_under_the_new_shape():
    from ideud.stream.identity import _lid_pairs

    up, low = _lid_pairs()
    for k in range(6):
        shape = someone(10 + k)
        stage = IdentityStage(sigma=SIGMA_FULL, smooth=False)
        out, st = fitted(stage, shape, seed=k)
        open_out = out.target
        shut = shape.copy()
        shut[low, 1] = shut[up, 1] = (shape[low, 1] + shape[up, 1]) / 2  # a blink: the lids meet
        out = stage.process(1, k, 2.0 * shut + [300, 200, 0], t=1.0)
        assert np.all(out.target[low, 1] - out.target[up, 1] > -1e-3), k  # they meet (px), never cross
        assert np.allclose(stage.target(1, out), out.target)  # the guard's re-render agrees
        # open eyes take the new shape's whole change
        assert np.allclose(open_out - 2.0 * shape[:, :2] - [300, 200], 2.0 * st.delta[:, :2], atol=1e-6)


def test_pick_is_made_once_and_can_be_carried():
    shape = someone(8)
    stage = IdentityStage(sigma=SIGMA_FULL, smooth=False)
    _, st = fitted(stage, shape, seed=9)
    picks = stage.picks_of(1)
    assert len(picks) == 1 and 0 <= next(iter(picks.values())) < CANDIDATES
    # another segment that sees the person differently is handed the first segment's pick
    other = IdentityStage(sigma=SIGMA_FULL, smooth=False)
    moved = {k: (p + 1) % CANDIDATES for k, p in picks.items()}
    other.preset_picks(1, 9, moved)
    _, st2 = fitted(other, shape, seed=9)
    assert other.picks_of(1) == moved and np.abs(st2.delta - st.delta).max() > 0.5
    carried = IdentityStage(sigma=SIGMA_FULL, smooth=False)
    carried.preset_picks(1, 9, picks)
    _, st3 = fitted(carried, someone(9), seed=9)  # whoever it fits, the carried pick holds
    assert carried.picks_of(1) == picks
    away = np.setdiff1d(np.arange(len(st.neutral)), _lip_points())
    assert np.allclose((st3.neutral + st3.delta)[away], (st.neutral + st.delta)[away], atol=1e-6)
