"""Scene-cut detection on the detector's small frame.

A cut is a frame whose luma differs from the previous one both in distribution (histogram
distance) and pixel by pixel (mean absolute difference) by more than camera or subject motion
does. Both tests must agree: a pan changes pixels but keeps the histogram, a light change moves
the histogram of a static scene by a little everywhere. A third keeps a light dip (stage lights
going to 70 %, a flash) from counting: the thumbnails, each normalised to zero mean and unit
spread, must also differ (correlation under `SAME_PICTURE`) — a dimmer or brighter copy of the
same picture correlates near 1, another shot does not. At a cut every track ends (the tracker
is reset), so that no track, identity or predicted box is carried into a different shot.

Cost: one resize of the small frame to `WIDTH` px, a 32-bin histogram and one correlation
(~0.05 ms).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

WIDTH = 64  # px: the luma thumbnail compared between frames
BINS = 32
HIST_DISTANCE = 0.35  # half the L1 distance of the normalised histograms, in [0, 1]
MEAN_ABS_DIFF = 20.0  # grey levels, thumbnail pixel by pixel
# two shots of one set can share a histogram: a much larger pixel change then needs less of it
STRONG_MEAN_ABS_DIFF, WEAK_HIST_DISTANCE = 40.0, 0.15
SAME_PICTURE = 0.9  # correlation of the normalised thumbnails at or above which it is one picture, relit


def luma_thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (WIDTH, max(1, round(h * WIDTH / max(w, 1))))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


class CutDetector:
    """`is_cut(rgb)`, called once per frame in order: True when this frame starts a new shot."""

    def __init__(self, hist_distance: float = HIST_DISTANCE, mean_abs_diff: float = MEAN_ABS_DIFF):
        self.hist_distance = hist_distance
        self.mean_abs_diff = mean_abs_diff
        self._luma: Optional[np.ndarray] = None
        self._hist: Optional[np.ndarray] = None
        self._shape: Optional[tuple] = None  # the last frame's (its detection copy's) size
        self.cuts = 0

    def measure(self, rgb: np.ndarray) -> tuple[float, float, float]:
        """(histogram distance, mean abs difference, correlation of the normalised thumbnails) to the
        previous frame; (0, 0, 1) at the first."""
        luma = luma_thumbnail(rgb)
        hist = np.bincount((luma >> 3).ravel(), minlength=BINS).astype(np.float32)
        hist /= max(hist.sum(), 1.0)
        if self._luma is None or self._luma.shape != luma.shape:
            d_hist, d_pix, corr = 0.0, 0.0, 1.0
        else:
            d_hist = 0.5 * float(np.abs(hist - self._hist).sum())
            d_pix = float(cv2.absdiff(luma, self._luma).mean())
            corr = _correlation(luma, self._luma)
        self._luma, self._hist = luma, hist
        return d_hist, d_pix, corr

    def is_cut(self, rgb: Optional[np.ndarray], size: Optional[tuple] = None) -> bool:
        """`rgb`: the frame (or its detection copy), `size`: the frame's own (w, h) if that is a
        copy. Also True when the frame is of another size than the last (a source that changes
        size mid-stream): boxes in the last frame's pixels mean nothing in it."""
        if rgb is None:
            return False
        size = tuple(size) if size is not None else (rgb.shape[1], rgb.shape[0])
        resized = self._shape is not None and self._shape != size
        self._shape = size
        d_hist, d_pix, corr = self.measure(rgb)
        cut = resized or corr < SAME_PICTURE and ((d_hist > self.hist_distance and d_pix > self.mean_abs_diff)
                                                  or (d_hist > WEAK_HIST_DISTANCE and d_pix > STRONG_MEAN_ABS_DIFF))
        self.cuts += cut
        return cut


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two thumbnails' pixels; 1 when either is flat (nothing to tell apart)."""
    x, y = a.astype(np.float32).ravel(), b.astype(np.float32).ravel()
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return 1.0 if den < 1e-6 else float((x * y).sum()) / den
