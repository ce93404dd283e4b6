"""Synthetic "real footage": held-out public-domain portraits animated over backgrounds, with a
hand crossing a mouth, a small face and a scene cut. Shared by tests/test_footage.py and
tools/bench/bench_footage.py (which reads it from the checkout, like tools/bench/common.py).

Every frame comes with its ground truth: the face boxes and the occluder's mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

from clips import background
from ideud.eval.portraits import held_out_names, portraits_dir


@lru_cache(maxsize=16)
def portrait_head(index: int, size: int = 200, split: str = "held_out") -> np.ndarray:
    """A held-out portrait's head and shoulders, square, `size` px: the face ~45% of the side.
    `split="build"`: from the build portraits instead (for tuning; held-out ones are only measured on)."""
    from ideud.eval.portraits import build_names
    from ideud.stream.detect import make_detector

    names = (build_names if split == "build" else held_out_names)(portraits_dir())
    det = make_detector("centerface", verify=split != "build")
    for name in names[index:] + names[:index]:
        bgr = cv2.imread(str(portraits_dir() / name), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = [f for f in det.detect(rgb) if not f.soft]
        if not faces:
            continue
        f = max(faces, key=lambda f: f.size)
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        half = f.size * 1.1
        m = np.array([[size / (2 * half), 0, 0], [0, size / (2 * half), 0]], np.float32)
        m[:, 2] = [size / 2 - cx * m[0, 0], size / 2 - cy * m[1, 1]]
        return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    raise FileNotFoundError(f"no {split} portrait with a detectable face")


def mesh_of(rgb: np.ndarray, detector=None, mesh=None, inside: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """FaceMesh's fit ((468, 3), image pixels) of the biggest face CenterFace finds, or None.
    `detector` / `mesh`: ones the caller keeps open across calls (made, and the mesh closed, here otherwise).
    `inside` (x0, y0, x1, y1 in image pixels): instead, the face whose box is centred inside it, the
    nearest to its centre (None if there is none)."""
    from ideud.models import facemesh as fm

    f = find_of(rgb, detector, inside)
    if f is None:
        return None
    own = mesh is None
    mesh = fm.FaceMesh() if own else mesh
    try:
        return mesh_at(rgb, f, mesh)
    finally:
        if own:
            mesh.close()


def mesh_at(rgb: np.ndarray, found, mesh) -> Optional[np.ndarray]:
    """FaceMesh's fit ((468, 3), image pixels) in `rgb` where CenterFace found the face `found` (in this
    image, or in another of the same place), or None."""
    from ideud.models import facemesh as fm

    return mesh(rgb, fm.roi_from_keypoints(found.box, found.keypoints[0], found.keypoints[1]))


def find_of(rgb: np.ndarray, detector=None, inside: Optional[np.ndarray] = None):
    """The biggest face CenterFace finds in `rgb` (not a soft find), or with `inside` (x0, y0, x1, y1)
    the one whose box is centred inside it, nearest its centre; None if there is none."""
    from ideud.stream.detect import make_detector

    found = [f for f in (detector or make_detector("centerface")).detect(rgb) if not f.soft]
    if inside is not None:
        lo, hi = np.asarray(inside[:2], float), np.asarray(inside[2:4], float)

        def centre(f) -> np.ndarray:
            return (np.asarray(f.box[:2], float) + np.asarray(f.box[2:4], float)) / 2

        found = [f for f in found if np.all((centre(f) >= lo) & (centre(f) <= hi))]
        found = [min(found, key=lambda f: float(np.linalg.norm(centre(f) - (lo + hi) / 2)))] if found else []
    return max(found, key=lambda f: f.size) if found else None


def portrait_mesh(index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`portrait_head(index, size)` and its FaceMesh fit ((468, 3), image pixels)."""
    head = portrait_head(index, size)
    lm = mesh_of(head)
    if lm is None:
        raise ValueError(f"no face mesh on held-out portrait {index}")
    return head, lm


def near_face_occluders(frames: list) -> list:
    """(frame index, the first face's box mask, the occluder in it) of each frame where the
    occluder is in front of the first face."""
    out = []
    for i, f in enumerate(frames):
        if f.occluder is None or not f.faces:
            continue
        x0, y0, x1, y1 = (int(max(0, v)) for v in f.faces[0])
        face = np.zeros(f.rgb.shape[:2], bool)
        face[y0:y1, x0:x1] = True
        if (f.occluder & face).any():
            out.append((i, face, f.occluder & face))
    return out


@lru_cache(maxsize=16)
def _head_depth(index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth (px, negative toward the camera) of `portrait_head(index, size)`'s head, NaN elsewhere,
    and the face's mesh (z on the same scale):
    the face from its FaceMesh fit, the rest of the head a vertical cylinder about the neck's axis
    (radius 0.6 x the face's width), from the top of the picture down to just below the chin."""
    from matplotlib import tri as mtri

    from ideud.models import facemesh as fm

    head, lm = portrait_mesh(index, size)
    oval = lm[fm.FACE_OVAL]
    xc, radius = float(oval[:, 0].mean()), 0.6 * float(np.ptp(oval[:, 0]))
    chin = float(lm[:, 1].max())
    xs = np.arange(size, dtype=np.float64)
    reach = radius * radius - (xs - xc) ** 2
    cyl = np.where(reach > 0, -np.sqrt(np.maximum(reach, 0.0)), np.nan)
    depth = np.repeat(cyl[None, :], size, 0)
    depth[int(chin + 0.04 * size):] = np.nan  # neck and shoulders do not turn
    lift = float(np.nanmedian(np.interp(oval[:, 0], xs, np.nan_to_num(cyl)) - oval[:, 2]))  # rim on the cylinder
    yy, xx = np.mgrid[0:size, 0:size]
    face = mtri.LinearTriInterpolator(mtri.Triangulation(lm[:, 0], lm[:, 1]), lm[:, 2] + lift)(xx, yy)
    inside = ~np.ma.getmaskarray(face) & np.isfinite(depth)
    depth[inside] = np.asarray(face)[inside]
    depth.flags.writeable = False
    lm = lm.copy()
    lm[:, 2] += lift
    lm.flags.writeable = False
    return depth, lm


def _turn(x: np.ndarray, z: np.ndarray, xc: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    return xc + (x - xc) * c + z * s, -(x - xc) * s + z * c


def _axis(depth: np.ndarray) -> float:
    cols = np.nonzero(np.isfinite(depth).any(0))[0]
    return (cols[0] + cols[-1]) / 2.0


def turned_landmarks(index: int, size: int, yaw: float) -> np.ndarray:
    """Where the portrait's own mesh points go in `turned_head(index, size, yaw)` (x, y; truth)."""
    depth, lm = _head_depth(index, size)
    x2, _ = _turn(lm[:, 0], lm[:, 2], _axis(depth), yaw)
    return np.stack([x2, lm[:, 1]], 1)


def turned_face_box(index: int, size: int, yaw: float, cx: float, cy: float) -> np.ndarray:
    """The face's box in the picture (x0, y0, x1, y1) where `turned_head` is pasted at (cx, cy)
    unscaled: the turned mesh's extent (the frontal box `_paste` returns misses a turned face)."""
    pts = turned_landmarks(index, size, yaw) + [cx - size / 2, cy - size / 2]
    return np.r_[pts.min(0), pts.max(0)]


def turned_head(index: int, size: int, yaw: float) -> np.ndarray:
    """`portrait_head(index, size)` with the head turned by `yaw` degrees about the neck (a stand-in
    for a head turn: the face's 3D mesh plus a cylinder for the rest of the head, re-projected with
    a depth test; the side of the head that comes into view is filled from its neighbours, so past
    ~60 degrees it is a smear, not a real profile)."""
    head = portrait_head(index, size)
    if abs(yaw) < 1e-6:
        return head
    depth = _head_depth(index, size)[0]
    up = 2  # splat at twice the resolution: no holes where the surface is stretched a little
    src = cv2.resize(head, (size * up, size * up), interpolation=cv2.INTER_LINEAR)
    z = cv2.resize(depth.astype(np.float32), (size * up, size * up), interpolation=cv2.INTER_NEAREST)
    turn = np.isfinite(z)
    yy, xx = np.nonzero(turn)
    zz, xx, yy = z[turn], xx / up, yy / up
    x2, z2 = _turn(xx, zz, _axis(depth), yaw)
    xo, yo = np.round(x2).astype(int), np.round(yy).astype(int)
    ok = (xo >= 0) & (xo < size) & (yo < size)
    order = np.argsort(-z2[ok], kind="stable")  # far first: the near surface is written last
    out = head.copy()
    hole = np.isfinite(depth).astype(np.uint8)  # the head's old place, until covered again
    out[yo[ok][order], xo[ok][order]] = src[turn][ok][order]
    hit = np.zeros((size, size), np.uint8)
    hit[yo[ok], xo[ok]] = 1
    covered = cv2.morphologyEx(hit, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    # uncovered: the background behind the head, per row between the picture's left and right edge
    t = np.linspace(0.0, 1.0, size)[None, :, None]
    behind = ((1 - t) * head[:, :1].astype(np.float64) + t * head[:, -1:].astype(np.float64)).astype(np.uint8)
    bare = (hole > 0) & (covered == 0)
    out[bare] = behind[bare]
    return cv2.inpaint(out, ((hole > 0) & (covered > 0) & (hit == 0)).astype(np.uint8), 3, cv2.INPAINT_TELEA)


def hand_shape(size: int) -> np.ndarray:
    """A uint8 mask (size x size) of an open hand seen from the side: palm and four fingers."""
    m = np.zeros((size, size), np.uint8)
    s = size / 100.0
    cv2.ellipse(m, (int(50 * s), int(70 * s)), (int(30 * s), int(24 * s)), 0, 0, 360, 255, -1)
    for k, x in enumerate((28, 42, 56, 70)):
        top = (14, 6, 8, 18)[k]
        cv2.rectangle(m, (int((x - 5) * s), int(top * s)), (int((x + 5) * s), int(70 * s)), 255, -1)
        cv2.circle(m, (int(x * s), int(top * s)), int(5 * s), 255, -1)
    return m


def hand_texture(size: int, seed: int = 3) -> np.ndarray:
    """Skin-coloured RGB with shading and fine texture (not a flat fill: PSNR must mean something)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    shade = 0.85 + 0.25 * np.sin(np.pi * xx) * (1.0 - 0.3 * yy)
    base = np.array([196, 140, 112], float)
    tex = base * shade[..., None] + rng.normal(0, 4, (size, size, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


@dataclass
class FootageFrame:
    rgb: np.ndarray
    faces: list = field(default_factory=list)  # (x0, y0, x1, y1) of the pasted heads' face area
    occluder: np.ndarray | None = None  # bool mask of the hand (where it is in front of a face)
    scene: int = 0
    # the frame without its occluder (only where one is pasted): the person as a photo of them shows
    # them, not holding this hand or microphone (bench_footage's judge compares outputs with it)
    clean: np.ndarray | None = None


def _paste(img: np.ndarray, head: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    size = head.shape[0]
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += [cx - size / 2, cy - size / 2]
    mask = cv2.warpAffine(np.full((size, size), 255, np.uint8), m, (w, h))
    warped = cv2.warpAffine(head, m, (w, h), flags=cv2.INTER_LINEAR)
    img[mask > 0] = warped[mask > 0]
    half = 0.45 * size * scale / 2  # the face is ~45% of the head crop
    return np.array([cx - half, cy - half, cx + half, cy + half])


def microphone_shape(size: int) -> np.ndarray:
    """A uint8 mask (size x size) of a hand-held microphone seen from the front: a round head on a
    handle that runs down out of the picture."""
    m = np.zeros((size, size), np.uint8)
    r = int(0.22 * size)
    cv2.rectangle(m, (size // 2 - int(0.09 * size), int(0.3 * size)), (size // 2 + int(0.09 * size), size - 1), 255, -1)
    cv2.circle(m, (size // 2, int(0.25 * size)), r, 255, -1)
    return m


def microphone_texture(size: int, seed: int = 4) -> np.ndarray:
    """Dark metal with a lighter grille of dots and some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    grille = ((yy % 4 < 2) & (xx % 4 < 2)) * 35.0
    tex = np.array([52, 54, 60], float) + grille[..., None] + rng.normal(0, 4, (size, size, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def _paste_occluder(img: np.ndarray, x: float, y: float, size: int, kind: str = "hand") -> np.ndarray:
    shape, tex = (hand_shape(size), hand_texture(size)) if kind == "hand" else \
        (microphone_shape(size), microphone_texture(size))
    h, w = img.shape[:2]
    m = np.float32([[1, 0, x], [0, 1, y]])
    mask = cv2.warpAffine(shape, m, (w, h), flags=cv2.INTER_NEAREST) > 0
    tex_full = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_NEAREST)
    img[mask] = tex_full[mask]
    return mask


def _paste_hand(img: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    return _paste_occluder(img, x, y, size, "hand")


def hand_over_mouth(n: int, width: int = 480, height: int = 270, head: int = 220, portrait: int = 0,
                    enter: int | None = None, leave: int | None = None, kind: str = "hand") -> list[FootageFrame]:
    """One portrait, slowly drifting; from frame `enter` a hand (`kind="microphone"`: a microphone)
    slides in from below to cover the mouth, and from frame `leave` (if given) slides out again.
    `enter` <= -6: it is in place from the first frame."""
    bg = background(width, height, seed=5)
    face = portrait_head(portrait, head)
    enter = n // 3 if enter is None else enter
    out = []
    for i in range(n):
        img = bg.copy()
        t = i / max(n - 1, 1)
        cx, cy = width / 2 + 6 * math.sin(2 * math.pi * t), height / 2 + 4 * math.cos(2 * math.pi * t)
        box = _paste(img, face, cx, cy, 1.0, 2.0 * math.sin(2 * math.pi * t))
        occ = clean = None
        k = min(1.0, (i - enter) / 6)  # slides up over 6 frames, then stays
        if leave is not None and i >= leave:
            k = min(k, 1.0 - (i - leave) / 6)  # and down again over 6 frames
        if i >= enter and k > 0:
            hs = int(0.42 * head)
            mouth_y = cy + 0.16 * head
            y = height + (mouth_y - 0.35 * hs - height) * k
            clean = img.copy()
            occ = _paste_occluder(img, cx - hs / 2, y, hs, kind)
            occ, clean = (occ, clean) if occ.any() else (None, None)
        out.append(FootageFrame(img, [box], occ, clean=clean))
    return out


def two_scenes(n_a: int, n_b: int, width: int = 480, height: int = 270, head: int = 200) -> list[FootageFrame]:
    """Scene A: a portrait on the left; a hard cut; scene B: another portrait on the right, another set."""
    out = []
    bg_a, bg_b = background(width, height, seed=1), 255 - background(width, height, seed=2)
    bg_b = np.ascontiguousarray(bg_b[:, :, ::-1])
    a, b = portrait_head(1, head), portrait_head(2, head)
    for i in range(n_a):
        img = bg_a.copy()
        box = _paste(img, a, width * 0.3 + 2 * i, height / 2, 1.0, 0.0)
        out.append(FootageFrame(img, [box], scene=0))
    for i in range(n_b):
        img = bg_b.copy()
        box = _paste(img, b, width * 0.72 - 2 * i, height / 2 + 10, 0.9, 0.0)
        out.append(FootageFrame(img, [box], scene=1))
    return out


def walking_closer(n: int = 60, portrait: int = 0, width: int = 640, height: int = 360) -> list[FootageFrame]:
    """One portrait walking towards the camera: its face from ~40 px to ~160 px over `n` frames."""
    head, bg, out = portrait_head(portrait, 340), background(width, height, seed=7), []
    for i in range(n):
        img = bg.copy()
        box = _paste(img, head, width / 2 + 20 * i / n, height * 0.53, 0.26 * (1.0 + 3.0 * i / (n - 1)), 0.0)
        out.append(FootageFrame(img, [box]))
    return out


def repeated(frames: list[FootageFrame], times: int) -> list[FootageFrame]:
    """Every frame `times` times in a row (pulldown-like repeats)."""
    return [f for f in frames for _ in range(times)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def multi_person(width: int = 640, height: int = 360) -> list[FootageFrame]:
    """The benchmark clip (60 frames): scene A, two people, one near (a hand comes over the mouth at
    frame 12) and one far (a ~22 px face), camera shake (motion blur) on frames 4-7, standing still
    for frames 28-39; a cut; scene B, a face turned 60 degrees in the picture plane and a far one
    cut by the frame edge."""
    out = []
    bg_a, bg_b = background(width, height, seed=11), np.ascontiguousarray(255 - background(width, height, seed=12))
    near, far, tilted, edge = (portrait_head(i, s) for i, s in ((3, 200), (4, 50), (5, 170), (6, 70)))
    shake = np.full((1, 9), 1 / 9.0, np.float32)  # a horizontal motion blur of 9 px
    for i in range(40):
        img = bg_a.copy()
        t = min(i, 28) / 40  # still from frame 28 on
        boxes = [_paste(img, near, 200 + 30 * math.sin(2 * math.pi * t), 190, 1.0, 4 * math.sin(2 * math.pi * t)),
                 _paste(img, far, 480 - 40 * t, 120 + 5 * math.cos(2 * math.pi * t), 1.0, 0.0)]
        occ = clean = None
        if i >= 12:
            hs, k = 84, min(1.0, (i - 12) / 6)
            cx, cy = (boxes[0][0] + boxes[0][2]) / 2, (boxes[0][1] + boxes[0][3]) / 2
            clean = img.copy()
            occ = _paste_hand(img, cx - hs / 2, height + (cy + 0.16 * 200 - 0.35 * hs - height) * k, hs)
            occ, clean = (occ, clean) if occ.any() else (None, None)  # (frame 12: still below the picture)
        if 4 <= i < 8:
            img, clean = cv2.filter2D(img, -1, shake), None if clean is None else cv2.filter2D(clean, -1, shake)
        out.append(FootageFrame(img, boxes, occ, scene=0, clean=clean))
    for i in range(20):
        img = bg_b.copy()
        boxes = [_paste(img, tilted, 330 + 2 * i, 180, 1.0, 60.0),
                 _paste(img, edge, 12, 250 - i, 1.0, 0.0)]
        out.append(FootageFrame(img, boxes, scene=1))
    return out


def hard_turns(width: int = 640, height: int = 360) -> list[FootageFrame]:
    """The harder clip (48 frames, one shot): a near face walking (camera shake, a 13 px motion
    blur, on frames 10-13), a face turning its head 0 -> 75 degrees -> 0 (frames 14-42, 5 degrees
    a frame, `turned_head`), a small ~40 px face, and the stage light dipping to 85 % on frames 30-32."""
    bg = background(width, height, seed=13)
    near, small = portrait_head(3, 200), portrait_head(4, 90)
    shake = np.full((1, 13), 1 / 13.0, np.float32)
    out = []
    for i in range(48):
        img = bg.copy()
        yaw = float(np.interp(i, (14, 29, 32, 42), (0, 75, 75, 0)))
        boxes = [_paste(img, near, 150 + 4 * i, 200, 1.0, 3 * math.sin(i / 6)),
                 _paste(img, turned_head(5, 170, yaw), 430, 170, 1.0, 0.0),
                 _paste(img, small, 560 - 1.5 * i, 70, 1.0, 0.0)]
        boxes[1] = turned_face_box(5, 170, yaw, 430, 170)
        if 10 <= i < 14:
            img = cv2.filter2D(img, -1, shake)
        if 30 <= i < 33:
            img = (img.astype(np.float32) * 0.85).astype(np.uint8)  # (70 % read as a cut before scene.py's structure test)
        out.append(FootageFrame(img, boxes))
    return out
