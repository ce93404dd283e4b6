"""Faces of the public-domain portraits (build split only) with their FaceMesh points, for the
recognizer and guard tests. The build script (tools/build/build_edgeface.py) finds them the same way."""
from __future__ import annotations

import cv2
import numpy as np

from ideud.eval.portraits import build_names, portraits_dir
from ideud.models import facemesh as fm

PORTRAITS = portraits_dir()


def read_rgb(path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])


def portrait_landmarks(rgb: np.ndarray, detector, mesh) -> np.ndarray | None:
    """FaceMesh's 468 points (x, y, z) of the biggest detected face, or None."""
    faces = [f for f in detector.detect(rgb) if not f.soft]
    if not faces:
        return None
    f = max(faces, key=lambda f: f.size)
    kp = f.keypoints
    roi = fm.roi_from_keypoints(f.box, kp[0] if kp is not None else None, kp[1] if kp is not None else None)
    return mesh(rgb, roi)


def build_portrait_faces(n: int, stride: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb, (468, 2) points) of n build portraits spread over the list (never the held-out ones)."""
    from ideud.stream.detect import make_detector

    det, mesh = make_detector("centerface"), fm.FaceMesh()
    out = []
    for name in build_names(PORTRAITS)[::stride]:
        rgb = read_rgb(PORTRAITS / name)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is not None:
            out.append((rgb, lm[:, :2]))
        if len(out) == n:
            break
    mesh.close()
    return out


def first_build_faces(n: int, among: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb, (468, 2) points) of the first n of the first `among` build portraits that
    tools/build/build_face_prior.py's own landmarking finds (as the prior was built)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "build" / "build_face_prior.py"
    spec = importlib.util.spec_from_file_location("build_face_prior", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    names = build_names(PORTRAITS)[:among]
    marks = build.portrait_landmarks([PORTRAITS / name for name in names])
    out = [(read_rgb(PORTRAITS / name), marks[name][:, :2]) for name in names if name in marks][:n]
    assert len(out) == n
    return out
