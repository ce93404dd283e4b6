"""A still's own form kept: a grey-scale picture comes out grey (one channel), and a 16-bit PNG or
TIFF keeps its 16 bits outside the faces (as stream/deep.py does for video of more than 8 bits).

The pipeline works on 8-bit RGB. A 16-bit source is brought to 8 bits by rounding
(v8 = (v16 + 128) // 257, so that v8 * 257 is the nearest 8-bit level); the blend stage notes
every crop it writes (`Frame.touched`), and an output that holds 16 bits (PNG, TIFF) gets the
source's samples outside those crops, bit for bit, and the de-identified 8-bit samples * 257
inside them: not one source sample is written inside a face crop, so no low bits of the person
survive there. Other formats (JPEG, WebP, BMP, HEIC, AVIF) hold 8 bits and get the 8-bit picture.

A grey source (one channel, 8 or 16 bits) is read as three equal channels; the new face drawn on
it is grey too (the restorers keep the source's colour), and what is written is its luma (BT.601,
as OpenCV takes it), which outside the touched crops is the source's own grey. A source with
alpha is written with its alpha as before (16 bits where the output keeps them).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

DEEP_EXTENSIONS = {".png", ".tif", ".tiff"}  # outputs that keep 16 bits
GREY_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}  # outputs with a one-channel form
FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # the file's depth and channels, EXIF Orientation applied


def read(data: np.ndarray) -> Optional[tuple[np.ndarray, bool, Optional[np.ndarray]]]:
    """(RGB uint8 for the pipeline, grey source?, the source's 16-bit samples (H, W) or (H, W, 3)
    BGR, else None) of an encoded still, upright; None where OpenCV cannot read it."""
    raw = cv2.imdecode(data, FLAGS)
    if raw is None:
        return None
    if raw.dtype not in (np.uint8, np.uint16) or (raw.ndim == 3 and raw.shape[2] != 3):
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # float or odd channel counts: OpenCV's own 8-bit view
        return None if img is None else (np.ascontiguousarray(img[:, :, ::-1]), False, None)
    grey = raw.ndim == 2
    deep = raw if raw.dtype == np.uint16 else None
    img8 = to_8_bit(raw) if deep is not None else raw
    rgb = np.repeat(img8[:, :, None], 3, axis=2) if grey else np.ascontiguousarray(img8[:, :, ::-1])
    return rgb, grey, deep


def to_8_bit(v16: np.ndarray) -> np.ndarray:
    """The nearest 8-bit level of each 16-bit sample (levels are 257 apart)."""
    return ((v16.astype(np.uint32) + 128) // 257).astype(np.uint8)


def pixels(frame, ext: str, alpha: Optional[np.ndarray], alpha16: Optional[np.ndarray]) -> np.ndarray:
    """What to encode for `ext`, in OpenCV's channel order: BGR(A) or grey, 8 or 16 bits (module
    docstring). `alpha` (uint8) / `alpha16` (the source's uint16 alpha, or None): written where
    given (the caller decides whether the format holds alpha)."""
    bgr = np.dstack(frame.planes[::-1])
    grey = bool(getattr(frame, "grey", False)) and ext in GREY_EXTENSIONS and alpha is None
    out = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if grey else bgr
    deep = getattr(frame, "source16", None)
    if deep is not None and ext in DEEP_EXTENSIONS and (deep.ndim == 2) == grey and deep.shape[:2] == out.shape[:2]:
        out = _deep_outside_touched(out, deep, frame.touched)
        if alpha is not None:
            a = alpha16 if alpha16 is not None and alpha16.shape == out.shape[:2] else alpha.astype(np.uint16) * 257
            out = np.dstack([out, a])
    elif alpha is not None:
        out = np.dstack([out, alpha])
    return out


def _deep_outside_touched(out8: np.ndarray, deep: np.ndarray, touched) -> np.ndarray:
    """The source's 16-bit samples, with every touched crop taken from the 8-bit output (* 257)."""
    out = deep.copy()
    for crop in touched:
        sl = (slice(crop.y0, crop.y1), slice(crop.x0, crop.x1))
        out[sl] = out8[sl].astype(np.uint16) * 257
    return out


def pixels_8_bit(px16: np.ndarray) -> np.ndarray:
    """`pixels`' 16-bit result at 8 bits (for a writer that holds no more): the faces' samples
    exactly as drawn, the rest rounded."""
    return to_8_bit(px16)
