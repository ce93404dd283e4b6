"""dlib face detection, landmarks and 128-d identity embeddings.

A thin wrapper over the models shipped in the ``face_recognition_models``
sdist (no download): HOG and MMOD-CNN face detectors, the 5- and 68-point
shape predictors and the ResNet face recognizer
(``dlib_face_recognition_resnet_model_v1``: two photos of the same person
are usually closer than :data:`THRESHOLD` = 0.6 in L2 distance).

Used by ``ideud-eval`` (privacy metrics) and by the pipeline's privacy
guard, which embeds a face from its own landmarks without running dlib's
shape predictor (and, next to it, the independent EdgeFace recognizer of
``models/edgeface.py``: the guard asks both)::

    rec = FaceRecognizer()
    e = rec.embed(rgb, points5=mesh[FACEMESH_POINTS5])   # (128,) float32
    leak = rec.distance(e, e_original) < THRESHOLD

5-point order (what ``shape_predictor_5_face_landmarks`` outputs and what
``points5`` must follow).  "Image-right" = the subject's own LEFT side:

    0  outer corner of the image-right eye = subject's left eye, outer   (iBUG-68 45, FaceMesh 263)
    1  inner corner of the image-right eye = subject's left eye, inner   (iBUG-68 42, FaceMesh 362)
    2  outer corner of the image-left eye  = subject's right eye, outer  (iBUG-68 36, FaceMesh 33)
    3  inner corner of the image-left eye  = subject's right eye, inner  (iBUG-68 39, FaceMesh 133)
    4  bottom of the nose (subnasale)                                    (iBUG-68 33, FaceMesh 2)

i.e. in image x order for an upright face: 2 < 3 < 1 < 0.  (dlib's aligner
maps them to its template x = 0.86, 0.65, 0.12, 0.33, 0.49 of the chip.)
Checked on the astronaut portrait: dlib's own 5 points lie within 1 px of
iBUG 45/42/36/39/33, and the embedding from the FaceMesh points above is
0.07 from the one from dlib's 5 points (0.04 from the 68-point fit reduced
to 5); a left/right-swapped order gives a mirrored chip and a worse match.

Cost on the project's 2-core CPU box (dlib-bin 20.0, no CUDA, no GPU): one
``embed`` 75-115 ms depending on load (the ResNet forward pass; chip
extraction 0.3 ms, 5-point fit < 0.1 ms, 68-point fit ~1.2 ms; batching with
``embed_many`` is not faster per face on CPU); HOG detection 90-130 ms for a
512x512 frame at upsample=1; the MMOD CNN detector is ~100x slower than HOG
on CPU (~9 s for 512x512 at upsample=1): offline checks only.  Model loading
~1.2 s, once.  ``python -m ideud.models.recognizer [IMAGE]`` times it.

Thread safety: models load lazily, once, under a lock.  dlib's detectors
and the DNN recognizer are not safe for concurrent use, so each call to
them holds that model's lock (the shape predictors are const and take no
lock).  Calls from several threads are therefore correct but serialised
per model; use one ``FaceRecognizer`` per worker process for throughput.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

#: L2 distance below which dlib's recognizer calls two faces the same person.
THRESHOLD = 0.6

#: iBUG-68 indices of dlib's 5 points, in dlib's 5-point order.
IBUG68_POINTS5 = (45, 42, 36, 39, 33)
#: MediaPipe FaceMesh (468/478) indices of dlib's 5 points, in dlib's order.
FACEMESH_POINTS5 = (263, 362, 33, 133, 2)

_MODEL_FILES = {
    "shape5": "shape_predictor_5_face_landmarks.dat",
    "shape68": "shape_predictor_68_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
    "mmod": "mmod_human_face_detector.dat",
}


def model_dir() -> Path:
    """Folder of dlib's .dat files, found without importing the package.

    (``face_recognition_models/__init__`` imports pkg_resources, which is
    gone from setuptools >= 81.)  ``IDEUD_DLIB_MODELS`` overrides it.
    """
    env = os.environ.get("IDEUD_DLIB_MODELS")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "face_recognition_models is not installed (pip install face_recognition_models==0.3.0)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


Box = tuple  # (x0, y0, x1, y1) floats, pixels


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {img.dtype} {img.shape}")
    if not img.flags.c_contiguous:
        img = np.ascontiguousarray(img)
    return img


def _rect(dlib, box) -> "object":
    """(x0, y0, x1, y1) with exclusive x1/y1 -> dlib.rectangle (inclusive corners)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
    return dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))


def _points(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class FaceRecognizer:
    """dlib detectors, shape predictors and the ResNet embedder, loaded lazily.

    All images are HxWx3 uint8 RGB; boxes are (x0, y0, x1, y1) in pixels.
    """

    THRESHOLD = THRESHOLD

    def __init__(self, models: Optional[os.PathLike] = None):
        self._dir = Path(models) if models is not None else None
        self._models: dict = {}
        self._load_lock = threading.Lock()
        self._locks = {k: threading.Lock() for k in ("hog", "mmod", "resnet")}

    # ------------------------------------------------------------ loading
    def _get(self, name: str):
        m = self._models.get(name)
        if m is not None:
            return m
        with self._load_lock:
            m = self._models.get(name)
            if m is None:
                import dlib

                if name == "hog":
                    m = dlib.get_frontal_face_detector()
                else:
                    path = (self._dir or model_dir()) / _MODEL_FILES[name]
                    if not path.is_file():
                        raise FileNotFoundError(f"dlib model missing: {path}")
                    ctor = {
                        "shape5": dlib.shape_predictor,
                        "shape68": dlib.shape_predictor,
                        "resnet": dlib.face_recognition_model_v1,
                        "mmod": dlib.cnn_face_detection_model_v1,
                    }[name]
                    m = ctor(str(path))
                self._models[name] = m
        return m

    def warm_up(self, cnn: bool = False) -> "FaceRecognizer":
        """Load the models now instead of on first use."""
        for name in ("hog", "shape5", "shape68", "resnet") + (("mmod",) if cnn else ()):
            self._get(name)
        return self

    # ------------------------------------------------------------ detection
    def detect_scored(
        self, rgb: np.ndarray, upsample: int = 1, cnn: bool = False, min_score: float = 0.0
    ) -> list:
        """Faces as ``[(box, score), ...]``, best first.

        HOG score: SVM margin (dlib keeps > 0; real frontal faces are
        usually > 0.5).  CNN score: MMOD confidence (> 0 kept).
        """
        import dlib  # noqa: F401  (models loaded through _get)

        rgb = _rgb(rgb)
        out = []
        if cnn:
            net = self._get("mmod")
            with self._locks["mmod"]:
                dets = net(rgb, int(upsample))
            for d in dets:
                r = d.rect
                out.append(((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                            float(d.confidence)))
        else:
            hog = self._get("hog")
            with self._locks["hog"]:
                rects, scores, _ = hog.run(rgb, int(upsample), 0.0)
            for r, s in zip(rects, scores):
                out.append(((float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                            float(s)))
        out = [o for o in out if o[1] >= min_score]
        out.sort(key=lambda o: -o[1])
        return out

    def detect(self, rgb: np.ndarray, upsample: int = 1, cnn: bool = False,
               min_score: float = 0.0) -> list:
        """Face boxes ``[(x0, y0, x1, y1), ...]`` (HOG by default, MMOD CNN if ``cnn``)."""
        return [b for b, _ in self.detect_scored(rgb, upsample, cnn, min_score)]

    # ------------------------------------------------------------ landmarks
    def _shape(self, which: str, rgb: np.ndarray, box):
        import dlib

        return self._get(which)(_rgb(rgb), _rect(dlib, box))

    def shape5(self, rgb: np.ndarray, box) -> np.ndarray:
        """dlib's 5 points (order in the module docstring) as a (5, 2) float32 array."""
        return _points(self._shape("shape5", rgb, box))

    def shape68(self, rgb: np.ndarray, box) -> np.ndarray:
        """The 68 iBUG points as a (68, 2) float32 array."""
        return _points(self._shape("shape68", rgb, box))

    # ------------------------------------------------------------ embedding
    def _full_object(self, rgb: np.ndarray, box, points5):
        import dlib

        if points5 is not None:
            pts = np.asarray(points5, dtype=np.float64).reshape(-1, 2)
            if pts.shape[0] == 68:
                pts = pts[list(IBUG68_POINTS5)]
            if pts.shape[0] != 5 or not np.all(np.isfinite(pts)):
                raise ValueError(f"points5 must be 5 (or 68 iBUG) finite (x, y) points, got {pts.shape}")
            if box is None:
                box = (*pts.min(0), *pts.max(0))
            parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in pts])
            return dlib.full_object_detection(_rect(dlib, box), parts)
        if box is None:
            found = self.detect_scored(rgb, 1)
            if not found:
                raise ValueError("embed: no face found (pass box= or points5=)")
            box = max(found, key=lambda o: (o[0][2] - o[0][0]) * (o[0][3] - o[0][1]))[0]
        return self._shape("shape5", rgb, box)

    def embed(self, rgb: np.ndarray, box=None, points5=None, jitter: int = 0) -> np.ndarray:
        """128-d identity embedding, float32, of one face.

        * ``points5``: 5 points in dlib's order (or 68 iBUG points, reduced to
          those 5) — no dlib landmark fit, e.g. from MediaPipe
          (``mesh[FACEMESH_POINTS5]``);
        * else ``box``: dlib's 5-point predictor is fitted inside it;
        * else the largest HOG detection is used (ValueError if none).

        The face is aligned by dlib (150x150 chip, padding 0.25) first.
        """
        rgb = _rgb(rgb)
        shape = self._full_object(rgb, box, points5)
        net = self._get("resnet")
        with self._locks["resnet"]:
            d = net.compute_face_descriptor(rgb, shape, int(jitter))
        return np.asarray(d, dtype=np.float32)

    def embed_many(self, rgb: np.ndarray, boxes: Sequence = (), points5: Sequence = ()) -> np.ndarray:
        """Embeddings of several faces of one image, (N, 128) float32 (one batched call)."""
        rgb = _rgb(rgb)
        shapes = [self._full_object(rgb, b, None) for b in boxes]
        shapes += [self._full_object(rgb, None, p) for p in points5]
        if not shapes:
            return np.zeros((0, 128), np.float32)
        net = self._get("resnet")
        import dlib

        with self._locks["resnet"]:
            ds = net.compute_face_descriptor(rgb, dlib.full_object_detections(shapes))
        return np.asarray([np.asarray(d) for d in ds], dtype=np.float32).reshape(-1, 128)

    def chip(self, rgb: np.ndarray, box=None, points5=None, size: int = 150,
             padding: float = 0.25) -> np.ndarray:
        """The aligned face chip the embedder sees (size x size x 3 RGB)."""
        import dlib

        rgb = _rgb(rgb)
        return np.asarray(dlib.get_face_chip(rgb, self._full_object(rgb, box, points5), size, padding))

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of aligned 150x150 chips (what `chip` returns, or views of one: mirrored,
        re-encoded), (N, 128) float32. ~80 ms per chip here with dlib-bin (no BLAS), batched or not; the guard uses the same network on onnxruntime (models/dlib_resnet_onnx.py)."""
        if len(chips) == 0:
            return np.zeros((0, 128), np.float32)
        net = self._get("resnet")
        batch = [_rgb(np.asarray(c)) for c in chips]
        with self._locks["resnet"]:
            ds = net.compute_face_descriptor(batch)
        return np.asarray([np.asarray(d) for d in ds], dtype=np.float32).reshape(-1, 128)

    @staticmethod
    def distance(a, b) -> float:
        """L2 distance between two embeddings (same person if < 0.6)."""
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


_default: Optional[FaceRecognizer] = None
_default_lock = threading.Lock()


def default_recognizer() -> FaceRecognizer:
    """A process-wide shared instance."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FaceRecognizer()
        return _default


def _bench(argv=None) -> int:  # python -m ideud.models.recognizer [IMAGE]
    import sys
    import time

    import cv2

    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else str(Path(__file__).with_name("data") / "astronaut.jpg")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        print(f"cannot read {path}")
        return 2
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    rec = FaceRecognizer()
    t = time.perf_counter()
    rec.warm_up()
    print(f"load: {1e3 * (time.perf_counter() - t):.0f} ms")
    t = time.perf_counter()
    boxes = rec.detect(rgb, 1)
    ms = 1e3 * (time.perf_counter() - t)
    print(f"HOG detect (upsample=1, {rgb.shape[1]}x{rgb.shape[0]}): {ms:.1f} ms, {len(boxes)} faces")
    if not boxes:
        return 1
    p5 = rec.shape5(rgb, boxes[0])
    n = 10
    for label, kw in (("embed(box)", {"box": boxes[0]}), ("embed(points5)", {"points5": p5})):
        rec.embed(rgb, **kw)
        t = time.perf_counter()
        for _ in range(n):
            rec.embed(rgb, **kw)
        print(f"{label}: {1e3 * (time.perf_counter() - t) / n:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bench())
