"""Soft masks and Gaussian blurs of face crops, at the cost of the pixels they change.

`fill` draws polygons (eyes, lips, the face oval) as a feathered float mask; `blur` is OpenCV's
Gaussian, `low_pass` its cheaper stand-in for wide sigmas, and `blur_reach` how far a blur reaches,
so that a caller can blur only around what it will use and get the same values there.
"""
from __future__ import annotations

import cv2
import numpy as np


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma) if sigma > 0.3 else x


def low_pass(x: np.ndarray, sigma: float) -> np.ndarray:
    """`blur` for wide sigmas (the shading's 6-40 px), at a 2-4x smaller scale: 10-30x cheaper, within
    ~0.3 levels on average (more at the borders). Area-down, blur, linear-up; the down and up steps'
    own spread (box (f^2 - 1) / 12, tent f^2 / 6) is taken off the Gaussian's variance."""
    f = min(int(sigma // 3), 4)
    if f < 2:
        return blur(x, sigma)
    h, w = x.shape[:2]
    sh, sw = -(-h // f), -(-w // f)
    padded = cv2.copyMakeBorder(x, 0, sh * f - h, 0, sw * f - w, cv2.BORDER_REFLECT_101)
    small = cv2.resize(padded, (sw, sh), interpolation=cv2.INTER_AREA)
    rest = np.sqrt(max(sigma * sigma - (f * f - 1) / 12.0 - f * f / 6.0, 0.25)) / f
    small = cv2.GaussianBlur(small, (0, 0), rest)
    return cv2.resize(small, (sw * f, sh * f), interpolation=cv2.INTER_LINEAR)[:h, :w]


def blur_reach(sigma: float) -> int:
    """Pixels a float32 `blur` of `sigma` reaches on each side (OpenCV's kernel radius), and one more."""
    return int(round(sigma * 4 * 2 + 1)) // 2 + 1


def around(lo, hi, reach: int, shape) -> tuple[slice, slice]:
    """Rows and columns of an image of `shape` within `reach` pixels of the box from `lo` to `hi`
    ((x, y) each): where a blur of that reach changes anything of what lies in the box."""
    x0, y0 = (max(int(v) - reach, 0) for v in lo)
    x1, y1 = min(int(hi[0]) + reach + 1, shape[1]), min(int(hi[1]) + reach + 1, shape[0])
    return slice(y0, y1), slice(x0, x1)


def fill(shape, polys, feather: float = 0.0, grow: float = 0.0) -> np.ndarray:
    """Soft mask (float32 0..1) of filled polygons, optionally grown and feathered."""
    m = np.zeros(shape, np.uint8)
    pts = [np.asarray(p, np.float64).reshape(-1, 2) for p in polys]
    for p in pts:
        cv2.fillPoly(m, [np.round(p * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    k = int(round(grow)) if grow >= 1 else 0
    if k:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    out = m.astype(np.float32) / 255.0
    if feather <= 0.3 or not pts:
        return out
    # feathered around the polygons only: the blur of the zeros beyond its reach is zero, and inside
    # a margin of zeros as wide as its reach the values are those of blurring the whole mask
    every = np.vstack(pts)
    rows, cols = around(every.min(0), every.max(0), k + 3 + blur_reach(feather), m.shape)
    if rows.stop > rows.start and cols.stop > cols.start:
        out[rows, cols] = blur(out[rows, cols], feather)
    return out
