"""The prior restorer keeps a person's glasses at the first escalation levels only
(stream/restore_prior.py, GLASSES_BELOW_LEVEL): the keep mask covers the whole eye band, the
person's eyelids and brows behind the frames too, so the guard's later steps draw the new face there;
and there no ghost of the frames is left (their lines came through the person's grain and light)."""
from __future__ import annotations

import numpy as np
import pytest

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


def ghost(rgb: np.ndarray, out: np.ndarray, lm: np.ndarray) -> float:
    """Correlation of the input's and the output's fine structure over the eye band, the eye openings
    left out: the frames' lines where the person wore them, the same lines in the output."""
    import cv2

    from ideud.models import face_prior as fp

    fw = fp.face_width(lm)
    band = fp.fill(rgb.shape[:2], [fp.scaled(fp.ring(lm, e), 2.6, 4.0) for e in (fp.R_EYE, fp.L_EYE)], 1.0) > 0.5
    band &= fp.apertures(lm, rgb.shape[:2], fw) < 0.05

    def fine(x):
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return g - cv2.GaussianBlur(g, (0, 0), max(1.0, 0.02 * fw))

    return float(np.corrcoef(fine(rgb)[band], fine(out)[band])[0, 1])


@pytest.mark.parametrize("scale", [1.0, 2.5])  # 2.5: a face over the work size (its fine detail added at full size)
def test_frames_not_kept_leave_no_ghost(face, scale):
    import cv2

    from ideud.models import face_prior as fp
    from ideud.stream.restore_prior import GLASSES_BELOW_LEVEL, LEVEL_SIGMA_LOW, WORK_FACE_PX, PriorRestorer

    rgb, lm = face
    lm = lm[:, :2]
    if scale != 1.0:
        s = scale * WORK_FACE_PX / fp.face_width(lm)
        rgb, lm = np.ascontiguousarray(cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)), lm * s
    seen = []
    for level in range(len(LEVEL_SIGMA_LOW)):
        it = RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                         track_id=1, seed=7, level=level)
        seen.append(ghost(rgb, PriorRestorer().restore([it])[0], lm))
    for level, c in enumerate(seen):
        if level < GLASSES_BELOW_LEVEL:
            assert c > 0.8, (level, seen)  # the frames kept
        else:
            assert c < 0.35, (level, seen)  # before: 0.62-0.64 (the frames' lines through the new face)
