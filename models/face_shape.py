"""The learned 3D face-shape model: identity modes of FaceMesh's 468 points.

    S(z) = mean + sum_i z_i sd_i B_i            (468 x 3, canonical frame, millimetres)

Built by tools/build/build_face_shape.py from the BUILD portraits (near-neutral, near-frontal
official portraits): each portrait's FaceMesh, similarity-aligned to the canonical face
(models/meshhead.to_canonical), then PCA. z is whitened: z_i ~ N(0, 1) over the portraits. The
model holds averages and modes of many people, no single face.

It replaces the 12 hand-made anthropometric components as the shape half of the ID code: a
person's z is fitted (stream/identity.py), and the new face's shape is a seeded draw S(z_new),
so everything the modes hold (face width and length, eye spacing and size, brows, nose, mouth,
lips, the outline) is thrown away, not nudged.

`fit_ict` makes the modes from ICT-FaceKit's 3D scans instead (`build_face_shape.py --basis ict`):
measured, not shipped (docs/measured.md, twenty-fifth session: fewer faces obfuscated, more
face-frames of video matched).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.models import model_file
from ideud.models import meshhead as mh

COMPONENTS = 40  # identity modes kept (~97 % of the portraits' shape variance)
# a portrait (or a frame) feeds a shape fit only when near frontal and with the mouth closed
FIT_MAX_YAW, FIT_MAX_PITCH = 25.0, 20.0
MOUTH_OPEN_MAX = 0.08  # lip gap / face height
Z_MAX = 3.0  # a drawn or fitted code is kept within +-3 SD per mode (a plausible face)
ARRAYS = ("mean", "basis", "sd", "open_dir", "gap_closed")


def mouth_gap(shape: np.ndarray) -> float:
    """Lip gap over face height of a canonical-frame shape."""
    return float(abs(shape[fm.LOWER_LIP_INNER, 1] - shape[fm.UPPER_LIP_INNER, 1]) / np.ptp(shape[:, 1]))


def gap_mm(shape: np.ndarray) -> float:
    """Lip gap (mm) of a canonical-frame shape (or a batch of them: the last two axes are 468 x 3)."""
    s = np.asarray(shape)
    return np.abs(s[..., fm.LOWER_LIP_INNER, 1] - s[..., fm.UPPER_LIP_INNER, 1])


def is_fit_frame(shape: np.ndarray, yaw: float, pitch: float) -> bool:
    """Near frontal, mouth closed: the shape there is the person's, not the pose's or expression's."""
    return abs(yaw) <= FIT_MAX_YAW and abs(pitch) <= FIT_MAX_PITCH and mouth_gap(shape) <= MOUTH_OPEN_MAX


def neutral_shape(points: np.ndarray) -> Optional[np.ndarray]:
    """A portrait's canonical-frame shape (468, 3), or None if it is turned or the mouth is open."""
    _, r, _, shape = mh.to_canonical(points)
    yaw, pitch, _ = mh.rotation_angles(r)
    return shape if is_fit_frame(shape, yaw, pitch) else None


@dataclass(frozen=True)
class FaceShape:
    mean: np.ndarray  # (468 * 3,)
    basis: np.ndarray  # (k, 468 * 3), orthonormal rows
    sd: np.ndarray  # (k,) spread of each mode over the portraits (mm)
    open_dir: np.ndarray  # (468 * 3,) how the face moves per mm of lip gap (the jaw opening, a smile's teeth)
    gap_closed: float  # lip gap (mm) of a closed mouth
    digest: str  # content hash of the arrays above

    def closed(self, shape: np.ndarray) -> np.ndarray:
        """The shape with its mouth closed: a lip gap is expression, not who the face is."""
        return shape - (float(gap_mm(shape)) - self.gap_closed) * self.open_dir.reshape(-1, 3)

    @property
    def k(self) -> int:
        return len(self.sd)

    def code(self, shape: np.ndarray) -> np.ndarray:
        """Whitened code z of a canonical-frame shape (468, 3)."""
        return (self.basis @ (np.asarray(shape, np.float64).ravel() - self.mean)) / self.sd

    def shape(self, z: np.ndarray) -> np.ndarray:
        """S(z): the canonical-frame shape (468, 3) of a code."""
        return (self.mean + (np.asarray(z, np.float64) * self.sd) @ self.basis).reshape(-1, 3)

    def displacement(self, dz: np.ndarray) -> np.ndarray:
        """The shape change (468, 3) of a code change dz."""
        return ((np.asarray(dz, np.float64) * self.sd) @ self.basis).reshape(-1, 3)


def fit(shapes: np.ndarray, k: int = COMPONENTS) -> dict:
    """PCA of canonical-frame shapes (N, 468, 3); deterministic (SVD, each mode's sign fixed)."""
    shapes = np.asarray(shapes, np.float64)
    # the portraits' lip gaps (closed to a toothy smile) move the jaw and lips together: that
    # direction is regressed out, so the modes hold face shape and a fit can close an open mouth
    gap = gap_mm(shapes)
    x = shapes.reshape(len(shapes), -1)
    gc = gap - gap.mean()
    open_dir = (x - x.mean(0)).T @ gc / max(float(gc @ gc), 1e-9)
    gap_closed = float(np.percentile(gap, 10))
    x = x - np.outer(gap - gap_closed, open_dir)
    mean = x.mean(0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(k, len(s) - 1)
    vt = vt[:k]
    sign = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    vt = vt * sign[:, None]
    sd = s[:k] / np.sqrt(max(len(x) - 1, 1))
    kept = float((s[:k] ** 2).sum() / (s ** 2).sum())
    return {"mean": mean.astype(np.float32), "basis": vt.astype(np.float32), "sd": sd.astype(np.float32),
            "open_dir": open_dir.astype(np.float32), "gap_closed": np.float32(gap_closed), "variance_kept": kept}


def fit_ict(mean: np.ndarray, modes: np.ndarray, k: int = COMPONENTS, samples: int = 6000, seed: int = 0) -> dict:
    """Identity modes from ICT-FaceKit's scans (tools/build/register_ict_facekit.py) instead of the
    portraits' FaceMesh: faces drawn around the portraits' `mean` (468 * 3,) with ICT's weights ~ N(0, 1)
    on `modes` (M, 468, 3; mm), each similarity-aligned to the canonical face as a portrait is (so that
    S(z) stays in the canonical frame: a fit gives it back within a millimetre), then PCA about `mean`. Deterministic.
    -> {"basis", "sd", "variance_kept"}."""
    mean = np.asarray(mean, np.float64).reshape(-1, 3)
    w = np.random.default_rng(seed).normal(0.0, 1.0, (samples, len(modes)))
    faces = mean[None] + np.tensordot(w, np.asarray(modes, np.float64), 1)
    # Umeyama similarity of every face onto the canonical face at once
    canon = mh.canonical()
    fc, cc = faces - faces.mean(1, keepdims=True), canon - canon.mean(0)
    u, sig, vt = np.linalg.svd(np.einsum("ni,snj->sij", cc, fc))
    d = np.ones((samples, 3))
    d[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rot = np.einsum("sij,sj,sjk->sik", u, d, vt)
    scale = (sig * d).sum(1) / (fc ** 2).sum((1, 2))
    aligned = scale[:, None, None] * np.einsum("sij,snj->sni", rot, fc) + canon.mean(0)
    _, s, vt = np.linalg.svd(aligned.reshape(samples, -1) - mean.ravel(), full_matrices=False)
    k = min(k, len(s) - 1)
    vt = vt[:k] * np.sign(vt[np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])[:, None]
    return {"basis": vt.astype(np.float32), "sd": (s[:k] / np.sqrt(samples - 1)).astype(np.float32),
            "variance_kept": float((s[:k] ** 2).sum() / (s ** 2).sum())}


def digest(arrays: dict) -> str:
    """Content hash over the model's arrays (dtype, shape, bytes) in a fixed order."""
    return model_file.digest(arrays, ARRAYS)


def save(arrays: dict, path, meta: dict) -> str:
    """Write the model as an .npz whose bytes depend on its contents only (fixed zip dates)."""
    return model_file.save(arrays, ARRAYS, path, meta)


def load(path=None) -> FaceShape:
    arrays, stored = model_file.load(ARRAYS, path, "face_shape.npz", "face shape model")
    return FaceShape(mean=arrays["mean"].astype(np.float64), basis=arrays["basis"].astype(np.float64),
                     sd=arrays["sd"].astype(np.float64), open_dir=arrays["open_dir"].astype(np.float64),
                     gap_closed=float(arrays["gap_closed"]), digest=stored)


@functools.lru_cache(maxsize=1)
def default_shape() -> FaceShape:
    return load()
