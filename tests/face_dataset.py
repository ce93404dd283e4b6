"""Annotated face images (dlib imglab XML, PASCAL VOC pictures in ../shared/testdata/faces) and
detector scoring on them: what the detector tests check and the detection benchmark reports."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ideud.models.geometry import iou_matrix

IOU = 0.4


@dataclass
class Annotated:
    file: str
    boxes: np.ndarray  # (N,4) x0 y0 x1 y1
    ignore: np.ndarray = field(default=None)  # (N,) bool: boxes marked ignore='1'


def load_imglab(xml_path) -> list[Annotated]:
    """dlib imglab XML: <image file=...><box top left width height [ignore='1']/>."""
    out = []
    for im in ET.parse(xml_path).getroot().iter("image"):
        boxes, ignore = [], []
        for b in im.iter("box"):
            x, y = float(b.get("left")), float(b.get("top"))
            boxes.append([x, y, x + float(b.get("width")), y + float(b.get("height"))])
            ignore.append(b.get("ignore", "0") == "1")
        out.append(Annotated(im.get("file"), np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(ignore, bool)))
    return out


def read_rgb(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def run_detector(det, frame_rgb: np.ndarray):
    """What the pipeline does: downscale to input_size, detect, scale back."""
    h, w = frame_rgb.shape[:2]
    iw, ih = det.input_size(w, h)
    small = frame_rgb if (iw, ih) == (w, h) else cv2.resize(frame_rgb, (iw, ih), interpolation=cv2.INTER_AREA)
    return [f for f in det.detect(small, scale=(w / iw, h / ih)) if not f.soft]  # soft finds: not faces


def match(gt: np.ndarray, det: np.ndarray, thr: float = IOU) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one greedy matching by IoU. Returns (gt matched (N,), det matched (M,))."""
    gm = np.zeros(len(gt), bool)
    dm = np.zeros(len(det), bool)
    if len(gt) and len(det):
        m = iou_matrix(gt, det)
        for g, d in sorted(np.argwhere(m >= thr).tolist(), key=lambda p: -m[p[0], p[1]]):
            if not gm[g] and not dm[d]:
                gm[g] = dm[d] = True
    return gm, dm


def apply_box_correction(boxes: np.ndarray, c: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + c[0] * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + c[1] * h
    return np.stack([cx - c[2] * w / 2, cy - c[3] * h / 2, cx + c[2] * w / 2, cy + c[3] * h / 2], 1)


def paste_on_canvas(img: np.ndarray, width: int = 1280, height: int = 720) -> tuple[np.ndarray, int, int]:
    """`img` at its own size on a grey frame, a little left of centre. Returns (frame, x, y)."""
    h, w = img.shape[:2]
    canvas = np.full((height, width, 3), 128, np.uint8)
    x, y = max(0, (width - w) // 4), max(0, (height - h) // 2)
    canvas[y : y + h, x : x + w] = img[: height - y, : width - x]
    return canvas, x, y


def detect_dataset(det, faces_dir: Path, items: list[Annotated], canvas: Optional[tuple[int, int]] = None):
    """Detections (N,4) per image, in the image's own pixel coordinates."""
    out = []
    for a in items:
        img = read_rgb(faces_dir / a.file)
        if canvas:
            frame, ox, oy = paste_on_canvas(img, *canvas)
        else:
            frame, ox, oy = img, 0, 0
        faces = run_detector(det, frame)
        out.append(np.asarray([f.box for f in faces], np.float64).reshape(-1, 4) - [ox, oy, ox, oy])
    return out


def score(items: list[Annotated], dets: list[np.ndarray], thr: float = IOU, correction=None) -> dict:
    found = total = extra = 0
    missed = []
    for a, d in zip(items, dets):
        keep = ~a.ignore
        if correction is not None:
            d = apply_box_correction(d, correction)
        gm, _ = match(a.boxes[keep], d, thr)
        found += int(gm.sum())
        total += int(keep.sum())
        missed += [(a.file, [round(v) for v in b]) for b in a.boxes[keep][~gm]]
        # detections that touch no annotation at all (not even ignored ones)
        if len(d):
            extra += int((iou_matrix(a.boxes, d).max(0, initial=0) < 0.2).sum() if len(a.boxes) else len(d))
    return {"found": found, "total": total, "recall": found / max(total, 1), "unmatched_dets": extra, "missed": missed}


def annotated_boxes(faces_dir: Path):
    """(image path, box x0 y0 x1 y1) of every annotated face in training.xml and testing.xml."""
    for xml in ("training.xml", "testing.xml"):
        if (faces_dir / xml).exists():
            for item in load_imglab(faces_dir / xml):
                for box in item.boxes:
                    yield faces_dir / item.file, box
