"""Hair that falls over the forehead stays the person's: the prior's new face is not drawn over it
(models/forehead_hair.py), while a bare forehead, lit bright or not, still gets the new face.

Build portraits (ideud.eval.portraits.build_names) at their own FaceMesh landmarks, the restorer
alone. A fringe is drawn on each: dark-brown strands from the top of the face oval down to just
above the brows.
"""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from ideud.eval.portraits import portraits_dir
from ideud.models import face_prior as fp
from ideud.models import facemesh as fm
from ideud.models import forehead_hair as fh
from ideud.stream.types import RestoreItem
from portrait_faces import first_build_faces

PORTRAITS = portraits_dir()
pytestmark = pytest.mark.skipif(PORTRAITS is None, reason="shared portraits not found")


@pytest.fixture(scope="module")
def faces():
    """Four build portraits with their landmarks (the first ones FaceMesh finds)."""
    return first_build_faces(4, among=6)


def _height(lm: np.ndarray, shape) -> tuple[np.ndarray, float, float]:
    """Each pixel's height along the face's up direction; the brows' top and the oval's top on it."""
    up = fm.face_up(lm)
    h = np.arange(shape[0])[:, None] * up[1] + np.arange(shape[1])[None, :] * up[0]
    brow = fm.brow_top(lm, up)
    top = float(np.max(fm.face_polygon(lm) @ up))
    return h, brow, top


def with_fringe(rgb: np.ndarray, lm: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The portrait with dark-brown strands over the forehead down to 2.5 % of the face width above
    the brows (the new face is drawn up to 4-6 % of it above them), across the middle of the face;
    and where they are (bool)."""
    fw = fp.face_width(lm)
    h, brow, top = _height(lm, rgb.shape[:2])
    cx = lm[168, 0]
    xs = np.arange(rgb.shape[1])[None, :]
    where = (h > brow + 0.025 * fw) & (h < top + 0.3 * fw) & (np.abs(xs - cx) < 0.35 * fw)
    rng = np.random.default_rng(seed)
    strands = rng.normal(0, 12, rgb.shape[1]).astype(np.float32)  # one shade per column: vertical strands
    hair = np.array([80, 52, 34], np.float32)[None, None] + strands[None, :, None]
    out = rgb.astype(np.float32)
    out[where] = np.broadcast_to(hair, out.shape)[where]
    return np.clip(out, 0, 255).astype(np.uint8), where


def restored(image: np.ndarray, lm: np.ndarray, i: int) -> np.ndarray:
    from ideud.stream.restore_prior import PriorRestorer

    return PriorRestorer().restore([RestoreItem(image=image, original=image, mask=np.ones(image.shape[:2], np.float32),
                                                landmarks=lm, track_id=i, seed=i, level=0)])[0]


def drawn_zone(lm: np.ndarray, shape) -> np.ndarray:
    """Where the new face is drawn at a fifth of its strength or more (the oval, the forehead fade)."""
    return fp.face_region(lm, shape, fp.face_width(lm)) * fp_fade(lm, shape) > 0.2


def test_a_fringe_over_the_forehead_is_kept(faces):
    for i, (rgb, lm) in enumerate(faces):
        image, where = with_fringe(rgb, lm, i)
        out = restored(image, lm, i)
        # the fringe where the new face would be drawn, a pixel in from its edge
        inner = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        judged = inner & drawn_zone(lm, rgb.shape[:2])
        assert judged.sum() > 20, i
        change = np.abs(out.astype(np.int16) - image.astype(np.int16))[judged].mean()
        assert change < 4.0, (i, change)  # the tree before drew skin over it: 20-40 levels


def test_a_bare_forehead_is_not_taken_for_hair(faces):
    """No hair on the middle of the forehead (these four men's hair reaches the drawn oval at most at a
    temple), and the same with a highlight on it (lighter, at the skin's hue)."""
    for i, (rgb, lm) in enumerate(faces):
        fw = fp.face_width(lm)
        shape = rgb.shape[:2]
        drawn = fp.face_region(lm, shape, fw) * fp_fade(lm, shape)
        h, brow, top = _height(lm, shape)
        middle = np.abs(np.arange(shape[1])[None, :] - lm[168, 0]) < 0.3 * fw
        forehead = (drawn > 0.2) & (h > brow + 0.02 * fw) & middle
        lit = rgb.astype(np.float32) * (1.0 + 0.25 * np.exp(-((h - (brow + top) / 2) / (0.1 * fw)) ** 2))[..., None]
        for image in (rgb, np.clip(lit, 0, 255).astype(np.uint8)):
            hair = fh.hair_mask(image, lm, drawn, fw)
            assert hair[forehead].mean() < 0.02, (i, hair[forehead].mean())


def fp_fade(lm, shape):
    from ideud.stream.restore_prior import _forehead_fade

    return _forehead_fade(lm, shape)
