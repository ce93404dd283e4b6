from pathlib import Path

import cv2
import numpy as np
import pytest

import ideud.models
from ideud.models import face_align as fa

CANONICAL = Path(ideud.models.__file__).parent / "data" / "canonical_face.npy"


def _similarity(angle_deg, scale, tx, ty):
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_known_transform():
    m_true = _similarity(17.0, 0.43, 31.0, -12.5)
    src = fa.FFHQ_TEMPLATE_512
    dst = _apply(m_true, src)
    m = fa.similarity_transform(src, dst)
    np.testing.assert_allclose(m, m_true, atol=1e-9)
    np.testing.assert_allclose(fa.invert_affine(m) @ np.append(dst[0], 1), src[0], atol=1e-7)


def test_similarity_transform_never_reflects():
    mirrored = fa.FFHQ_TEMPLATE_512 * [-1, 1]
    m = fa.similarity_transform(mirrored, fa.FFHQ_TEMPLATE_512)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError):
        fa.similarity_transform(np.ones((5, 2)), fa.FFHQ_TEMPLATE_512)


def _dot_image(h, w, dots, radius=3):
    img = np.full((h, w, 3), 40, np.uint8)
    for x, y in dots:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), radius * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return img


def _centroid(img, x, y, r=8):
    x0, y0 = int(x) - r, int(y) - r
    patch = img[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1, 0].astype(np.float64) - 40
    patch[patch < 0] = 0
    ys, xs = np.mgrid[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1]
    return np.array([(xs * patch).sum() / patch.sum(), (ys * patch).sum() / patch.sum()])


def test_align_then_paste_back_puts_pattern_back_within_a_pixel():
    # A 300x260 crop with a tilted, smaller face: its 5 points are the template under a known similarity.
    m_face = _similarity(-12.0, 0.38, 40.0, 60.0)
    pts5 = _apply(m_face, fa.FFHQ_TEMPLATE_512)
    dots = np.vstack([pts5, [[120.0, 150.0], [150.5, 120.25], [100.0, 190.0]]])
    img = _dot_image(300, 260, dots)

    face = fa.align_face(img, pts5, size=512)
    assert face.image.shape == (512, 512, 3) and face.source_size == (300, 260)
    # the 5 points land on the template
    np.testing.assert_allclose(_apply(face.affine, pts5), fa.FFHQ_TEMPLATE_512, atol=1e-6)

    blank = np.zeros_like(img)
    back = fa.paste_back(face, face.image, blank, feather=0.02)
    for x, y in dots:
        c = _centroid(back, x, y)
        assert np.hypot(c[0] - x, c[1] - y) < 1.0, (x, y, c)
    # far outside the aligned square the background is untouched
    corner = fa.coverage_mask(face.inverse, 512, (300, 260)) == 0
    assert corner.any() and (back[corner] == 0).all()


def test_paste_back_keeps_background_outside_and_replaces_inside():
    pts5 = _apply(_similarity(0.0, 0.3, 50.0, 40.0), fa.FFHQ_TEMPLATE_512)
    bg = np.full((240, 260, 3), 10, np.uint8)
    face = fa.align_face(bg, pts5)
    restored = np.full((512, 512, 3), 200, np.uint8)
    out = fa.paste_back(face, restored, bg)
    centre = np.round(_apply(face.inverse, np.array([[256.0, 256.0]]))[0]).astype(int)
    assert (out[centre[1], centre[0]] == 200).all()
    assert (out[0, 0] == 10).all() and (out[-1, -1] == 10).all()
    with pytest.raises(ValueError):
        fa.paste_back(face, restored, np.zeros((10, 10, 3), np.uint8))


def test_five_points_from_synthetic_mesh():
    lm = np.zeros((468, 3))
    lm[list(fa.MP_RIGHT_EYE), :2] = [100, 50]
    lm[list(fa.MP_LEFT_EYE), :2] = [160, 52]
    lm[fa.MP_NOSE_TIP, :2] = [130, 90]
    lm[fa.MP_MOUTH_RIGHT, :2] = [105, 120]
    lm[fa.MP_MOUTH_LEFT, :2] = [155, 121]
    lm[list(fa.MP_RIGHT_EYE)[:8], 0] += 5  # a contour, not a point: the centre is the mean
    p = fa.five_points_from_facemesh(lm)
    np.testing.assert_allclose(p, [[102.5, 50], [160, 52], [130, 90], [105, 120], [155, 121]])
    with pytest.raises(ValueError):
        fa.five_points_from_facemesh(np.zeros((68, 2)))


def test_facemesh_topology_matches_template():
    # The canonical FaceMesh, seen from the front (x right, y down), must fit the FFHQ
    # template closely; a swapped eye/mouth order or a wrong nose vertex would not.
    canon = np.load(CANONICAL)[:, :2]
    pts = fa.five_points_from_facemesh(canon)
    m = fa.similarity_transform(pts, fa.FFHQ_TEMPLATE_512)
    resid = np.linalg.norm(_apply(m, pts) - fa.FFHQ_TEMPLATE_512, axis=1)
    assert resid.max() < 5.0, resid
    assert resid[2] < 2.0  # the pronasale (vertex 4) sits where the template puts the nose
    # vertex 1 (often called "nose tip") would be off by more than 3x as much
    alt = pts.copy()
    alt[2] = canon[1]
    m_alt = fa.similarity_transform(alt, fa.FFHQ_TEMPLATE_512)
    assert np.linalg.norm(_apply(m_alt, alt)[2] - fa.FFHQ_TEMPLATE_512[2]) > 3 * resid[2]


def test_eye_indices_match_mediapipe_connections():
    conn = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    assert set(fa.MP_RIGHT_EYE) == {i for e in conn.FACEMESH_RIGHT_EYE for i in e}
    assert set(fa.MP_LEFT_EYE) == {i for e in conn.FACEMESH_LEFT_EYE for i in e}
    lips = {i for e in conn.FACEMESH_LIPS for i in e}
    assert {fa.MP_MOUTH_RIGHT, fa.MP_MOUTH_LEFT} <= lips
