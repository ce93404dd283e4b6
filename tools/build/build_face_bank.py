"""Build the donor face bank of the `bank` restorer (models/data/face_bank.npz).

Developer tool: `python tools/build/build_face_bank.py [OUT.npz]`.

Only public-domain portraits go in (see models/data/NOTICE.md):

- astronaut: Eileen Collins, NASA photograph (models/data/astronaut.jpg);
- hopper: Grace Hopper, US Navy photograph (matplotlib's sample_data/grace_hopper.jpg).

Per donor the bank keeps a face crop (JPEG bytes, face width ~180 px), its
468 FaceMesh landmarks in crop pixels, and a validity mask (uint8, crop
pixels): where the donor's skin detail may be used. Grace Hopper wears
glasses and a cap, so only her eye openings (inside the lenses) count.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import cv2
import numpy as np

from ideud.models import facemesh as fm

DATA = Path(__file__).resolve().parents[1] / "models" / "data"
FACE_WIDTH = 180.0  # px between the cheek points 234 and 454 in the stored crop

R_EYE = ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133])
L_EYE = ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362])
BROWS = [70, 63, 105, 66, 107, 300, 293, 334, 296, 336]


def _sources() -> list[tuple[str, Path, str]]:
    import matplotlib

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [("astronaut", DATA / "astronaut.jpg", "Eileen Collins, NASA photograph, public domain"),
            ("hopper", hopper, "Grace Hopper, US Navy photograph, public domain (matplotlib sample_data)")]


def fit_mesh(mesh: fm.FaceMesh, rgb: np.ndarray) -> np.ndarray:
    """468 landmarks of the biggest face in a portrait (detector box, ROI refined three times)."""
    from ideud.stream.detect import make_detector

    faces = [f for f in make_detector("auto").detect(rgb, 1.0) if not f.soft]
    if not faces:
        raise RuntimeError("no face found on a donor portrait")
    f = max(faces, key=lambda f: f.size)
    kp = f.keypoints if f.keypoints is not None and len(f.keypoints) >= 2 else (None, None)
    lm = mesh(rgb, fm.roi_from_keypoints(f.box, kp[0], kp[1]))
    for _ in range(3):
        if lm is None:
            raise RuntimeError("no face mesh on a donor portrait")
        lm = mesh(rgb, fm.roi_from_landmarks(lm))
    return lm[:, :2]


def crop_face(rgb: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = FACE_WIDTH / float(np.linalg.norm(lm[234] - lm[454]))
    lo, hi = lm.min(0), lm.max(0)
    size = hi - lo
    x0, y0 = lo - 0.3 * size
    x1, y1 = hi + 0.3 * size
    w, h = int(round((x1 - x0) * k)), int(round((y1 - y0) * k))
    m = np.float32([[k, 0, -x0 * k], [0, k, -y0 * k]])
    crop = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return crop, (lm - [x0, y0]) * k


def _eye_polygon(lm: np.ndarray, ring: tuple[list, list], sx: float, sy: float) -> np.ndarray:
    up, lo = ring
    pts = np.vstack([lm[up], lm[lo][::-1]])
    c = pts.mean(0)
    return c + (pts - c) * [sx, sy]


def validity(name: str, crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    h, w = crop.shape[:2]
    if name != "hopper":
        return np.full((h, w), 255, np.uint8)
    ew = float(np.linalg.norm(lm[33] - lm[133]))
    # only the eye openings seen through the lenses: the cap, the frames (over the brows, round
    # the eyes, on the nose) and her deep wrinkles (drawn onto a young face they read as scratches)
    # are not used
    valid = np.zeros((h, w), np.uint8)
    for ring in (R_EYE, L_EYE):
        poly = _eye_polygon(lm, ring, 1.1, 1.25) + [0, 0.04 * ew]
        cv2.fillPoly(valid, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return valid


def build(out: Path) -> Path:
    mesh = fm.FaceMesh()
    arrays = {}
    names, notes = [], []
    try:
        for name, path, note in _sources():
            img = cv2.imread(str(path))
            if img is None:
                raise FileNotFoundError(path)
            rgb = np.ascontiguousarray(img[:, :, ::-1])
            crop, lm = crop_face(rgb, fit_mesh(mesh, rgb))
            ok, jpg = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            ok, png = cv2.imencode(".png", validity(name, crop, lm))
            arrays[f"{name}_jpg"] = np.frombuffer(jpg.tobytes(), np.uint8)
            arrays[f"{name}_valid_png"] = np.frombuffer(png.tobytes(), np.uint8)
            arrays[f"{name}_landmarks"] = lm.astype(np.float32)
            arrays[f"{name}_brows"] = np.array(name != "hopper")
            names.append(name)
            notes.append(note)
    finally:
        mesh.close()
    arrays["names"] = np.array(names)
    arrays["notes"] = np.array(notes)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    out.write_bytes(buf.getvalue())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(DATA / "face_bank.npz"))
    a = p.parse_args(argv)
    path = build(Path(a.out))
    print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
