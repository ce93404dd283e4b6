"""The mesh head: a canonical 3D face and an explainable identity basis.

The parametric model of Step I, built on MediaPipe's 468-vertex topology:

    X = s R (C + B z_id + E) + t

- C (468x3, millimetres) is the canonical (mean) face, built from
  FaceMesh fits of frontal faces (`tools/build_canonical.py`);
- z_id (K) is the ID code: each component moves one anthropometric
  measurement; z = 0 is the population mean, z = +-1 is +-3 standard
  deviations (adult norms after Farkas, 1994; see `COMPONENTS`);
- B (K x 468 x 3) holds, per component, a smooth displacement field of the
  canonical face that changes that measurement by 1 mm;
- E (468x3) is the appearance (expression) residual of one frame;
- s, R, t are the camera code (weak perspective, as FaceMesh outputs).

Faces are x to the subject's left (image right when frontal), y down, z away
from the camera, the same handedness as FaceMesh's pixel coordinates.

The identity stage (stream/identity.py) no longer perturbs these 12 components: it replaces the
whole shape with a draw from the learned model (models/face_shape.py), which the canonical face,
`to_canonical` and the geometry here still serve. The components stay as named, explainable
measurements of a shape (`IdentityBasis.code`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Callable

import numpy as np

from ideud.models import facemesh as fm
from ideud.models.geometry import similarity_fit  # noqa: F401  (callers use meshhead.similarity_fit)

BIOCULAR_MM = 90.0  # ex-ex (outer eye corners) sets the canonical scale


# --------------------------------------------------------------------------- geometry

def rotation_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a canonical->camera rotation."""
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return float(yaw), float(pitch), float(roll)


@functools.lru_cache(maxsize=1)
def triangles() -> np.ndarray:
    """Mesh triangles (T, 3) recovered from MediaPipe's tesselation edge table."""
    adj: dict[int, set] = {}
    for a, b in fm.TESSELATION_EDGES:
        adj.setdefault(int(a), set()).add(int(b))
        adj.setdefault(int(b), set()).add(int(a))
    tris = set()
    for a, nb in adj.items():
        for b in nb:
            if b <= a:
                continue
            for c in nb & adj[b]:
                if c > b:
                    tris.add((a, b, c))
    return np.array(sorted(tris), dtype=np.int32)


def vertex_normals(points: np.ndarray) -> np.ndarray:
    """Unit normals of the canonical mesh, oriented towards the camera (-z)."""
    tri = triangles()
    p0, p1, p2 = points[tri[:, 0]], points[tri[:, 1]], points[tri[:, 2]]
    fn = np.cross(p1 - p0, p2 - p0)
    # clique triangles have no consistent winding: orient every face to -z side
    fn *= np.where(fn[:, 2] > 0, -1.0, 1.0)[:, None]
    vn = np.zeros_like(points)
    for k in range(3):
        np.add.at(vn, tri[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-9)


@functools.lru_cache(maxsize=1)
def canonical() -> np.ndarray:
    with resources.files("ideud.models").joinpath("data/canonical_face.npy").open("rb") as f:
        return np.load(f).astype(np.float64)


# --------------------------------------------------------------------------- identity basis

def _smooth_weight(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    d2 = ((points - centre) ** 2).sum(1)
    return np.exp(-d2 / (2.0 * radius ** 2))


def _ramp(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _mid(x: np.ndarray, i: int, j: int) -> np.ndarray:
    return (x[i] + x[j]) / 2


def _eye_centre(x, ring):
    return x[ring].mean(0)


# alar (nose wing) vertices, gonion (jaw angle) vertices and brow tops of the topology
ALA_RIGHT, ALA_LEFT = 129, 358
GONION_RIGHT, GONION_LEFT = 172, 397
BROW_RIGHT, BROW_LEFT = 105, 334
EYE_TOP_RIGHT, EYE_TOP_LEFT = 159, 386


def _dist(x, i, j, axis=None):
    d = x[i] - x[j]
    return float(abs(d[axis])) if axis is not None else float(np.linalg.norm(d))


@dataclass(frozen=True)
class Component:
    """One explainable identity dimension."""

    name: str
    description: str
    mean_mm: float  # adult population mean of the measurement (Farkas)
    sd_mm: float  # its standard deviation
    measure: Callable[[np.ndarray], float]  # measurement on a canonical-frame shape (mm)
    field: Callable[[np.ndarray], np.ndarray]  # raw displacement field on the canonical face


def _field_eye_spacing(c):
    w = np.maximum(_smooth_weight(c, _eye_centre(c, fm.LEFT_EYE), 11), _smooth_weight(c, _eye_centre(c, fm.RIGHT_EYE), 11))
    d = np.zeros_like(c)
    d[:, 0] = np.sign(c[:, 0] - c[fm.NASION, 0]) * w
    return d


def _field_eye_size(c):
    # scale about the inner corner, so the eyes grow outwards and en-en stays
    d = np.zeros_like(c)
    for ring, inner in ((fm.LEFT_EYE, fm.LEFT_EYE_INNER), (fm.RIGHT_EYE, fm.RIGHT_EYE_INNER)):
        w = _smooth_weight(c, _eye_centre(c, ring), 9)
        d[:, :2] += (c[:, :2] - c[inner, :2]) * w[:, None]
    return d


def _field_local_scale(centres_fn, radius, axes):
    def field(c):
        d = np.zeros_like(c)
        for centre in centres_fn(c):
            w = _smooth_weight(c, centre, radius)
            for ax in axes:
                d[:, ax] += (c[:, ax] - centre[ax]) * w
        return d
    return field


def _field_translate(centres_fn, radius, direction):
    def field(c):
        d = np.zeros_like(c)
        for centre in centres_fn(c):
            d += np.outer(_smooth_weight(c, centre, radius), direction)
        return d
    return field


def _field_nose_length(c):
    # the lower nose moves down; below the subnasale the effect dies within ~4 mm (the lip stays)
    w = _smooth_weight(c, _mid(c, fm.NOSE_TIP, fm.SUBNASALE), 12)
    below = np.clip(c[:, 1] - c[fm.SUBNASALE, 1], 0, None)
    d = np.zeros_like(c)
    d[:, 1] = w * np.exp(-(below / 3.0) ** 2)
    return d


def _field_lips(c):
    # scale the lips' height about the stomion; fades within ~4 mm past the vermilion borders
    sto = _mid(c, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER)
    dy = c[:, 1] - sto[1]
    reach = np.where(dy < 0, sto[1] - c[fm.UPPER_LIP_TOP, 1], c[fm.LOWER_LIP_BOTTOM, 1] - sto[1])
    beyond = np.clip(np.abs(dy) - reach, 0, None)
    across = np.exp(-((c[:, 0] - sto[0]) / 22.0) ** 2)
    d = np.zeros_like(c)
    d[:, 1] = dy * across * np.exp(-(beyond / 3.0) ** 2)
    return d


def _field_chin(c):
    sto = _mid(c, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER)[1]
    d = np.zeros_like(c)
    d[:, 1] = _ramp(c[:, 1], sto, c[fm.CHIN, 1])
    return d


def _field_face_length(c):
    # stretch nasion..stomion linearly; everything below moves down with the mouth
    top, sto = c[fm.NASION, 1], _mid(c, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER)[1]
    d = np.zeros_like(c)
    d[:, 1] = np.clip((c[:, 1] - top) / (sto - top), 0.0, 1.0)
    return d


def _field_jaw(c):
    mid_x = c[fm.NOSE_TIP, 0]
    w = np.maximum(_smooth_weight(c, c[GONION_LEFT], 24), _smooth_weight(c, c[GONION_RIGHT], 24))
    d = np.zeros_like(c)
    d[:, 0] = (c[:, 0] - mid_x) * w
    return d


def _field_cheeks(c):
    mid_x = c[fm.NOSE_TIP, 0]
    w = np.maximum(_smooth_weight(c, c[fm.LEFT_CHEEK], 22), _smooth_weight(c, c[fm.RIGHT_CHEEK], 22))
    d = np.zeros_like(c)
    d[:, 0] = (c[:, 0] - mid_x) * w
    return d


def _lower_nose(c):
    return [_mid(c, fm.NOSE_TIP, fm.SUBNASALE)]


def _mouth(c):
    return [_mid(c, fm.MOUTH_LEFT, fm.MOUTH_RIGHT)]


COMPONENTS: tuple[Component, ...] = (
    Component("eye_spacing", "intercanthal width en-en (inner eye corners)", 31.5, 2.5,
              lambda x: _dist(x, fm.LEFT_EYE_INNER, fm.RIGHT_EYE_INNER, 0), _field_eye_spacing),
    Component("eye_size", "palpebral fissure length ex-en, mean of both eyes (eye opening scales with it)", 30.5, 1.6,
              lambda x: (_dist(x, fm.RIGHT_EYE_OUTER, fm.RIGHT_EYE_INNER) + _dist(x, fm.LEFT_EYE_OUTER, fm.LEFT_EYE_INNER)) / 2,
              _field_eye_size),
    Component("nose_width", "alar width al-al", 33.5, 3.0,
              lambda x: _dist(x, ALA_LEFT, ALA_RIGHT, 0), _field_local_scale(_lower_nose, 11, (0,))),
    Component("nose_length", "nose height n-sn (nasion to subnasale)", 52.0, 4.0,
              lambda x: _dist(x, fm.SUBNASALE, fm.NASION, 1), _field_nose_length),
    Component("nose_bridge", "nasal tip protrusion sn-prn (depth of the nose)", 20.0, 2.0,
              lambda x: _dist(x, fm.SUBNASALE, fm.NOSE_TIP, 2), _field_translate(lambda c: [c[fm.NOSE_TIP]], 11, np.array([0.0, 0.0, -1.0]))),
    Component("mouth_width", "mouth width ch-ch (mouth corners)", 50.0, 3.5,
              lambda x: _dist(x, fm.MOUTH_LEFT, fm.MOUTH_RIGHT, 0), _field_local_scale(_mouth, 16, (0,))),
    Component("lip_thickness", "vermilion height, upper + lower lip", 17.5, 3.0,
              lambda x: _dist(x, fm.UPPER_LIP_TOP, fm.UPPER_LIP_INNER, 1) + _dist(x, fm.LOWER_LIP_INNER, fm.LOWER_LIP_BOTTOM, 1),
              _field_lips),
    Component("jaw_width", "bigonial width go-go (jaw angles)", 98.0, 7.0,
              lambda x: _dist(x, GONION_LEFT, GONION_RIGHT, 0), _field_jaw),
    Component("chin_length", "lower-face height sto-gn (mouth to chin)", 45.0, 4.0,
              lambda x: float(x[fm.CHIN, 1] - _mid(x, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER)[1]), _field_chin),
    Component("cheek_width", "bizygomatic width zy-zy (cheekbones)", 130.0, 6.0,
              lambda x: _dist(x, fm.LEFT_CHEEK, fm.RIGHT_CHEEK, 0), _field_cheeks),
    Component("brow_height", "brow-to-eye height (upper eyelid to brow), mean of both sides", 20.0, 3.0,
              lambda x: (_dist(x, BROW_LEFT, EYE_TOP_LEFT, 1) + _dist(x, BROW_RIGHT, EYE_TOP_RIGHT, 1)) / 2,
              _field_translate(lambda c: [c[BROW_LEFT], c[BROW_RIGHT]], 10, np.array([0.0, -1.0, 0.0]))),
    Component("face_length", "upper face height n-sto (nasion to mouth; the chin is its own component)", 72.0, 4.5,
              lambda x: float(_mid(x, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER)[1] - x[fm.NASION, 1]), _field_face_length),
)
K = len(COMPONENTS)
Z_RANGE_SD = 3.0  # z = +-1 means +-3 SD


@dataclass(frozen=True)
class IdentityBasis:
    canonical: np.ndarray  # (468, 3)
    basis: np.ndarray  # (K, 468, 3) displacement per +1 mm of each measurement
    mean: np.ndarray  # (K,) measurement of the canonical face (mm)
    unit: np.ndarray  # (K,) mm per unit of z (Z_RANGE_SD population SDs)
    normals: np.ndarray  # (468, 3) canonical vertex normals

    def measure(self, shape: np.ndarray) -> np.ndarray:
        return np.array([c.measure(shape) for c in COMPONENTS])

    def code(self, shape: np.ndarray) -> np.ndarray:
        """ID code z of a canonical-frame shape, unclipped."""
        return (self.measure(shape) - self.mean) / self.unit

    def displacement(self, dz: np.ndarray) -> np.ndarray:
        """Canonical-frame displacement (468, 3) for a change dz of the ID code."""
        return np.tensordot(dz * self.unit, self.basis, axes=1)


@functools.lru_cache(maxsize=1)
def identity_basis() -> IdentityBasis:
    c = canonical()
    fields, means, units = [], [], []
    for comp in COMPONENTS:
        raw = comp.field(c)
        m0 = comp.measure(c)
        eps = 0.05
        gain = (comp.measure(c + eps * raw) - m0) / eps
        if abs(gain) < 1e-6:
            raise RuntimeError(f"identity component {comp.name} does not move its measurement")
        fields.append(raw / gain)
        means.append(m0)
        # norms are for real faces in mm; the canonical face is scaled to a mean biocular width
        units.append(Z_RANGE_SD * comp.sd_mm * (m0 / comp.mean_mm))
    return IdentityBasis(c, np.stack(fields), np.array(means), np.array(units), vertex_normals(c))


def to_canonical(points: np.ndarray, weights: np.ndarray | None = None):
    """Camera code of one frame's landmarks and the shape in the canonical frame."""
    c = canonical()
    s, r, t = similarity_fit(c, points, weights)
    shape = (points - t) @ r / s
    return s, r, t, shape
