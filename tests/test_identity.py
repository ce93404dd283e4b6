"""The mesh head: explainable identity basis, perturbation and re-posing."""
import numpy as np
import pytest

from ideud.models import facemesh as fm
from ideud.models import meshhead as mh
from ideud.stream.identity import IdentityStage, perturbation


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


def test_same_fake_3d_face_under_a_head_turn():
    b = mh.identity_basis()
    shape = b.canonical + b.displacement(np.linspace(-0.4, 0.4, mh.K))  # someone's real face
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
    b = mh.identity_basis()
    stage = IdentityStage(sigma=0.0, smooth=False)
    closed = b.canonical.copy()
    opened = closed.copy()
    opened[[fm.LOWER_LIP_INNER, fm.LOWER_LIP_BOTTOM, fm.CHIN]] += [0, 25, 0]  # jaw dropped
    for i in range(30):
        stage.process(2, 1, (opened if i % 2 else closed) * 1.5, t=i / 25)
    st = stage._tracks[2]
    assert st.frozen
    assert np.allclose(st.z, 0, atol=1e-6)  # only the closed-mouth frames counted
    # sigma 0: no geometry change at all
    out = stage.process(2, 1, closed * 1.5, t=2.0)
    assert np.allclose(out.target, closed[:, :2] * 1.5, atol=1e-6)
    stage.drop(2)
    assert stage.noise_of(2) is None
