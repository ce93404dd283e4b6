"""The prior restorer keeps the person's skin tone at every guard level and leaves no seam on the forehead.

Measured on build portraits (ideud.eval.portraits.build_names), the restorer alone at each face's own
FaceMesh landmarks: mean CIELAB of cheek and forehead skin in the output against the input's, and the
change in L* up the middle of the forehead (the new face used to stop there on a line).
"""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from ideud.eval.portraits import portraits_dir
from ideud.models import face_prior as fp
from ideud.stream.types import RestoreItem
from portrait_faces import first_build_faces

PORTRAITS = portraits_dir()
pytestmark = pytest.mark.skipif(PORTRAITS is None, reason="shared portraits not found")

FOREHEAD = [104, 69, 108, 151, 337, 299, 333, 9]
CHEEKS = ([117, 118, 101, 50, 205, 187, 123], [346, 347, 330, 280, 425, 411, 352])
LEVELS = (0, 2, 4)  # level 0 and two escalated levels (wider shading scales)


@pytest.fixture(scope="module")
def faces():
    """Six build portraits with their landmarks (the first ones FaceMesh finds)."""
    return first_build_faces(6, among=8)


@pytest.fixture(scope="module")
def outputs(faces):
    """{level: [output of each face]}: one restorer, a seed per face."""
    from ideud.stream.restore_prior import PriorRestorer

    r = PriorRestorer()
    return {level: [r.restore([RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32),
                                           landmarks=lm, track_id=i, seed=i, level=level)])[0]
                    for i, (rgb, lm) in enumerate(faces)] for level in LEVELS}


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def skin_mask(shape, lm: np.ndarray) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    for idx in (FOREHEAD, *CHEEKS):
        cv2.fillPoly(m, [cv2.convexHull(np.round(lm[idx]).astype(np.int32))], 1)
    return m > 0


def forehead_step(before: np.ndarray, after: np.ndarray, lm: np.ndarray) -> float:
    """The sharpest change of (after - before) in L* up the middle of the upper forehead, over 0.03 x
    the face width (L* units): where the new face meets the person's, a seam is a step."""
    d = lab(after)[..., 0] - lab(before)[..., 0]
    x0, x1 = sorted([lm[108, 0], lm[337, 0]])
    top, brow = lm[10, 1], min(lm[105, 1], lm[334, 1])
    ys = np.arange(int(np.ceil(top)), int(top + 0.75 * (brow - top)))
    profile = d[ys][:, int(x0):int(x1) + 1].mean(1)
    s = max(1, int(round(0.03 * fp.face_width(lm))))
    return float(np.abs(profile[s:] - profile[:-s]).max())


@pytest.mark.parametrize("level", LEVELS)
def test_new_face_keeps_the_persons_skin_tone(faces, outputs, level):
    """Before: levels 2 and 4 moved cheek and forehead skin by up to 5.1 and 7.9 units of a*b* on these
    faces (greyer, bluer: background and hair bled into the shading) and darkened it by 2.6 and 3.6 L*
    on average; now at most 1.9 a*b* units, 1.7 L* on average."""
    shifts, dls = [], []
    for (rgb, lm), out in zip(faces, outputs[level]):
        skin = skin_mask(rgb.shape, lm)
        d = lab(out)[skin].mean(0) - lab(rgb)[skin].mean(0)
        shifts.append(float(np.hypot(d[1], d[2])))
        dls.append(float(d[0]))
    assert max(shifts) < 3.0, shifts
    assert np.mean(shifts) < 1.5, shifts
    assert abs(np.mean(dls)) < 2.5, dls


def test_grey_picture_stays_grey(faces):
    """The tone correction is per channel: a grey-scale face must not come out tinted."""
    from ideud.stream.restore_prior import PriorRestorer

    rgb, lm = faces[0]
    grey = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    out = PriorRestorer().restore([RestoreItem(image=grey, original=grey, mask=np.ones(grey.shape[:2], np.float32),
                                               landmarks=lm, track_id=1, seed=3, level=4)])[0].astype(int)
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 2 and np.abs(out[..., 1] - out[..., 2]).max() <= 2


@pytest.mark.parametrize("level", LEVELS)
def test_no_seam_across_the_forehead(faces, outputs, level):
    """The new face fades out over the upper forehead instead of stopping on a line (before: steps of
    up to 2.0 and 2.9 L* within 0.03 face widths at levels 2 and 4 on these faces; now 1.1 and 1.3)."""
    steps = [forehead_step(rgb, out, lm) for (rgb, lm), out in zip(faces, outputs[level])]
    assert max(steps) < 1.5, steps


def lip_band(shape, lm: np.ndarray) -> np.ndarray:
    return (fp.fill(shape[:2], [fp.ring(lm, fp.LIPS)]) * (1 - fp.fill(shape[:2], [fp.ring(lm, fp.INNER_LIPS)]))) > 0.5


def face_skin(shape, lm: np.ndarray) -> np.ndarray:
    """The face oval without its features and openings (where the new face's relief shows)."""
    fw = fp.face_width(lm)
    return ((fp.face_region(lm, shape[:2], fw) > 0.5) & (fp.feature_mask(lm, shape[:2], fw) < 0.5)
            & (fp.apertures(lm, shape[:2], fw) < 0.5))


@pytest.mark.parametrize("level", LEVELS)
def test_lips_keep_their_colour(faces, outputs, level):
    """The prior's lips (mostly men's) came out paler or greyer than the person's: mean |change| of the
    lip band's a* 5.0 on these faces at level 0 (one face 10.4); now their hue and saturation are the
    person's (darkness is not: below), 1.8."""
    shifts = [abs(float(lab(out)[lip_band(rgb.shape, lm)][:, 1].mean() - lab(rgb)[lip_band(rgb.shape, lm)][:, 1].mean()))
              for (rgb, lm), out in zip(faces, outputs[level])]
    assert np.mean(shifts) < 3.0, shifts


def test_the_new_face_is_not_flatter_than_the_person(faces, outputs):
    """The new face's relief is deepened toward the person's contrast (restore_prior._deepened): the
    spread of L* over the face's skin, output / input, was 0.84 on average on these faces (their darks
    lifted, the face paler and more orange than its neck); now 0.89."""
    ratios = [float(lab(out)[face_skin(rgb.shape, lm)][:, 0].std() / lab(rgb)[face_skin(rgb.shape, lm)][:, 0].std())
              for (rgb, lm), out in zip(faces, outputs[0])]
    assert np.mean(ratios) > 0.865, ratios
    assert max(ratios) < 1.2, ratios  # deepened toward the person's, not past it
