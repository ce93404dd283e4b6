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

Flow propagation (stream/flow.py): where FaceMesh fails on a face that had a mesh in the
previous frame, that mesh is moved by the face's optical flow, for at most MAX_PROPAGATED frames
in a row (fewer while the detector misses the face too), and only while the flow is consistent
and agrees with the detection; else None (the face is obfuscated).
"""
from __future__ import annotations

import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models.face_bank import mirror_index
from ideud.models.geometry import iou_matrix
from ideud.stream import blend as bl
from ideud.stream import flow
from ideud.stream.track import Tracker
from ideud.stream.types import Face, Frame, Track

MIN_AGREEMENT_IOU = 0.3  # detection vs. the box the previous mesh predicts; below: re-seed
MAX_OFFSET = 0.75  # mesh centre this far (x face size) from the track: fitted to something else
HOLD_SIDE = 40  # px of the luma thumbnail of the face compared for the static hold
HOLD_MEAN, HOLD_P99 = 1.0, 8.0  # grey levels: at most this much change keeps the measured mesh
# frames in a row a mesh may be moved by optical flow instead of measured (its error adds up);
# with no detection either, the flow alone vouches for the face: fewer
MAX_PROPAGATED, MAX_PROPAGATED_LOST = 6, 3
MIN_PREDICTION_IOU = 0.5  # a propagated mesh's box vs the tracker's prediction, where nothing was detected


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
    flow_ref: Optional[flow.FlowRef] = None  # grey crop of the face where the mesh was last known
    propagated_run: int = 0  # frames in a row whose mesh was moved by optical flow, not measured
    propagated: bool = False  # this frame's mesh came from optical flow
    drift: Optional[np.ndarray] = None  # the flow's affine change since the mesh was measured


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

    def __init__(self, mesh: fm.FaceMesh, tracker: Tracker, propagate: bool = True):
        self.mesh = mesh
        self.tracker = tracker
        self.propagate = propagate  # move the last mesh by optical flow where FaceMesh fails
        self._faces: dict[int, _FaceState] = {}
        self.sharpened_tries = self.sharpened_finds = 0  # second tries on a sharpened window, and finds
        self.mirrored_tries = self.mirrored_finds = 0  # third tries on the mirrored window, and finds
        self.flow_tries = self.flow_finds = 0  # FaceMesh failures tried by optical flow, and meshes moved
        self.propagated_frames: dict[int, int] = {}  # per live track: face-frames whose mesh came from the flow
        # several faces in a frame: every other one's FaceMesh runs on a second graph on its own
        # thread (`prefetch`), beside this thread's; made at the first frame that has two faces
        self.parallel = (os.cpu_count() or 1) > 1
        self._helper: Optional[tuple[fm.FaceMesh, ThreadPoolExecutor]] = None
        self._prefetched: dict[int, tuple] = {}  # track id -> (frame index, roi, affine, window, Future)
        self.prefetched = 0  # faces whose FaceMesh ran on the helper graph and was used

    def fit(self, frame: Frame, track: Track, face: Optional[Face]) -> Optional[np.ndarray]:
        """The face's (468, 3) landmarks in frame pixels, or None where no mesh was found."""
        st = self._faces.setdefault(track.id, _FaceState())
        st.held = self._unchanged(frame, st)
        lm = st.landmarks if st.held else self._landmarks(frame, track, face, st)
        st.propagated = False
        if lm is None:
            lm = self._propagate(frame, track, face, st)
        if lm is None:
            st.landmarks = st.thumb = st.rendering = st.flow_ref = None
            st.propagated_run = 0
            return None
        if st.propagated:
            st.propagated_run += 1
            self.propagated_frames[track.id] = self.propagated_frames.get(track.id, 0) + 1
        elif not st.held:
            st.propagated_run, st.drift = 0, None
        # cut now: by the next frame this one's pixels may be drawn over
        st.flow_ref = flow.reference(frame, lm, st.drift if st.propagated or st.held else None)
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

    def prefetch(self, frame: Frame, pairs: list, min_face: float = 0.0) -> None:
        """Start FaceMesh for every other face of `pairs` ((track, face or None), the order in which
        `fit` will be called for this frame) on the helper graph, so that two faces are fitted at
        once. `fit` takes a result only for the very window it would cut itself (same ROI, same
        affine: the same pixels), and the graphs are the same model: the landmarks are identical.
        Faces under `min_face` and held faces (`_unchanged`) are skipped: they get no FaceMesh."""
        self._prefetched.clear()
        if not self.parallel or len(pairs) < 2:
            return
        try:
            for track, face in pairs[1::2]:
                box = np.asarray(face.box if face is not None else track.box, float)
                st = self._faces.get(track.id)
                if max(box[2] - box[0], box[3] - box[1]) < min_face or (st is not None and self._unchanged(frame, st)):
                    continue
                roi = self._roi(frame, track, face, st or _FaceState())
                affine = self.mesh.window(roi)
                if affine is None:
                    continue
                window = bl.affine_rgb(frame, affine, self.mesh.window_size(affine, roi))
                mesh, pool = self._helper_graph()
                self._prefetched[track.id] = (frame.index, roi, affine, window,
                                              pool.submit(mesh.on_window, window, affine, roi))
        except Exception:  # noqa: BLE001 - `fit` fits what was not started here, on this thread
            pass

    def _helper_graph(self) -> tuple[fm.FaceMesh, ThreadPoolExecutor]:
        if self._helper is None:
            helper = (fm.FaceMesh(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="ideud-mesh"))
            self._helper = helper
            weakref.finalize(self, _close_helper, helper)  # at the stage's end or at exit
        return self._helper

    def _taken(self, frame: Frame, track: Track, roi: fm.Roi, affine: np.ndarray) -> Optional[tuple]:
        """(window, Future) started by `prefetch` for exactly this window, or None."""
        pre = self._prefetched.pop(track.id, None)
        if pre is None:
            return None
        index, p_roi, p_affine, window, found = pre
        if index != frame.index or p_roi != roi or not np.array_equal(p_affine, affine):
            return None
        self.prefetched += 1
        return window, found

    def drop(self, track_id: int) -> None:
        self._faces.pop(track_id, None)
        self._prefetched.pop(track_id, None)
        self.propagated_frames.pop(track_id, None)

    def propagated(self, track_id: int) -> bool:
        """Whether the track's mesh of the frame last fitted was moved by optical flow, not measured."""
        st = self._faces.get(track_id)
        return st is not None and st.propagated

    def _propagate(self, frame: Frame, track: Track, face: Optional[Face], st: _FaceState) -> Optional[np.ndarray]:
        """The previous frame's mesh moved by the face's optical flow, or None (stream/flow.py)."""
        limit = MAX_PROPAGATED if face is not None else MAX_PROPAGATED_LOST
        if not self.propagate or st.flow_ref is None or st.landmarks is None or st.last_frame != frame.index - 1 \
                or st.propagated_run >= limit:
            return None
        self.flow_tries += 1
        rel = st.box_rel
        fit = flow.propagate(st.flow_ref, frame, None if face is None else face.box,
                             None if rel is None else (lambda lm: box_from_landmarks(lm, rel)))
        if fit is None:
            return None
        if face is None:
            # coasting: the flow and the tracker's prediction must still roughly agree
            box = box_from_landmarks(fit.landmarks, rel) if rel is not None else np.r_[
                fit.landmarks[:, :2].min(0), fit.landmarks[:, :2].max(0)]
            if iou_matrix(box[None], np.asarray(track.box, float)[None])[0, 0] < MIN_PREDICTION_IOU:
                return None
        self.flow_finds += 1
        st.propagated, st.drift = True, fit.drift
        return fit.landmarks

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
        roi = self._roi(frame, track, face, st)
        affine = self.mesh.window(roi)
        if affine is None:
            return None
        taken = self._taken(frame, track, roi, affine)
        if taken is not None:  # fitted on the helper graph while this thread fitted another face
            window, found = taken
            lm = found.result()
        else:
            # the model's window is cut straight from the YUV planes: one resample, at its small size
            window = bl.affine_rgb(frame, affine, self.mesh.window_size(affine, roi))
            lm = self.mesh.on_window(window, affine, roi)
        return self._fit_tries(window, affine, roi, lm, track, face)

    @staticmethod
    def _roi(frame: Frame, track: Track, face: Optional[Face], st: _FaceState) -> fm.Roi:
        """The window's ROI: from the track's previous mesh, else from the detection (or the track)."""
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
        return roi

    def _fit_tries(self, window: np.ndarray, affine: np.ndarray, roi: fm.Roi, lm: Optional[np.ndarray],
                   track: Track, face: Optional[Face]) -> Optional[np.ndarray]:
        """The second and third tries where the first found nothing; the check of where it found it."""
        if lm is None:
            # a blurred face (motion, focus, a small face upscaled) is found on a sharpened window:
            # on build-split portraits of 28-120 px blurred by a face-size/20 Gaussian, 66 of 78
            # faces instead of 18 (an amount of 1.0 found 37)
            lm = self.mesh.on_window(sharpened(window), affine, roi)
            self.sharpened_tries += 1
            if lm is not None:
                self.sharpened_finds += 1
        if lm is None:
            # a turned face: the mirrored window is another try (on held-out portraits turned by
            # ~60 degrees, tools/bench/bench_yaw.py, 8 of 11 found instead of 7)
            lm = mirrored_fit(self.mesh, window, affine, roi)
            self.mirrored_tries += 1
            if lm is None:
                return None
            self.mirrored_finds += 1
        # a mesh far from where the track is was fitted to something else
        centre, size = landmark_box(lm)
        tb = track.box if face is None else face.box
        tc = np.array([(tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2])
        if np.linalg.norm(centre - tc) > MAX_OFFSET * max(size, tb[2] - tb[0]):
            return None
        return lm


def mirrored_fit(mesh: fm.FaceMesh, window: np.ndarray, affine: np.ndarray, roi: fm.Roi) -> Optional[np.ndarray]:
    """FaceMesh on the left-right mirrored window, mapped back (points and their order)."""
    flipped = fm.Roi(roi.cx, roi.cy, roi.size, -roi.rotation)
    lm = mesh.on_window(np.ascontiguousarray(window[:, ::-1]), affine, flipped)
    if lm is None:
        return None
    k, n = float(affine[0, 0]), window.shape[1]
    lm = lm[mirror_index()]
    # on_window mapped mirrored-window x to (x_m - a02) / k; the real window x is n - x_m
    lm[:, 0] = (n - 2 * float(affine[0, 2])) / k - lm[:, 0]
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


def _close_helper(helper: tuple) -> None:
    mesh, pool = helper
    pool.shutdown(wait=True)
    mesh.close()
