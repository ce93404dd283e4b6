"""Face tracking: Kalman filters (filterpy) with SORT-style association.

A track lives through short detector misses: its predicted box is still
processed (or obfuscated), so a face the detector loses for a frame or two is
never written raw. Track ids are small integers in order of appearance, stable
for a track's life. Each new track draws its seed from the run's generator.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from filterpy.kalman import KalmanFilter

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


class _BoxFilter:
    """Constant-velocity Kalman filter on (cx, cy, area, aspect), as in SORT."""

    def __init__(self, box: np.ndarray):
        kf = KalmanFilter(dim_x=7, dim_z=4)
        kf.F = np.eye(7)
        kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1
        kf.H = np.zeros((4, 7))
        kf.H[:4, :4] = np.eye(4)
        kf.R[2:, 2:] *= 10.0
        kf.P[4:, 4:] *= 1000.0  # unknown initial velocity
        kf.P *= 10.0
        kf.Q[-1, -1] *= 0.01
        kf.Q[4:, 4:] *= 0.01
        kf.x[:4] = _box_to_z(box)
        self.kf = kf

    def predict(self) -> np.ndarray:
        if self.kf.x[6] + self.kf.x[2] <= 0:
            self.kf.x[6] = 0
        self.kf.predict()
        return _x_to_box(self.kf.x[:, 0])

    def update(self, box: np.ndarray) -> None:
        self.kf.update(_box_to_z(box))

    @property
    def box(self) -> np.ndarray:
        return _x_to_box(self.kf.x[:, 0])


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
