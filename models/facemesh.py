"""MediaPipe FaceMesh (468 3D landmarks) run on a region we choose.

The legacy `mp.solutions.face_mesh` runs its own detector; we already have
detections and tracks, so we drive MediaPipe's `FaceLandmarkCpu` subgraph
directly with an image and a rotated ROI (the model ships inside the
mediapipe 0.10.21 wheel, nothing is downloaded). The subgraph drops the
output when its face-presence score is low, which we report as "no face".
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

# mediapipe/absl log through glog; keep the console for our own messages.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



def _mesh_tables():
    """mediapipe's face-mesh index tables (a module of plain frozensets), read from its file without
    importing the package: `mediapipe.python.solutions` pulls in matplotlib (~0.7 s), and a restore
    process (stream/restore_processes.py) needs these tables and nothing else of it."""
    import importlib.util
    from pathlib import Path

    try:
        root = Path(importlib.util.find_spec("mediapipe").origin).parent
        spec = importlib.util.spec_from_file_location(
            "ideud_face_mesh_connections", root / "python" / "solutions" / "face_mesh_connections.py")
        tables = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tables)
        return tables
    except (AttributeError, ImportError, OSError, TypeError):  # another layout: the usual import
        from mediapipe.python.solutions import face_mesh_connections

        return face_mesh_connections


_conn = _mesh_tables()

N_LANDMARKS = 468


@contextlib.contextmanager
def native_stderr_silenced():
    """Mute the C++ side's start-up chatter (TFLite/absl write straight to fd 2)."""
    if os.environ.get("IDEUD_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

# Index sets of the 468-point topology, taken from mediapipe's own tables.
def _ring(edges) -> list[int]:
    return sorted({i for e in edges for i in e})


LEFT_EYE = _ring(_conn.FACEMESH_LEFT_EYE)  # subject's left (image right when frontal)
RIGHT_EYE = _ring(_conn.FACEMESH_RIGHT_EYE)
LEFT_BROW = _ring(_conn.FACEMESH_LEFT_EYEBROW)
RIGHT_BROW = _ring(_conn.FACEMESH_RIGHT_EYEBROW)
LIPS = _ring(_conn.FACEMESH_LIPS)
NOSE = _ring(_conn.FACEMESH_NOSE)
TESSELATION_EDGES = np.array(sorted(_conn.FACEMESH_TESSELATION), dtype=np.int32)


def oval_order() -> list[int]:
    """Face-oval vertices in walking order (the table stores unordered edges)."""
    nxt = {}
    for a, b in _conn.FACEMESH_FACE_OVAL:
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    start = 10  # top of the forehead
    order, prev, cur = [start], None, start
    while True:
        cand = [n for n in nxt[cur] if n != prev]
        if not cand or cand[0] == start:
            break
        prev, cur = cur, cand[0]
        order.append(cur)
    return order


FACE_OVAL = oval_order()

# Named anatomical points (MediaPipe topology).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263
NOSE_TIP, SUBNASALE, NASION = 1, 2, 168
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 0, 13, 14, 17
CHIN, FOREHEAD = 152, 10
RIGHT_CHEEK, LEFT_CHEEK = 234, 454


@dataclass
class Roi:
    """A rotated square region, in pixels of the image it refers to."""

    cx: float
    cy: float
    size: float
    rotation: float  # radians, counter-clockwise turn that makes the face upright

    def corners(self) -> np.ndarray:
        h = self.size / 2
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        pts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        rot = np.array([[c, -s], [s, c]])
        return pts @ rot.T + [self.cx, self.cy]


def _eye_angle(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    # MediaPipe's convention: rotation that brings the eye line horizontal
    dx, dy = left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]
    return -math.atan2(-dy, dx)


def roi_from_keypoints(box: np.ndarray, right_eye: Optional[np.ndarray], left_eye: Optional[np.ndarray],
                       scale: float = 1.6) -> Roi:
    """ROI for a fresh detection: square around the box, turned by the eye line."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    size = max(box[2] - box[0], box[3] - box[1]) * scale
    rot = _eye_angle(right_eye, left_eye) if right_eye is not None and left_eye is not None else 0.0
    return Roi(cx, cy, size, rot)


def roi_from_landmarks(lm: np.ndarray, scale: float = 1.5) -> Roi:
    """ROI for tracking: the previous frame's landmarks, as MediaPipe's own tracker does."""
    rot = _eye_angle(lm[RIGHT_EYE_OUTER, :2], lm[LEFT_EYE_OUTER, :2])
    c, s = math.cos(-rot), math.sin(-rot)
    pts = lm[:, :2]
    centre0 = (pts.min(0) + pts.max(0)) / 2
    rel = (pts - centre0) @ np.array([[c, -s], [s, c]]).T  # undo rotation
    lo, hi = rel.min(0), rel.max(0)
    mid = (lo + hi) / 2
    centre = centre0 + mid @ np.array([[c, s], [-s, c]]).T
    size = float(max(hi - lo)) * scale
    return Roi(float(centre[0]), float(centre[1]), size, rot)


class FaceMesh:
    """468-point mesh on a given rotated ROI. One graph; calls are serialised."""

    def __init__(self, min_presence: float = 0.5, input_px: int = 256):
        from google.protobuf import text_format

        from ideud.models.mediapipe_import import import_mediapipe

        import_mediapipe()
        from mediapipe.framework import calculator_pb2
        from mediapipe.python import solution_base

        cfg = text_format.Parse(
            """
            input_stream: "image"
            input_stream: "roi"
            input_side_packet: "with_attention"
            output_stream: "face_landmarks"
            node {
              calculator: "FaceLandmarkCpu"
              input_stream: "IMAGE:image"
              input_stream: "ROI:roi"
              input_side_packet: "WITH_ATTENTION:with_attention"
              output_stream: "LANDMARKS:face_landmarks"
            }
            """,
            calculator_pb2.CalculatorGraphConfig(),
        )
        proto = solution_base.PacketDataType.PROTO
        with native_stderr_silenced():
            self._graph = solution_base.SolutionBase(
                graph_config=cfg,
                side_inputs={"with_attention": False},
                stream_type_hints={"roi": proto, "face_landmarks": proto},
            )
            # the graph opens its calculators (and logs about it) on its own threads;
            # one blank input also gets its once-only projection warning out of the way
            # (the windows we pass are square, where that projection is exact)
            self._graph._graph.wait_until_idle()
            self._graph.process({"image": np.zeros((64, 64, 3), np.uint8),
                                 "roi": self._rect_type()(x_center=0.5, y_center=0.5, width=0.5, height=0.5)})
        self._rect = self._rect_type()
        if min_presence != 0.5:
            # the subgraph's presence threshold is fixed at 0.5 in the shipped graph
            raise ValueError("FaceLandmarkCpu has a fixed presence threshold of 0.5")
        self._lock = threading.Lock()
        self.input_px = input_px

    @staticmethod
    def _rect_type():
        from mediapipe.framework.formats import rect_pb2

        return rect_pb2.NormalizedRect

    def close(self) -> None:
        self._graph.close()

    def window(self, roi: Roi) -> Optional[np.ndarray]:
        """2x3 affine from image pixels to the square window the model is given, or None if too small.

        A square window around the ROI, shrunk for big faces and zero-padded past
        the image edge: the model sees 192x192 anyway, and the graph projects its
        landmarks back exactly only for a square image.
        """
        half = roi.size * 0.75
        n = int(min(math.ceil(2 * half), 1.5 * self.input_px))
        if n < 8:
            return None
        k = n / (2 * half)
        return np.array([[k, 0, -(roi.cx - half) * k], [0, k, -(roi.cy - half) * k]], np.float32)

    @staticmethod
    def window_size(affine: np.ndarray, roi: Roi) -> int:
        return int(round(float(affine[0, 0]) * roi.size * 1.5))

    def on_window(self, window: np.ndarray, affine: np.ndarray, roi: Roi) -> Optional[np.ndarray]:
        """Landmarks (468, 3) in image pixels from the RGB `window` cut with `affine`, or None."""
        n = window.shape[0]
        rect = self._rect(x_center=0.5, y_center=0.5, width=1 / 1.5, height=1 / 1.5, rotation=roi.rotation)
        with self._lock:
            out = self._graph.process({"image": window, "roi": rect}).face_landmarks
        if out is None or len(out.landmark) < N_LANDMARKS:
            return None
        k = float(affine[0, 0])
        lm = landmarks_array(out)[:N_LANDMARKS]
        lm *= n / k  # normalised -> window pixels -> image pixels (z scales like x)
        lm[:, 0] -= affine[0, 2] / k
        lm[:, 1] -= affine[1, 2] / k
        return lm

    def __call__(self, image: np.ndarray, roi: Roi) -> Optional[np.ndarray]:
        """Landmarks (468, 3) in pixels of an RGB `image` (z in the same pixel scale), or None."""
        import cv2

        affine = self.window(roi)
        if affine is None:
            return None
        n = self.window_size(affine, roi)
        win = cv2.warpAffine(image, affine, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return self.on_window(win, affine, roi)


_WIRE = 17  # bytes of one landmark holding x, y, z on the wire: tag, length, then 3 x (tag, float32)


def landmarks_array(landmarks) -> np.ndarray:
    """(n, 3) float64 x, y, z of a NormalizedLandmarkList. Read from its wire bytes when each
    landmark holds exactly x, y and z (reading 468 landmarks field by field costs ~0.45 ms a face,
    the bytes ~0.02 ms); the same float32 values either way."""
    n = len(landmarks.landmark)
    raw = landmarks.SerializeToString()
    if n and len(raw) == _WIRE * n:
        rec = np.frombuffer(raw, np.uint8).reshape(n, _WIRE)
        # field tags: the landmark (1, length-delimited, 15 bytes), then x, y, z (1, 2, 3: 32-bit)
        if (np.all(rec[:, :3] == (0x0A, 0x0F, 0x0D)) and np.all(rec[:, 7] == 0x15)
                and np.all(rec[:, 12] == 0x1D)):
            xyz = np.stack([rec[:, 3:7], rec[:, 8:12], rec[:, 13:17]], 1).copy().view("<f4")
            return xyz.reshape(n, 3).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)


def face_up(points2d: np.ndarray) -> np.ndarray:
    """The face's up in the picture: unit vector from the chin to between the outer eye corners."""
    up = (points2d[LEFT_EYE_OUTER] + points2d[RIGHT_EYE_OUTER]) / 2 - points2d[CHIN]
    return up / max(float(np.linalg.norm(up)), 1e-6)


def brow_top(points2d: np.ndarray, up: np.ndarray) -> float:
    """How far up (`face_up`) the brows reach: the highest brow point's projection on it."""
    return float(np.max(points2d[LEFT_BROW + RIGHT_BROW] @ up))


def face_polygon(points2d: np.ndarray) -> np.ndarray:
    """Face oval with the forehead lowered below the hairline (2D, same frame as input)."""
    oval = points2d[FACE_OVAL].copy()
    up = face_up(points2d)
    height = (oval @ up) - brow_top(points2d, up)
    above = height > 0
    # keep 40% of the forehead height: the hairline sits higher on almost every face
    oval[above] -= np.outer(height[above] * 0.6, up)
    return oval


def face_polygon_mask(shape: tuple, points2d: np.ndarray) -> np.ndarray:
    """`face_polygon` of `points2d` filled into a uint8 mask (1 inside) of `shape`'s height and width."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(face_polygon(points2d)).astype(np.int32)], 1)
    return mask
