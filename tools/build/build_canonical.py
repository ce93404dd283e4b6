"""Build the canonical (mean) face of the mesh head from FaceMesh fits.

Developer tool: `python tools/build/build_canonical.py FACES_DIR OUT.npy`.
FACES_DIR holds dlib imglab XML files with face boxes (the PASCAL faces in
shared/testdata). Only near-frontal faces are kept; shapes are aligned by
generalised Procrustes, averaged, turned so that the eye line is the x axis
and the eye-mouth plane faces the camera, and scaled to a 90 mm biocular
width. The result (468x3 floats) ships in models/data/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models.meshhead import BIOCULAR_MM, rotation_angles, similarity_fit

# the imglab reader is the tests' (tests/face_dataset.py); this script runs from a checkout only
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from face_dataset import annotated_boxes  # noqa: E402


def fit_shapes(faces_dir: Path, extra_images=()) -> list[np.ndarray]:
    mesh = fm.FaceMesh()
    shapes = []
    items = list(annotated_boxes(faces_dir)) + [(p, None) for p in extra_images]
    for path, box in items:
        img = cv2.imread(str(path))
        if img is None:
            continue
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        # small faces: upsample so the mesh sees enough pixels
        k = 1.0 if box is None else max(1.0, 160.0 / (box[2] - box[0]))
        if k > 1:
            rgb = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
        if box is None:
            h, w = rgb.shape[:2]
            box = np.array([0.3 * w, 0.15 * h, 0.55 * w, 0.45 * h]) / k
        roi = fm.roi_from_keypoints(box * k, None, None, scale=1.7)
        lm = mesh(rgb, roi)
        for _ in range(2):
            if lm is None:
                break
            lm = mesh(rgb, fm.roi_from_landmarks(lm))
        if lm is not None:
            shapes.append(lm)
    mesh.close()
    return shapes


def procrustes_mean(shapes: list[np.ndarray], iters: int = 10) -> np.ndarray:
    ref = shapes[0] - shapes[0].mean(0)
    for _ in range(iters):
        aligned = []
        for s in shapes:
            sc, r, t = similarity_fit(s, ref)
            aligned.append(sc * s @ r.T + t)
        ref = np.mean(aligned, axis=0)
        ref -= ref.mean(0)
        ref /= np.linalg.norm(ref[fm.LEFT_EYE_OUTER] - ref[fm.RIGHT_EYE_OUTER])
    return ref


def orient(mean: np.ndarray) -> np.ndarray:
    """Eye line along +x (towards the subject's left), eye-mouth plane facing -z."""
    x = mean[fm.LEFT_EYE_OUTER] - mean[fm.RIGHT_EYE_OUTER]
    x /= np.linalg.norm(x)
    eyes = (mean[fm.LEFT_EYE_OUTER] + mean[fm.RIGHT_EYE_OUTER]) / 2
    mouth = (mean[fm.MOUTH_LEFT] + mean[fm.MOUTH_RIGHT]) / 2
    down = mouth - eyes
    y = down - x * (down @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    out = (mean - mean.mean(0)) @ rot.T
    return out * BIOCULAR_MM / np.linalg.norm(out[fm.LEFT_EYE_OUTER] - out[fm.RIGHT_EYE_OUTER])


def build(faces_dir: Path, extra_images=(), max_angle: float = 20.0) -> np.ndarray:
    shapes = fit_shapes(faces_dir, extra_images)
    if len(shapes) < 5:
        raise RuntimeError(f"only {len(shapes)} faces fitted")
    first = orient(procrustes_mean(shapes))
    frontal = []
    for s in shapes:
        _, r, _ = similarity_fit(first, s)
        if max(abs(a) for a in rotation_angles(r)[:2]) <= max_angle:
            frontal.append(s)
    return orient(procrustes_mean(frontal)), len(shapes), len(frontal)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more portrait images")
    a = ap.parse_args(argv)
    canon, n_all, n_frontal = build(a.faces_dir, a.extra)
    np.save(a.out, canon.astype(np.float32))
    print(f"{a.out}: mean of {n_frontal} near-frontal faces (of {n_all} fitted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
