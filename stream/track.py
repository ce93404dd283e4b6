"""Face tracking: Kalman filters with SORT-style association.

A track lives through short detector misses: its predicted box is still
processed (or obfuscated), so a face the detector loses for a frame or two is
never written raw. Track ids are small integers in order of appearance, stable
for a track's life. Each new track draws its seed from the run's generator.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ideud.models.geometry import iou_matrix, match
from ideud.stream.types import Face, Track


def _box_to_z(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w * h, w / max(h, 1e-6)]).reshape(4, 1)


def _x_to_box(x: np.ndarray) -> np.ndarray:
    area, ratio = max(float(x[2]), 1e-6), float(x[3])
    w = np.sqrt(area * ratio)
    h = area / max(w, 1e-6)
    return np.array([x[0] - w / 2, x[1] - h / 2, x[0] + w / 2, x[1] + h / 2], dtype=float).ravel()


def _constant_velocity() -> tuple:
    """(F, H, R, Q) of the box filter: state (cx, cy, area, aspect, their rates but the aspect's),
    the measurement the first four; the area and aspect measured 10x noisier, the rates 100x
    steadier than the position (SORT's choices; read-only)."""
    f = np.eye(7)
    f[0, 4] = f[1, 5] = f[2, 6] = 1
    h = np.eye(4, 7)
    r = np.eye(4)
    r[2:, 2:] *= 10.0
    q = np.eye(7)
    q[-1, -1] *= 0.01
    q[4:, 4:] *= 0.01
    for m in (f, h, r, q):
        m.flags.writeable = False
    return f, h, r, q


class _BoxFilter:
    """Constant-velocity Kalman filter on (cx, cy, area, aspect) and their rates, as in SORT.

    The textbook linear filter (predict x = Fx, P = FPF' + Q; update with the Joseph form
    P = (I - KH)P(I - KH)' + KRK'), written here rather than taken from filterpy: importing
    filterpy's package imports scipy.stats, ~0.5 s of every run's start for 30 lines of algebra
    (tests/test_track.py checks these numbers against filterpy's KalmanFilter, bit for bit)."""

    F, H, R, Q = _constant_velocity()

    def __init__(self, box: np.ndarray):
        self.P = np.eye(7)
        self.P[4:, 4:] *= 1000.0  # unknown initial velocity
        self.P *= 10.0
        self.x = np.zeros((7, 1))
        self.x[:4] = _box_to_z(box)

    def predict(self) -> np.ndarray:
        if self.x[6] + self.x[2] <= 0:
            self.x[6] = 0
        self.x = np.dot(self.F, self.x)
        self.P = np.dot(np.dot(self.F, self.P), self.F.T) + self.Q
        return _x_to_box(self.x[:, 0])

    def update(self, box: np.ndarray) -> None:
        y = _box_to_z(box) - np.dot(self.H, self.x)
        pht = np.dot(self.P, self.H.T)
        gain = np.dot(pht, np.linalg.inv(np.dot(self.H, pht) + self.R))
        self.x = self.x + np.dot(gain, y)
        i_kh = np.eye(7) - np.dot(gain, self.H)
        self.P = np.dot(np.dot(i_kh, self.P), i_kh.T) + np.dot(np.dot(gain, self.R), gain.T)

    @property
    def box(self) -> np.ndarray:
        return _x_to_box(self.x[:, 0])


class Tracker:
    """Associates detections to tracks every frame; returns the live tracks.

    `max_misses` frames without a detection keep a track alive at its
    predicted place (measured tracks, e.g. by the face mesh, reset it).

    `seed_for(track_id, frame_index, box)`, when given, is asked for a new
    track's seed before the run's generator: a segmented batch run uses it to
    hand a track the seed of the global (stitched) track it belongs to.
    Returning None draws from the generator as usual.
    """

    def __init__(self, max_misses: int = 12, iou_threshold: float = 0.2, seed_rng: Optional[np.random.Generator] = None,
                 seed_for: Optional[Callable[[int, int, np.ndarray], Optional[int]]] = None):
        self.max_misses = max_misses
        self.iou_threshold = iou_threshold
        self._rng = seed_rng or np.random.default_rng()
        self.seed_for = seed_for
        self._filters: dict[int, _BoxFilter] = {}
        self.tracks: dict[int, Track] = {}
        self.finished: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (e.g. after a gap in a live source)."""
        self.finished.extend(self.tracks.values())
        self.tracks.clear()
        self._filters.clear()

    def update(self, faces: list[Face], frame_index: int) -> list[tuple[Track, Optional[Face]]]:
        """One frame: predict, associate, spawn, expire. Returns (track, its detection or None)."""
        ids = list(self.tracks)
        predicted = np.array([self._filters[i].predict() for i in ids]).reshape(-1, 4)
        boxes = np.array([f.box for f in faces], dtype=float).reshape(-1, 4)
        iou = iou_matrix(predicted, boxes)
        matched = {ids[r]: c for r, c in match(iou, self.iou_threshold)}
        out = []
        for i, tid in enumerate(ids):
            tr = self.tracks[tid]
            if tid in matched:
                face = faces[matched[tid]]
                self._filters[tid].update(face.box)
                tr.box = face.box.astype(float).copy()
                tr.misses = 0
            else:
                face = None
                tr.misses += 1
                tr.box = predicted[i]
            if tr.misses > self.max_misses:
                self.finished.append(self.tracks.pop(tid))
                del self._filters[tid]
                continue
            tr.last_frame = frame_index
            out.append((tr, face))
        taken = set(matched.values())
        for j, face in enumerate(faces):
            if j in taken:
                continue
            tid = self._next_id
            self._next_id += 1
            seed = self.seed_for(tid, frame_index, face.box) if self.seed_for is not None else None
            if seed is None:
                seed = int(self._rng.integers(0, 2**63 - 1))
            tr = Track(id=tid, seed=int(seed), box=face.box.astype(float).copy(),
                       first_frame=frame_index, last_frame=frame_index)
            self.tracks[tid] = tr
            self._filters[tid] = _BoxFilter(face.box)
            out.append((tr, face))
        return out

    def measured(self, track_id: int, box: np.ndarray) -> None:
        """A measurement other than the detector (the face mesh) found the face here."""
        if track_id in self.tracks:
            self._filters[track_id].update(box)
            tr = self.tracks[track_id]
            tr.box = np.asarray(box, float).copy()
            tr.misses = 0
