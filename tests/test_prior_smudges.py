"""The prior's new face has no dark smudge over the forehead (models/prior_forehead.py).

The appearance prior blurs brows and hairlines that sat higher on some of its portraits into grey or
brown blotches above the brows; picked as the farthest candidate and deepened, they came out as
smudges on the forehead and temples (issue 11's first listed artifact)."""
import numpy as np

from ideud.models import face_prior as fp
from ideud.models import prior_forehead as pf
from ideud.stream import restore_prior as rp


def _rows_above_and_below():
    lm = fp.canvas_landmarks()
    brows = lm[np.r_[fp.R_BROW[0] + fp.R_BROW[1], fp.L_BROW[0] + fp.L_BROW[1]]]
    above = int(brows[:, 1].min()) - 2  # a row over the brows' upper line everywhere (the canvas
    # holds only a few rows of forehead: its top is the face oval's)
    below = int(brows[:, 1].max()) + 4  # a row under the brows: eyelids, nose
    return above, below, brows


def _forehead_inside() -> np.ndarray:
    """The canvas above the brows, a few pixels in from the brows and the canvas's edge."""
    import cv2

    return cv2.erode((pf.above_brows() > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def test_a_dark_blotch_above_the_brows_is_lifted_and_nothing_else_moves():
    above, below, brows = _rows_above_and_below()
    x0, x1 = int(brows[:, 0].min()), int(brows[:, 0].max())
    canvas = np.zeros(fp.CANVAS[::-1] + (3,), np.float32)
    cols = np.zeros(canvas.shape[:2], bool)
    cols[:, x0 + 5:x0 + 30] = True
    blotch = _forehead_inside() & cols  # a smudge over the right brow's inner half
    canvas[blotch] = -0.5
    canvas[below:below + 3, x0:x1] = -0.5  # dark under the brows (lids, shadows): not the forehead's
    wrinkle = _forehead_inside() & ~cols
    wrinkle[:, :x0 + 40] = False
    wrinkle[np.nonzero(wrinkle.any(1))[0][1:]] = False  # one row of it: a thin forehead line stays
    canvas[wrinkle] = -0.1
    out = pf.without_smudges(canvas)
    assert out[blotch].mean() > 0.5 * canvas[blotch].mean(), "the blotch was not lifted"
    assert np.allclose(out[below:], canvas[below:]), "below the brows changed"
    assert np.abs(out[wrinkle] - canvas[wrinkle]).max() < 0.03, "a wrinkle was lifted"
    flat = np.zeros_like(canvas)
    assert np.array_equal(pf.without_smudges(flat), flat), "clean skin changed"


def test_relief_is_not_deepened_above_the_brows():
    above, below, _ = _rows_above_and_below()
    w, base = pf.relief_weights(), fp.relief_mask()
    inside = fp.canvas_mask()
    assert w[:above][inside[:above]].max() < 0.05
    assert np.array_equal(w[below:], base[below:])


def test_the_restorer_draws_the_cleaned_canvas():
    # seeded draws as the restorer draws them: above the brows nothing darker than the floor, and
    # nothing darker than the prior's own face anywhere
    r = rp.PriorRestorer()
    zone = pf.above_brows() > 0.999
    darkest_raw = 0.0
    for seed in range(12):
        t = fp.sample_code(seed, r.prior.k, 0)
        drawn = r._new_canvas((1, seed, 0), t).mean(-1)
        raw = r.prior.to_image(r.prior.decode(t) + r.prior.detail(t, r.donors)).mean(-1)
        assert (drawn >= raw - 1e-5).all()
        assert drawn[zone].min() >= pf.FOREHEAD_FLOOR - 1e-3
        darkest_raw = min(darkest_raw, float(raw[zone].min()))
    assert darkest_raw < pf.FOREHEAD_FLOOR - 0.1, "no blotch among the draws: the test shows nothing"
