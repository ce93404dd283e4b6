"""The prior's new face over the forehead: no smudges there (stream/restore_prior.py draws it).

The appearance prior (models/face_prior.py) holds only ~6 canvas rows of forehead above the brows,
which the warp stretches over the whole forehead. There it has blurred the brows and hairlines that
sat higher on some of its portraits into grey or brown blotches (log R -0.15 to -0.8 against the
skin); the restorer's pick (the candidate farthest from the person) shows them most, and deepening
the new face's relief toward the person's contrast made them darker: issue 11's "orange/brown
smudge on the forehead or temple". Above the brows' upper line the new reflectance is therefore
lifted to FOREHEAD_FLOOR (`without_smudges`) and its relief is not deepened (`relief_weights`).
Measured (docs/measured.md, thirty-seventh session): build portraits whose darkest forehead blob is
under -25 levels 22 -> 14 of 100 at level 0, 37 -> 31 at level 3.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ideud.models import face_prior as fp

# darker than this (log units against the new face's own skin there) above the brows is not skin; a
# 1-px wrinkle of -0.1 moves by 0.02
FOREHEAD_FLOOR = -0.08


@functools.lru_cache(maxsize=1)
def above_brows() -> np.ndarray:
    """The canvas above the brows' upper line (float32 0..1, feathered; read-only): forehead skin."""
    lm = fp.canvas_landmarks()
    h, w = fp.CANVAS[::-1]
    top = lm[np.r_[fp.R_BROW[0], fp.L_BROW[0]]]
    top = top[np.argsort(top[:, 0])]
    line = np.interp(np.arange(w), top[:, 0], top[:, 1])
    zone = (np.arange(h)[:, None] < line[None, :]).astype(np.float32)
    zone = cv2.GaussianBlur(zone, (0, 0), 1.0) * fp.canvas_mask()  # feathered at the brows, not the canvas's edge
    zone.flags.writeable = False
    return zone


def channel_mean(x: np.ndarray) -> np.ndarray:
    """x.mean(-1, keepdims=True) for 3 channels, the same float32 sums: numpy reduces a last
    axis of 3 element by element (~0.3 ms for a face crop against ~0.02 ms for this)."""
    return ((x[..., 0] + x[..., 1] + x[..., 2]) / np.float32(3))[..., None]


def without_smudges(canvas: np.ndarray) -> np.ndarray:
    """The new face's reflectance (canvas image, HxWx3 log R) with what is darker than FOREHEAD_FLOOR
    above the brows lifted to it."""
    lift = np.maximum(FOREHEAD_FLOOR - channel_mean(canvas)[..., 0], 0.0) * above_brows()
    return canvas + lift[..., None]


@functools.lru_cache(maxsize=1)
def relief_weights() -> np.ndarray:
    """Where the new face's relief may be deepened (canvas image, read-only): fp.relief_mask less the
    forehead above the brows."""
    w = (fp.relief_mask() * (1.0 - above_brows())).astype(np.float32)
    w.flags.writeable = False
    return w
