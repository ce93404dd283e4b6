"""Step I: split each face into camera, appearance and ID codes; perturb the ID.

Per track:
- landmarks are smoothed over time (One-Euro filter) so the output does not
  shimmer;
- the camera code (s, R, t) is fitted per frame against the canonical face;
- the ID code z_id is fitted robustly (median over good frames: near-frontal,
  mouth closed) and frozen once enough frames are seen;
- the perturbation n ~ N(0, sigma^2) comes from the track's seed and is fixed
  for the track's life; z'_id = clip(z_id + n, -1, 1);
- the identity delta is applied in the canonical 3D frame and re-posed with
  each frame's camera code, so a head turn shows the same fake 3D face.

The real z_id never leaves this module's per-track state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ideud.models import facemesh as fm
from ideud.models import meshhead as mh
from ideud.stream.types import Codes, Rendering

# frames whose pose is further from frontal than this do not feed the ID fit
FIT_MAX_YAW, FIT_MAX_PITCH = 25.0, 20.0
FIT_FRAMES = 15  # the ID code is frozen after this many good frames
MOUTH_OPEN_MAX = 0.08  # lip gap / face height above which a frame does not feed the ID fit


class OneEuro:
    """One-Euro filter (Casiez et al. 2012) on an array, cut-offs in units of `norm`/s."""

    def __init__(self, min_cutoff: float = 1.5, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: Optional[np.ndarray] = None
        self.dx: Optional[np.ndarray] = None
        self.t: Optional[float] = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, norm: float = 1.0) -> np.ndarray:
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt / norm
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = self._alpha(cutoff, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x

    def reset(self):
        self.x = self.dx = self.t = None


def perturbation(seed: int, sigma: float, k: int = mh.K) -> np.ndarray:
    """The track's noise vector n: a pure function of (seed, sigma)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, k) * sigma


@dataclass
class _TrackState:
    seed: int
    noise: np.ndarray
    # beta 4 (speed in face sizes/s): a face moving a fiftieth of its size a frame trails by ~1 px
    # instead of ~7 at 0.05 (tools/bench/bench_footage.py); still faces are held, not smoothed
    smoother: OneEuro = field(default_factory=lambda: OneEuro(beta=4.0))
    samples: list = field(default_factory=list)  # measurements (mm) of good frames
    z: Optional[np.ndarray] = None  # real ID code: in memory only
    frozen: bool = False
    delta: Optional[np.ndarray] = None  # canonical displacement for z' - z

    def z_perturbed(self) -> np.ndarray:
        return np.clip(self.z + self.noise, -1.0, 1.0)


class IdentityStage:
    """Holds each track's identity state; one call per face per frame."""

    def __init__(self, sigma: float = 0.25, smooth: bool = True):
        self.sigma = sigma
        self.smooth = smooth
        self.basis = mh.identity_basis()
        self._tracks: dict[int, _TrackState] = {}

    def noise_of(self, track_id: int) -> Optional[np.ndarray]:
        st = self._tracks.get(track_id)
        return None if st is None else st.noise

    def set_noise(self, track_id: int, noise: np.ndarray) -> None:
        """Replace a track's perturbation (the privacy guard escalates through this)."""
        st = self._tracks[track_id]
        st.noise = np.asarray(noise, float)
        if st.z is not None:
            st.delta = self.basis.displacement(st.z_perturbed() - st.z)

    def target(self, track_id: int, rendering: Rendering) -> np.ndarray:
        """`rendering.target` again, under the track's current noise (the guard re-renders with it)."""
        st, c = self._tracks[track_id], rendering.codes
        return (rendering.landmarks + c.scale * st.delta @ c.rotation.T)[:, :2]

    def is_frozen(self, track_id: int) -> bool:
        st = self._tracks.get(track_id)
        return bool(st is not None and st.frozen)

    def drop(self, track_id: int) -> None:
        """Forget a finished track, including its real ID code."""
        self._tracks.pop(track_id, None)

    def process(self, track_id: int, seed: int, landmarks: np.ndarray, t: float) -> Rendering:
        st = self._tracks.get(track_id)
        if st is None:
            st = self._tracks[track_id] = _TrackState(seed, perturbation(seed, self.sigma))
        face_size = float(np.ptp(landmarks[:, 1])) or 1.0
        lm = st.smoother(landmarks, t, norm=face_size) if self.smooth else landmarks

        s, r, tr, shape = mh.to_canonical(lm)
        yaw, pitch, _ = mh.rotation_angles(r)
        self._update_code(st, shape, yaw, pitch)

        # appearance code: what the identity model does not explain in this frame
        identity_shape = self.basis.canonical + self.basis.displacement(st.z)
        expression = shape - identity_shape
        target3 = lm + s * st.delta @ r.T
        facing = (self.basis.normals @ r.T)[:, 2] < -0.05
        codes = Codes(rotation=r, scale=s, translation=tr, expression=expression, id_perturbed=st.z_perturbed())
        return Rendering(lm, target3[:, :2], facing, codes, yaw, pitch)

    def _update_code(self, st: _TrackState, shape: np.ndarray, yaw: float, pitch: float) -> None:
        if st.frozen:
            return
        gap = abs(shape[fm.LOWER_LIP_INNER, 1] - shape[fm.UPPER_LIP_INNER, 1])
        good = abs(yaw) <= FIT_MAX_YAW and abs(pitch) <= FIT_MAX_PITCH and gap / np.ptp(shape[:, 1]) <= MOUTH_OPEN_MAX
        m = self.basis.measure(shape)
        if good:
            st.samples.append(m)
        z = (np.median(st.samples or [m], axis=0) - self.basis.mean) / self.basis.unit
        st.z = z
        st.delta = self.basis.displacement(st.z_perturbed() - z)
        if good and len(st.samples) >= FIT_FRAMES:
            st.frozen = True
            st.samples.clear()
