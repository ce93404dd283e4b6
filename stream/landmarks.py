"""The landmark stage: MediaPipe FaceMesh on each tracked face, on a window cut from the frame.

The window is seeded from the track's mesh of the previous frame when there is one (it follows
the face more closely than the detector's box), else from the detection (box and eye keypoints)
or the track's predicted box. Per track the stage keeps the detector's box relative to the
mesh's box, so that when the detector misses a face the mesh's find can be handed back to the
tracker as a measurement in the detector's convention, and a detection that no longer agrees
with the previous mesh re-seeds the window from the detection.

Static hold: where the face's pixels have not changed since the frame its mesh was measured on
(repeated or pulldown frames, a still speaker), that mesh is kept as it is, and so is the
rendering made from it (`held_rendering`), instead of a new fit whose few tenths of a pixel of
noise make the output face shimmer. Any real change (a blink, a turn, a slow drift adding up)
fits again at once: the comparison is always with the measured frame, so nothing lags.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models.geometry import iou_matrix
from ideud.stream import blend as bl
from ideud.stream.track import Tracker
from ideud.stream.types import Face, Frame, Track

MIN_AGREEMENT_IOU = 0.3  # detection vs. the box the previous mesh predicts; below: re-seed
MAX_OFFSET = 0.75  # mesh centre this far (x face size) from the track: fitted to something else
HOLD_SIDE = 40  # px of the luma thumbnail of the face compared for the static hold
HOLD_MEAN, HOLD_P99 = 1.0, 8.0  # grey levels: at most this much change keeps the measured mesh


@dataclass
class _FaceState:
    """Per-track memory of the landmark stage (not identity: that lives in IdentityStage)."""

    landmarks: Optional[np.ndarray] = None
    last_frame: int = -1
    box_rel: Optional[np.ndarray] = None  # detector box relative to the landmark box
    thumb: Optional[np.ndarray] = None  # the face's luma where the mesh was measured (static hold)
    thumb_box: Optional[tuple] = None
    held: bool = False  # this frame's mesh is the measured one kept: the face has not changed
    rendering: Optional[object] = None  # Step I's answer for the measured mesh (reused while held)
    rendering_key: Optional[object] = None  # what it was made under (the identity's noise vector)


def landmark_box(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, side) of the square around the landmarks' x, y."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, float(max(hi - lo))


def box_from_landmarks(lm: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """The detector's box for these landmarks, given the track's box relation."""
    centre, size = landmark_box(lm)
    return np.r_[centre, centre] + rel * size


def relation(lm: np.ndarray, box: np.ndarray) -> np.ndarray:
    """`box` relative to the landmarks' square: corner offsets in units of its side."""
    centre, size = landmark_box(lm)
    return (np.asarray(box, float) - np.r_[centre, centre]) / max(size, 1e-6)


class LandmarkStage:
    """Fits the face mesh per track and frame; feeds the tracker where the detector missed."""

    def __init__(self, mesh: fm.FaceMesh, tracker: Tracker):
        self.mesh = mesh
        self.tracker = tracker
        self._faces: dict[int, _FaceState] = {}
        self.sharpened_tries = self.sharpened_finds = 0  # second tries on a sharpened window, and finds

    def fit(self, frame: Frame, track: Track, face: Optional[Face]) -> Optional[np.ndarray]:
        """The face's (468, 3) landmarks in frame pixels, or None where no mesh was found."""
        st = self._faces.setdefault(track.id, _FaceState())
        st.held = self._unchanged(frame, st)
        lm = st.landmarks if st.held else self._landmarks(frame, track, face, st)
        if lm is None:
            st.landmarks = st.thumb = st.rendering = None
            return None
        if not st.held:
            st.thumb_box = _thumb_box(lm, frame.width, frame.height)
            st.thumb = _thumb(frame, st.thumb_box)
            st.rendering = None
        st.landmarks, st.last_frame = lm, frame.index
        if face is not None:
            rel = relation(lm, face.box)
            # smoothed: the detector's box jitters more than the mesh
            st.box_rel = rel if st.box_rel is None else 0.8 * st.box_rel + 0.2 * rel
        elif st.box_rel is not None:
            # the mesh found the face the detector missed: keep the track on it
            self.tracker.measured(track.id, box_from_landmarks(lm, st.box_rel))
        return lm

    def drop(self, track_id: int) -> None:
        self._faces.pop(track_id, None)

    def current(self, track_id: int) -> Optional[np.ndarray]:
        """The track's mesh of the frame last fitted (measured, not smoothed), or None."""
        st = self._faces.get(track_id)
        return None if st is None else st.landmarks

    def held_rendering(self, track_id: int, key: object) -> Optional[object]:
        """The rendering kept for a held face, if it was made under the same `key` (else None)."""
        st = self._faces.get(track_id)
        if st is None or not st.held or st.rendering is None or st.rendering_key is not key:
            return None
        return st.rendering

    def keep_rendering(self, track_id: int, rendering: object, key: object) -> None:
        """Step I's answer for this frame's measured mesh, to reuse while the face is held."""
        st = self._faces.get(track_id)
        if st is not None and not st.held:
            st.rendering, st.rendering_key = rendering, key

    @staticmethod
    def _unchanged(frame: Frame, st: _FaceState) -> bool:
        if st.thumb is None or st.landmarks is None or st.last_frame != frame.index - 1:
            return False
        diff = np.abs(_thumb(frame, st.thumb_box).astype(np.int16) - st.thumb).ravel()
        return float(diff.mean()) <= HOLD_MEAN and float(np.percentile(diff, 99)) <= HOLD_P99

    def _landmarks(self, frame: Frame, track: Track, face: Optional[Face], st: _FaceState) -> Optional[np.ndarray]:
        roi = None
        if st.landmarks is not None and st.last_frame == frame.index - 1:
            roi = fm.roi_from_landmarks(st.landmarks)
            if face is not None and st.box_rel is not None:
                prev_box = box_from_landmarks(st.landmarks, st.box_rel)
                if iou_matrix(prev_box[None], face.box[None])[0, 0] < MIN_AGREEMENT_IOU:
                    roi = None  # the detector disagrees: re-seed from the detection
        if roi is None:
            kp = face.keypoints if face is not None else None
            src = face.box if face is not None else track.box
            roi = fm.roi_from_keypoints(src, *(kp[:2] if kp is not None and len(kp) >= 2 else (None, None)))
        affine = self.mesh.window(roi)
        if affine is None:
            return None
        # the model's window is cut straight from the YUV planes: one resample, at its small size
        window = bl.affine_rgb(frame, affine, self.mesh.window_size(affine, roi))
        lm = self.mesh.on_window(window, affine, roi)
        if lm is None:
            # a blurred face (motion, focus, a small face upscaled) is found on a sharpened window:
            # on build-split portraits of 28-120 px blurred by a face-size/20 Gaussian, 66 of 78
            # faces instead of 18 (an amount of 1.0 found 37)
            lm = self.mesh.on_window(sharpened(window), affine, roi)
            self.sharpened_tries += 1
            if lm is None:
                return None
            self.sharpened_finds += 1
        # a mesh far from where the track is was fitted to something else
        centre, size = landmark_box(lm)
        tb = track.box if face is None else face.box
        tc = np.array([(tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2])
        if np.linalg.norm(centre - tc) > MAX_OFFSET * max(size, tb[2] - tb[0]):
            return None
        return lm


def sharpened(window: np.ndarray, amount: float = 2.5) -> np.ndarray:
    """Unsharp mask at a scale of the window (the face is ~2/3 of it)."""
    blur = cv2.GaussianBlur(window, (0, 0), max(1.0, window.shape[0] / 30.0))
    return cv2.addWeighted(window, 1.0 + amount, blur, -amount, 0)


def _thumb_box(lm: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    centre, size = landmark_box(lm)
    half = 0.6 * size
    # clamped into the frame: a face at (or past) the edge still gives a non-empty box
    x0 = min(max(0, int(centre[0] - half)), width - 1)
    y0 = min(max(0, int(centre[1] - half)), height - 1)
    x1, y1 = int(min(width, centre[0] + half)), int(min(height, centre[1] + half))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _thumb(frame: Frame, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face's luma (green for RGB frames) at HOLD_SIDE px: cheap, and blind to chroma noise."""
    x0, y0, x1, y1 = box
    plane = frame.planes[1] if frame.is_rgb else frame.planes[0]
    return cv2.resize(plane[y0:y1, x0:x1], (HOLD_SIDE, HOLD_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
