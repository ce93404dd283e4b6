"""An escalated face keeps the broad layout of its light (models/prior_forehead.py `broad_light`).

From the guard's level 1 on, the prior restorer takes the person's shading at a wider scale than the
prior's own, and the band between the two came from neither face: the forehead's highlight was lost
and escalated faces came out darker and flatter than their own. Only a quadratic of that band is put
back: where the light is brighter, not the shapes that made it."""
import numpy as np
import pytest

from ideud.eval.portraits import portraits_dir
from ideud.models import face_prior as fp
from ideud.models import facemesh as fm
from ideud.models import prior_forehead as pf
from ideud.stream import restore_prior as rp
from ideud.stream.types import RestoreItem
from portrait_faces import first_build_faces

pytestmark = pytest.mark.skipif(portraits_dir() is None, reason="shared portraits not found")


def _face_frame(shape, lm, fw):
    """(u, v) in face widths from the points' centre, v up (the test's faces are upright)."""
    c = lm.mean(0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return (xx - c[0]) / fw, -(yy - c[1]) / fw


def test_a_quadratic_light_is_put_back_and_a_local_shape_is_not():
    (rgb, lm), = first_build_faces(1, among=4)
    shape = rgb.shape[:2]
    fw = fp.face_width(lm)
    u, v = _face_frame(shape, lm, fw)
    skin = fp.face_region(lm, shape, fw) * (1.0 - fp.feature_mask(lm, shape, fw))
    wide = np.full(shape + (3,), 120.0, np.float32)
    light = 0.15 * v - 0.1 * u * u  # brighter up the face, darker to the sides
    x = 120.0 * np.exp(light)[..., None] * np.ones(3, np.float32)
    gain = pf.broad_light(x, skin, wide, lm, fw)
    m = skin > 0.5
    assert np.abs(np.log(gain[m]) - (light[m] - light[m].mean()) - np.mean(np.log(gain[m]))).max() < 0.03
    # a bump the size of a nose tip in the band is a shape: it does not come back
    bump = 0.3 * np.exp(-((u - 0.0) ** 2 + (v + 0.1) ** 2) / (2 * 0.05 ** 2))
    gain2 = pf.broad_light(x * np.exp(bump)[..., None], skin, wide, lm, fw)
    at = (np.abs(u) < 0.03) & (np.abs(v + 0.1) < 0.03) & m
    assert np.log(gain2[at] / gain[at]).max() < 0.1, "the bump came back"


def test_escalated_faces_keep_more_of_their_forehead_s_light_level_0_is_as_it_was():
    def out(img, lm, level, broad=True):
        saved = pf.broad_light
        if not broad:
            pf.broad_light = lambda x, skin, s, lm, fw: np.ones(s.shape[:2], np.float32)
        try:
            return rp.PriorRestorer().restore([RestoreItem(image=img, original=img, mask=np.ones(img.shape[:2], np.float32),
                                                           landmarks=lm, track_id=1, seed=4, level=level)])[0]
        finally:
            pf.broad_light = saved

    errors = []  # |forehead luma out - in| at level 3, with and without
    for rgb, lm in first_build_faces(6, among=8):
        shape = rgb.shape[:2]
        fw = fp.face_width(lm)
        up = fm.face_up(lm)
        height = np.arange(shape[0])[:, None] * up[1] + np.arange(shape[1])[None, :] * up[0]
        forehead = (height > fm.brow_top(lm, up) + 0.03 * fw) & (fp.face_region(lm, shape, fw) > 0.5)
        luma = lambda a: float(a.astype(np.float32).mean(-1)[forehead].mean())
        errors.append((abs(luma(out(rgb, lm, 3)) - luma(rgb)), abs(luma(out(rgb, lm, 3, broad=False)) - luma(rgb))))
    with_it, without = np.mean(errors, 0)
    assert with_it < without - 1.0, errors  # measured: 10.2 against 12.4 levels
    rgb, lm = first_build_faces(1, among=4)[0]
    assert np.array_equal(out(rgb, lm, 0), out(rgb, lm, 0, broad=False)), "level 0 changed"
