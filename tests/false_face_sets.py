"""Footage for the false-face verifier (stream/verify.py), made here, reproducibly.

Face-free kinds (no human face anywhere; every detection on them is a false face):
``mandelbrot`` (FFmpeg's zoom), ``patterns`` (checkerboards, rings, dots, stripes, moving),
``text`` (pages of words, scrolling), ``textures`` (noise, wood, fabric, brick/grass/gravel),
``animals`` (dogs.jpg and scikit-image's cat, coffee, rocket, motorbike, coins, ... panned and zoomed).

Hard real faces (recall must not drop): held-out portraits (build ones for tuning) pasted at 24-96
px face size (`FACE_SIZES`) and as close-ups up to 224 px (`LARGE_SIZES`), plain, blurred (Gaussian
sigma = face size / 20), turned +-30 degrees in the picture plane, dim, one side covered, head
turned about the neck. Each frame comes with its ground truth boxes. Shared by tests/test_false_faces.py and
tools/bench/bench_false_faces.py (which reads it from the checkout, like tools/bench/common.py).
"""
from __future__ import annotations

import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from clips import background, write_clip
from footage import _paste, portrait_head

try:
    from footage import turned_head
except ImportError:  # a tests/footage.py from before the head-turn stand-in: no yaw sets
    turned_head = None

FACE_FREE_KINDS = ("mandelbrot", "patterns", "text", "textures", "animals")
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
# scikit-image's bundled pictures without a human face (astronaut and camera have one)
SKIMAGE_OBJECTS = ("chelsea", "coffee", "rocket", "stereo_motorcycle", "coins", "hubble_deep_field", "immunohistochemistry",
                   "clock")
SKIMAGE_TEXTURES = ("brick", "grass", "gravel")
WORDS = ("frame", "stream", "video", "the", "of", "privacy", "model", "encode", "pixel", "track", "render", "and",
         "face-free", "Mandelbrot", "0123", "lorem", "ipsum", "dolor", "sit", "amet", "QUICK", "brown", "fox")


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (255 * (img - img.min()) / max(float(img.max() - img.min()), 1e-6)).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, 2)
    return np.ascontiguousarray(img[:, :, :3])


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return _rgb(img[0] if isinstance(img, tuple) else img)  # stereo_motorcycle: (left, right, disparity)


def pan_zoom(img: np.ndarray, n: int, width: int, height: int, phase: float = 0.0) -> list[np.ndarray]:
    """A slow camera move over `img`: the window zooms from the whole picture to ~45 % and pans."""
    h, w = img.shape[:2]
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        z = 1.0 - 0.55 * (0.5 - 0.5 * math.cos(math.pi * t))  # window share of the picture
        ww, wh = w * z, min(h, w * z * height / width)
        ww = min(ww, wh * width / height)
        cx = w / 2 + (w - ww) / 2 * math.sin(2 * math.pi * t + phase)
        cy = h / 2 + (h - wh) / 2 * math.cos(2 * math.pi * t + phase)
        m = np.float32([[width / ww, 0, -(cx - ww / 2) * width / ww], [0, height / wh, -(cy - wh / 2) * height / wh]])
        out.append(cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return out


def _mandelbrot_frames(width: int, height: int):
    """FFmpeg's `mandelbrot` source, frame after frame (endless)."""
    import av.filter

    graph = av.filter.Graph()
    src = graph.add("mandelbrot", f"size={width}x{height}:rate=25")
    fmt, sink = graph.add("format", "pix_fmts=rgb24"), graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    while True:
        yield np.ascontiguousarray(sink.pull().to_ndarray())


def mandelbrot(n: int, width: int, height: int) -> list[np.ndarray]:
    """FFmpeg's `mandelbrot` source (the face-free clip of issue 16)."""
    frames = _mandelbrot_frames(width, height)
    return [next(frames) for _ in range(n)]


def mandelbrot_at(indices, width: int = 640, height: int = 360) -> dict[int, np.ndarray]:
    """Only the frames `indices` of `mandelbrot` (a late frame without holding all before it)."""
    frames, wanted = _mandelbrot_frames(width, height), set(indices)
    out = {}
    for i in range(max(wanted) + 1):
        frame = next(frames)
        if i in wanted:
            out[i] = frame
    return out


def patterns(n: int, width: int, height: int) -> list[np.ndarray]:
    """Checkerboards, rings, dots and stripes, each turning, zooming or drifting (n/4 frames each)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    rng = np.random.default_rng(7)
    dots = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 30), rng.integers(0, 256, 3))
            for _ in range(60)]
    for i in range(n):
        t, kind = i / max(n - 1, 1), i % 4
        if kind == 0:  # a checkerboard turning and zooming
            a, s = 0.6 * t, 12 + 30 * t
            u, v = (xx * math.cos(a) + yy * math.sin(a)) / s, (-xx * math.sin(a) + yy * math.cos(a)) / s
            g = ((np.floor(u) + np.floor(v)) % 2) * 200 + 28
            img = np.stack([g, g * 0.9, g * 0.8], -1)
        elif kind == 1:  # concentric rings drifting
            cx, cy = width * (0.3 + 0.4 * t), height / 2
            r = np.hypot(xx - cx, yy - cy)
            img = np.stack([128 + 100 * np.sin(r / (5 + 10 * t)), 128 + 90 * np.cos(r / 9), 120 + 0 * r], -1)
        elif kind == 2:  # coloured dots on a plain ground, drifting
            img = np.full((height, width, 3), 210, np.float32)
            for x, y, r, c in dots:
                cv2.circle(img, (int(x + 80 * t) % width, int(y)), int(r), tuple(float(v) for v in c), -1,
                           cv2.LINE_AA)
        else:  # stripes and a grid
            g = 128 + 110 * np.sign(np.sin((xx + 40 * t) / 7)) * np.sign(np.sin(yy / (6 + 10 * t)))
            img = np.stack([g, 255 - g, g], -1)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def text_pages(n: int, width: int, height: int) -> list[np.ndarray]:
    """Pages of words in several fonts and sizes, scrolling; scikit-image's page and text scans panned."""
    rng = np.random.default_rng(3)
    page = np.full((height * 3, width, 3), 245, np.uint8)
    y = 20
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_DUPLEX,
             cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC)
    while y < page.shape[0] - 10:
        scale = float(rng.choice([0.4, 0.6, 0.9, 1.4, 2.2]))
        font = int(rng.choice(fonts))
        line = " ".join(rng.choice(WORDS, 8))
        ink = (0, 0, 0) if rng.random() < 0.8 else tuple(int(v) for v in rng.integers(0, 160, 3))
        cv2.putText(page, line, (10, y + int(22 * scale)), font, scale, ink, max(1, int(scale * 1.6)), cv2.LINE_AA)
        y += int(34 * scale) + 6
    half = n // 2
    out = [np.ascontiguousarray(page[int(i * 2 * height / max(half, 1)):][:height]) for i in range(half)]
    scans = [_skimage("page"), _skimage("text")]
    rest = n - half
    for k, scan in enumerate(scans):
        out += pan_zoom(scan, rest // 2 + (k < rest % 2), width, height, phase=k)
    return out


def textures(n: int, width: int, height: int) -> list[np.ndarray]:
    """Noise (grey, colour, blurred), wood rings, a woven fabric, and brick / grass / gravel panned."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    big = [_skimage(s) for s in SKIMAGE_TEXTURES]
    out = []
    per = max(1, n // 6)
    warp = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 25) * 400
    panned = [pan_zoom(b, per, width, height, phase=k) for k, b in enumerate(big)]
    for i in range(n):
        kind, t = min(i // per, 5), (i % per) / max(per - 1, 1)
        if kind == 0:
            img = rng.integers(0, 256, (height, width, 3)).astype(np.float32)
        elif kind == 1:
            img = cv2.GaussianBlur(rng.normal(128, 60, (height, width, 3)).astype(np.float32), (0, 0), 1 + 4 * t)
        elif kind == 2:  # wood: rings bent by noise
            r = np.hypot(xx - width * (0.2 + 0.5 * t), (yy - height * 2) * 0.2) + warp
            g = 0.5 + 0.5 * np.sin(r / 4)
            img = np.stack([150 + 70 * g, 95 + 50 * g, 50 + 30 * g], -1)
        elif kind == 3:  # fabric: a twill weave
            u, v = (xx + 30 * t) / 3, yy / 3
            weave = np.sin(u) * np.sin(v) + 0.5 * np.sin((u + v) / 2)
            img = np.stack([90 + 60 * weave, 60 + 40 * weave, 120 + 50 * weave], -1)
            img += rng.normal(0, 8, img.shape)
        else:
            img = panned[(i - 4 * per) % 3][i % per].astype(np.float32)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


# dogs.jpg is not quite face-free: a printed woman's face (a cover lying on its side, behind the
# third dog, bottom-left quarter) is a real face, and in grey footage the verifier rightly keeps it
# (FaceMesh confirms it, CenterFace re-asked scores 0.82). Painted over with its mean colour.
DOGS_PRINTED_FACE = (52, 446, 118, 500)  # x0, y0, x1, y1 in dogs.jpg's pixels


def dogs_jpg(cover_printed_face: bool = True):
    """dogs.jpg (RGB), its printed face painted over unless asked not to; None without testdata."""
    if not (TESTDATA / "dogs.jpg").exists():
        return None
    dogs = np.ascontiguousarray(cv2.imread(str(TESTDATA / "dogs.jpg"))[:, :, ::-1])
    if cover_printed_face:
        x0, y0, x1, y1 = DOGS_PRINTED_FACE
        dogs[y0:y1, x0:x1] = dogs[y0:y1, x0:x1].reshape(-1, 3).mean(0).astype(np.uint8)
    return dogs


def animals(n: int, width: int, height: int) -> list[np.ndarray]:
    """dogs.jpg (its printed face covered) and scikit-image's face-free pictures (a cat, coffee, a
    rocket, ...) panned and zoomed."""
    dogs = dogs_jpg()
    pictures = [] if dogs is None else [dogs]
    pictures += [_skimage(s) for s in SKIMAGE_OBJECTS]
    out = []
    for k, pic in enumerate(pictures):
        m = n // len(pictures) + (k < n % len(pictures))
        out += pan_zoom(pic, m, width, height, phase=0.7 * k)
    return out


def animals_at(indices, n: int = 1000, width: int = 640, height: int = 360) -> dict[int, np.ndarray]:
    """Only the frames `indices` of `animals(n, ...)` (the pictures holding them panned, no other):
    a find of the bench's animals set replayed without making the whole set."""
    dogs = dogs_jpg()
    pictures = [] if dogs is None else [lambda: dogs]
    pictures += [lambda s=s: _skimage(s) for s in SKIMAGE_OBJECTS]
    wanted, out, start = set(indices), {}, 0
    for k, pic in enumerate(pictures):
        m = n // len(pictures) + (k < n % len(pictures))
        here = [i for i in wanted if start <= i < start + m]
        if here:
            frames = pan_zoom(pic(), m, width, height, phase=0.7 * k)
            out.update({i: frames[i - start] for i in here})
        start += m
    return out


MAKERS = {"mandelbrot": mandelbrot, "patterns": patterns, "text": text_pages, "textures": textures,
          "animals": animals}


def face_free(kind: str, n: int, width: int = 640, height: int = 360) -> list[np.ndarray]:
    return MAKERS[kind](n, width, height)


# --------------------------------------------------------------------------- hard real faces

FACE_SIZES = (24, 32, 48, 64, 96)
# past the detector's comfortable range: close-ups (the detector sees 0.7 x these in a 640x360 frame)
LARGE_SIZES = (112, 128, 160, 192, 224)
# "half": one side of the face (alternately left and right) hidden by a flat occluder
VARIANTS = ("plain", "blur", "turn+30", "turn-30", "dim", "half") + (("yaw+45", "yaw-45") if turned_head else ())


@lru_cache(maxsize=64)
def build_head(index: int, size: int = 200) -> np.ndarray:
    """`portrait_head` from the BUILD portraits (for tuning: the held-out ones are only measured on)."""
    return portrait_head(index, size, split="build")


def _places(size: int, width: int, height: int) -> list[tuple[float, float]]:
    """Where the heads go: 4 a frame up to 96 px faces, 2 up to 160 px, then 1 (no face hidden)."""
    if size <= 96:
        return [(width * 0.2, height * 0.3), (width * 0.6, height * 0.28), (width * 0.35, height * 0.72),
                (width * 0.8, height * 0.7)]
    if size <= 160:
        return [(width * 0.25, height * 0.5), (width * 0.75, height * 0.5)]
    return [(width * 0.5, height * 0.5)]


def hard_faces(portraits: int = 12, sizes=FACE_SIZES, variants=VARIANTS, width: int = 640,
               height: int = 360, first: int = 0, split: str = "held_out") -> dict[str, list[tuple[np.ndarray, list]]]:
    """Per variant, frames of held-out (``split="build"``: build) portrait heads (one face size per
    frame: 4 heads a frame up to 96 px, fewer above) over a textured background, with their face
    boxes (x0, y0, x1, y1). ``blur``: Gaussian, sigma = face size / 20; ``turn``: turned in the
    picture plane; ``dim``: 30 % light; ``half``: one side of the face covered; ``yaw``: the head
    turned about the neck (tests/footage.py `turned_head`; held-out split only)."""
    if split == "build":
        heads = [build_head(first + i, 200) for i in range(portraits)]
        variants = tuple(v for v in variants if not v.startswith("yaw"))
    else:
        heads = [portrait_head(first + i, 200) for i in range(portraits)]
    yawed = {v: [turned_head(first + i, 200, float(v[3:])) for i in range(portraits)]
             for v in variants if v.startswith("yaw")}
    bg = background(width, height, seed=21)
    sets = {}
    for variant in variants:
        frames = []
        for size in sizes:
            scale = size / (0.45 * 200)  # the face is ~45 % of the head crop
            places = _places(size, width, height)
            for p0 in range(0, portraits, len(places)):
                img, boxes = bg.copy(), []
                for j, (cx, cy) in enumerate(places):
                    if p0 + j >= portraits:
                        break
                    head = yawed[variant][p0 + j] if variant in yawed else heads[p0 + j]
                    if variant == "blur":
                        head = cv2.GaussianBlur(head, (0, 0), max(0.3, size / 20.0) / scale)
                    elif variant == "half":
                        head = head.copy()
                        side = (p0 + j) % 2
                        # from the face's middle to its edge (face: 55-145 of 200), eyes to chin
                        x0, x1 = (100, 150) if side else (50, 100)
                        head[45:160, x0:x1] = (96, 104, 112)
                    angle = {"turn+30": 30.0, "turn-30": -30.0}.get(variant, 0.0)
                    boxes.append(_paste(img, head, cx, cy, scale, angle))
                if variant == "dim":
                    img = np.clip(img.astype(np.float32) * 0.3 + 4, 0, 255).astype(np.uint8)
                frames.append((img, boxes))
        sets[variant] = frames
    return sets



def heavily_blurred_build_faces(first: int, size: int, divisor: float):
    """Four build portrait heads (`first`...) at a `size` px face, blurred with sigma = size / `divisor`,
    placed as `hard_faces` places them (its blur is size/20), as tools/bench/bench_false_faces.py's
    heavy-blur sets do: (the frame, the boxes)."""
    img, boxes = background(640, 360, seed=21), []
    scale = size / (0.45 * 200)
    for j, (cx, cy) in enumerate(_places(size, 640, 360)):
        head = cv2.GaussianBlur(build_head(first + j, 200), (0, 0), size / divisor / scale)
        boxes.append(_paste(img, head, cx, cy, scale, 0.0))
    return img, boxes

def found(gt_boxes, det_boxes) -> np.ndarray:
    """Per ground-truth face: is there a detection on it (centre within 0.4 of the face size, size
    within 0.5-2.5x)? Lenient on box convention: what matters is that the face gets covered."""
    det = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    hit = np.zeros(len(gt_boxes), bool)
    for k, g in enumerate(gt_boxes):
        gs = max(g[2] - g[0], g[3] - g[1])
        gc = np.array([(g[0] + g[2]) / 2, (g[1] + g[3]) / 2])
        for d in det:
            ds = max(d[2] - d[0], d[3] - d[1])
            dc = np.array([(d[0] + d[2]) / 2, (d[1] + d[3]) / 2])
            if np.hypot(*(dc - gc)) <= 0.4 * gs and 0.5 * gs <= ds <= 2.5 * gs:
                hit[k] = True
    return hit


def detector_input(det, frame):
    """The frame as the detector sees it (its input size) and the scale back to the frame."""
    h, w = frame.shape[:2]
    iw, ih = det.input_size(w, h)
    return cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_AREA), (w / iw, h / ih)


def video_detector_inputs(frames, detect_size, crf: int | None = None, whole: bool = False) -> list:
    """The detector's input for each frame as the product makes it from a video file: H.264
    (libx264's defaults, yuv420p: footage as it comes), decoded by the pipeline's own VideoSource,
    whose swscale copy at `detect_size` is what the detector sees (`detector_input` is the still
    images' path: cv2.INTER_AREA on the RGB frame). `crf`: libx264's quality (None: its default).
    `whole`: the decoded Frames themselves (their `small` is that input)."""
    from ideud.stream.decode import VideoSource
    from ideud.stream.types import Frame

    frames = list(frames)
    with tempfile.TemporaryDirectory() as d:
        path = write_clip(os.path.join(d, "frames.mp4"), frames, audio=False,
                          options=None if crf is None else {"crf": str(crf)})
        src = VideoSource(path, detect_size=detect_size, audio=False)
        try:
            smalls = [it if whole else it.small for it in src.items() if isinstance(it, Frame)]
        finally:
            src.close()
    if len(smalls) != len(frames):
        raise RuntimeError(f"{len(smalls)} of {len(frames)} frames came back from the video")
    return smalls
