"""The prior restorer keeps a person's glasses at the first escalation levels only
(stream/restore_prior.py, GLASSES_BELOW_LEVEL): the keep mask covers the whole eye band, the
person's eyelids and brows behind the frames too, so the guard's later steps draw the new face there."""
from __future__ import annotations

import numpy as np

from ideud.stream.types import RestoreItem
from test_prior_caches import face  # noqa: F401  (the first held-out portrait, which wears glasses)


def eye_band_kept(rgb: np.ndarray, out: np.ndarray, lm: np.ndarray) -> float:
    """Share of the band between the outer eye corners that the output left as the person's."""
    from ideud.models import facemesh as fm

    a, b = lm[fm.LEFT_EYE_OUTER, :2], lm[fm.RIGHT_EYE_OUTER, :2]
    x0, x1 = int(min(a[0], b[0])), int(max(a[0], b[0]))
    yc, h = int((a[1] + b[1]) / 2), int(0.15 * abs(b[0] - a[0]))
    band = (slice(yc - h, yc + h), slice(x0, x1))
    return float((np.abs(out[band].astype(int) - rgb[band].astype(int)).max(-1) <= 2).mean())


def test_glasses_kept_below_the_level_and_not_from_it(face):
    from ideud.stream.restore_prior import GLASSES_BELOW_LEVEL, LEVEL_SIGMA_LOW, PriorRestorer

    rgb, lm = face
    r = PriorRestorer()
    kept = []
    for level in range(len(LEVEL_SIGMA_LOW)):
        it = RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                         track_id=1, seed=7, level=level)
        kept.append(eye_band_kept(rgb, r.restore([it])[0], lm))
    assert r._wears_glasses[(1, 7)]  # decided from the portrait itself
    for level, share in enumerate(kept):
        if level < GLASSES_BELOW_LEVEL:
            assert share > 0.25, (level, kept)  # the frames and what sits behind them: the person's
        else:
            assert share < 0.15, (level, kept)  # only the eye openings (iris, gaze) stay the person's
