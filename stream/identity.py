"""Step I: split each face into camera, appearance and ID codes; replace the ID's shape.

Per track:
- landmarks are smoothed over time (One-Euro filter) so the output does not
  shimmer;
- the camera code (s, R, t) is fitted per frame against the canonical face;
- the person's neutral shape (canonical frame, mm) is fitted robustly (median over
  good frames: near-frontal, mouth closed) and frozen once enough frames are seen;
  z_person is its code under the learned shape model (models/face_shape.py);
- the person's shape is thrown away, not nudged: z_new is one of CANDIDATES shapes
  drawn from the model (at SPREAD times its spread) with the track's noise (a pure
  function of the seed), the one whose inner outline (eyes, brows, nose, lips, aligned
  as a recogniser aligns) differs most from the person's. The frame's target is
  landmarks - neutral(person) + S(z_target)   in the canonical frame, re-posed with
  each frame's camera code: pose and expression stay, the face shape (width, length,
  eye spacing and size, brows, nose, mouth, lips, outline) is the new one;
- the lip gap is expression: the neutral is fitted with the mouth closed (the model's
  opening direction), the change moves both inner lip lines alike and takes only part
  of the new lips' height; where the change would turn a front-facing triangle over
  (a fold no restorer hides) the lips keep their height, then the change shrinks;
- sigma (`--scale`) is how far the shape goes: w = sigma / SIGMA_FULL; below 1 the
  neutral is blended from the person's toward S(z_new) (0: the person's own), at 1
  it is S(z_new), above 1 (the guard's escalation) it goes on past z_new, away from
  the person, within the model's plausible range;
- one pick per track: the candidate is chosen at the first fit and kept (per noise
  vector), so the fake does not jump while the fit settles; `pick_of`/`preset_pick`
  let a segmented batch run carry it.

The real neutral shape and code never leave this module's per-track state.
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from ideud.models import face_prior as fp_parts
from ideud.models import face_shape as fsh
from ideud.models import meshhead as mh
from ideud.stream.types import Codes, Rendering

FIT_FRAMES = 15  # the ID fit is frozen after this many good frames
SIGMA_FULL = 0.25  # at this sigma (the default --scale) the person's shape is wholly replaced
CANDIDATES = 64  # seeded shapes a track's new shape is picked from
# their spread in model SDs: a less typical face is further from everybody, the person included
# (20 held-out portraits, dlib mean: 1.3 -> 0.681, 1.6 -> 0.690); 1.5 still looks like somebody
SPREAD = 1.5
LIP_HEIGHT_SHARE = 0.35  # of the new face's lip height change taken (_mouth_kept)
INNER_PARTS = (fp_parts.R_EYE[0], fp_parts.R_EYE[1], fp_parts.L_EYE[0], fp_parts.L_EYE[1], fp_parts.R_BROW[0],
               fp_parts.R_BROW[1], fp_parts.L_BROW[0], fp_parts.L_BROW[1], fp_parts.LIPS[0], fp_parts.LIPS[1],
               fp_parts.NOSTRILS, (1, 4, 5, 6, 168, 197))
BLINK_FROM = 0.7  # lids below this share of their own opening start to meet as the person's do
FOLD_SHRINK = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)  # shares of the change tried until the mesh does not fold


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


def perturbation(seed: int, sigma: float, k: int = fsh.COMPONENTS) -> np.ndarray:
    """The track's noise vector n: a pure function of (seed, sigma).

    A random direction with rms exactly sigma: its length carries sigma (how far the shape goes),
    its direction seeds the candidate shapes. Nothing in it is measured from a face.
    """
    g = np.random.default_rng(seed).normal(0.0, 1.0, k)
    return g / max(float(np.sqrt(np.mean(g * g))), 1e-12) * sigma


def _noise_key(noise: np.ndarray) -> tuple[float, bytes]:
    """(sigma, key of the direction) of a noise vector; the key seeds its candidate shapes."""
    sigma = float(np.sqrt(np.mean(np.square(noise)))) if len(noise) else 0.0
    if sigma <= 1e-9:
        return 0.0, b""
    u = np.round(np.asarray(noise, np.float64) / sigma, 6) + 0.0  # + 0.0: no negative zeros
    return sigma, hashlib.sha256(u.tobytes()).digest()


def candidate_codes(noise: np.ndarray, k: int, count: int = CANDIDATES) -> np.ndarray:
    """(count, k) shape codes drawn from the model's prior, seeded by the noise vector's direction."""
    _, key = _noise_key(noise)
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    return np.clip(rng.normal(0.0, SPREAD, (count, k)), -fsh.Z_MAX, fsh.Z_MAX)


@functools.lru_cache(maxsize=1)
def _front_triangles() -> np.ndarray:
    """Triangles that face the camera on the mean face (sides seen edge-on flip with any noise)."""
    tri = mh.triangles()
    model = fsh.default_shape()
    mean = model.shape(np.zeros(model.k))
    p0, p1, p2 = mean[tri[:, 0]], mean[tri[:, 1]], mean[tri[:, 2]]
    n = np.cross(p1 - p0, p2 - p0)
    return tri[np.abs(n[:, 2]) > 0.5 * np.linalg.norm(n, axis=1)]


def _areas(shape: np.ndarray, tri: np.ndarray) -> np.ndarray:
    p0, p1, p2 = shape[tri[:, 0], :2], shape[tri[:, 1], :2], shape[tri[:, 2], :2]
    d1, d2 = p1 - p0, p2 - p0
    return d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]


def folds(before: np.ndarray, after: np.ndarray) -> int:
    """Front-facing triangles a change of a canonical-frame shape turns over (seen from the front)."""
    tri = _front_triangles()
    a, b = _areas(before, tri), _areas(after, tri)
    return int(((np.sign(a) != np.sign(b)) & (np.abs(a) > 0.25) & (np.abs(b) > 0.25)).sum())  # mm^2: not slivers


@functools.lru_cache(maxsize=1)
def _inner_points() -> np.ndarray:
    """Eyes, brows, nose and lips: the inner outline a recogniser reads (after aligning on it)."""
    return np.array(sorted({int(i) for part in INNER_PARTS for i in part}))


def farthest_inner(model: fsh.FaceShape, neutral: np.ndarray, cands: np.ndarray) -> int:
    """Index of the candidate whose inner outline differs most from `neutral`'s, seen from the front
    after a similarity alignment on it (a recogniser aligns; a shift or a scale changes nobody)."""
    idx = _inner_points()
    a = neutral[idx, :2] - neutral[idx, :2].mean(0)
    a = a / np.sqrt((a ** 2).sum())
    # every candidate at once, and only the inner points' x and y (S(z) = mean + (z * sd) @ basis)
    cols = (idx[:, None] * 3 + np.arange(2)[None, :]).ravel()
    b = (model.mean[cols] + (np.asarray(cands, np.float64) * model.sd) @ model.basis[:, cols]).reshape(len(cands), -1, 2)
    b = b - b.mean(1, keepdims=True)
    b = b / np.sqrt((b ** 2).sum((1, 2), keepdims=True))
    # Procrustes: the residual after the best rotation and scale is 1 - (sum of singular values)^2
    sv = np.linalg.svd(np.einsum("pi,npj->nij", a, b), compute_uv=False)
    return int(np.argmax(1.0 - sv.sum(1) ** 2))  # the first of equals, as a loop would


@functools.lru_cache(maxsize=1)
def _lip_points() -> np.ndarray:
    """Vertices on and inside the outer lip line (the mean face's)."""
    model = fsh.default_shape()
    mean = model.shape(np.zeros(model.k))[:, :2].astype(np.float32)
    ring = list(fp_parts.LIPS[0]) + list(fp_parts.LIPS[1][::-1][1:-1])
    poly = mean[ring].reshape(-1, 1, 2)
    inside = [i for i in range(len(mean)) if cv2.pointPolygonTest(poly, tuple(map(float, mean[i])), False) >= 0]
    return np.array(sorted(set(inside) | set(ring)))


def _mouth_kept(change: np.ndarray, lip_height: float) -> np.ndarray:
    """A shape change with the mouth's opening and most of its lips' height left as they are.

    The lips' gap is expression, not identity: both inner lip lines move alike, so a closed mouth
    stays closed (a stretched lip line reads as a gaping mouth). The lips take `lip_height` of the
    new face's lip height change: thin closed lips drawn thick are painted as an open mouth. Mouth
    width and position and the lip line's curve do change.
    """
    change = change.copy()
    lips = _lip_points()
    dy = change[lips, 1]
    change[lips, 1] = dy.mean() + lip_height * (dy - dy.mean())
    upper, lower = list(fp_parts.INNER_LIPS[0][1:-1]), list(fp_parts.INNER_LIPS[1][1:-1])
    change[upper] = change[lower] = (change[upper] + change[lower]) / 2
    return change


@functools.lru_cache(maxsize=1)
def _lid_pairs() -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) eyelid vertices facing each other, both eyes (corners left out)."""
    up = [i for eye in (fp_parts.R_EYE, fp_parts.L_EYE) for i in eye[0][1:-1]]
    low = [i for eye in (fp_parts.R_EYE, fp_parts.L_EYE) for i in eye[1][1:-1]]
    return np.array(up), np.array(low)


def _blink_kept(st: "_TrackState", shape: np.ndarray) -> np.ndarray:
    """The track's change for a frame of canonical shape `shape`: as the eyes close, the change of
    the lids' opening fades, so closing lids meet as the person's do instead of crossing (a fold)."""
    up, low = _lid_pairs()
    own = st.neutral[low, 1] - st.neutral[up, 1]
    now = shape[low, 1] - shape[up, 1]
    open_share = np.clip(now / np.maximum(own, 1e-3) / BLINK_FROM, 0.0, 1.0)
    if open_share.min() >= 0.999:
        return st.delta
    d = st.delta.copy()
    mid = (d[up, 1] + d[low, 1]) / 2
    half = (d[low, 1] - d[up, 1]) / 2 * open_share
    d[up, 1], d[low, 1] = mid - half, mid + half
    return d


@dataclass
class _TrackState:
    seed: int
    noise: np.ndarray
    # beta 4 (speed in face sizes/s): a face moving a fiftieth of its size a frame trails by ~1 px
    # instead of ~7 at 0.05 (tools/bench/bench_footage.py); still faces are held, not smoothed
    smoother: OneEuro = field(default_factory=lambda: OneEuro(beta=4.0))
    samples: list = field(default_factory=list)  # canonical shapes of good frames
    neutral: Optional[np.ndarray] = None  # the person's own neutral shape: in memory only
    z: Optional[np.ndarray] = None  # its code (the real ID code): in memory only
    frozen: bool = False
    picks: dict = field(default_factory=dict)  # noise key -> index of the chosen candidate
    z_target: Optional[np.ndarray] = None  # the new face's shape code
    delta: Optional[np.ndarray] = None  # canonical displacement: new neutral - the person's
    share: float = 1.0  # of the change applied (less where the full change would fold the mesh)


class IdentityStage:
    """Holds each track's identity state; one call per face per frame."""

    def __init__(self, sigma: float = 0.25, smooth: bool = True, candidates: int = CANDIDATES):
        self.sigma = sigma
        self.smooth = smooth
        self.candidates = int(candidates)
        self.model = fsh.default_shape()
        self.normals = mh.vertex_normals(mh.canonical())
        self._tracks: dict[int, _TrackState] = {}

    def noise_of(self, track_id: int) -> Optional[np.ndarray]:
        st = self._tracks.get(track_id)
        return None if st is None else st.noise

    def set_noise(self, track_id: int, noise: np.ndarray) -> None:
        """Replace a track's perturbation (the privacy guard escalates through this)."""
        st = self._tracks[track_id]
        st.noise = np.asarray(noise, float)
        if st.neutral is not None:
            self._update_delta(st)

    def picks_of(self, track_id: int) -> dict:
        """{noise key: candidate index} the track chose (indices of seeded draws, no measurement)."""
        st = self._tracks.get(track_id)
        return {} if st is None else {k.hex(): p for k, p in st.picks.items()}

    def pick_keys(self, track_id: int) -> set:
        """The noise keys whose shape pick the track has fixed (the guard takes back what its
        candidates started ahead of need fixed, `drop_picks`)."""
        st = self._tracks.get(track_id)
        return set() if st is None else set(st.picks)

    def drop_picks(self, track_id: int, keys) -> None:
        st = self._tracks.get(track_id)
        for key in keys if st is not None else ():
            st.picks.pop(key, None)

    def preset_picks(self, track_id: int, seed: int, picks: dict) -> None:
        """Take these choices for the track (a segment carrying an earlier segment's picks)."""
        st = self._tracks.get(track_id)
        if st is None:
            st = self._tracks[track_id] = _TrackState(seed, perturbation(seed, self.sigma))
        st.picks.update({bytes.fromhex(k): int(p) % self.candidates for k, p in picks.items()})

    def target(self, track_id: int, rendering: Rendering) -> np.ndarray:
        """`rendering.target` again, under the track's current noise (the guard re-renders with it)."""
        st, c = self._tracks[track_id], rendering.codes
        shape = (rendering.landmarks - c.translation) @ c.rotation / c.scale
        return (rendering.landmarks + c.scale * _blink_kept(st, shape) @ c.rotation.T)[:, :2]

    def is_frozen(self, track_id: int) -> bool:
        st = self._tracks.get(track_id)
        return bool(st is not None and st.frozen)

    def drop(self, track_id: int) -> None:
        """Forget a finished track, including its real shape and code."""
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

        # appearance code: what the person's neutral shape does not explain in this frame
        expression = shape - st.neutral
        target3 = lm + s * _blink_kept(st, shape) @ r.T
        facing = (self.normals @ r.T)[:, 2] < -0.05
        codes = Codes(rotation=r, scale=s, translation=tr, expression=expression, id_perturbed=st.z_target)
        return Rendering(lm, target3[:, :2], facing, codes, yaw, pitch)

    def _update_code(self, st: _TrackState, shape: np.ndarray, yaw: float, pitch: float) -> None:
        if st.frozen:
            return
        good = fsh.is_fit_frame(shape, yaw, pitch)
        closed = self.model.closed(shape)  # a smile's open lips are the frame's, not the person's
        if good:
            st.samples.append(closed)
        st.neutral = np.median(st.samples, axis=0) if st.samples else closed
        st.z = self.model.code(st.neutral)
        self._update_delta(st)
        if good and len(st.samples) >= FIT_FRAMES:
            st.frozen = True
            st.samples.clear()

    def _update_delta(self, st: _TrackState) -> None:
        sigma, key = _noise_key(st.noise)
        w = sigma / SIGMA_FULL
        if w <= 0.0:
            st.z_target, st.delta = st.z.copy(), np.zeros_like(st.neutral)
            return
        cands = candidate_codes(st.noise, self.model.k, self.candidates)
        pick = st.picks.get(key)
        if pick is None:  # the first fit chooses, once: the face that looks least like the person's
            pick = st.picks[key] = farthest_inner(self.model, st.neutral, cands)
        z_new = cands[pick]
        if w <= 1.0:
            st.z_target = st.z + w * (z_new - st.z)
            goal = st.neutral + w * (self.model.shape(z_new) - st.neutral)
        else:  # past the new face, away from the person's, kept plausible
            st.z_target = np.clip(z_new + (w - 1.0) * (z_new - st.z), -fsh.Z_MAX, fsh.Z_MAX)
            goal = self.model.shape(st.z_target)
        change = goal - st.neutral
        # a fold (the nose base pushed into the lip, a lip line through the next) is a contour no
        # restorer hides: the lips keep their own height, then the whole change shrinks, until none
        tries = [(_mouth_kept(change, LIP_HEIGHT_SHARE), 1.0)]
        tries += [(_mouth_kept(change, 0.0), share) for share in FOLD_SHRINK]
        for kept, share in tries:
            if share == 0.0 or folds(st.neutral, st.neutral + share * kept) == 0:
                break
        st.delta, st.share = share * kept, share
