"""Reading what is compared: an image or a video, validated as a pair, decoded frame by frame (RGB)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class EvalInputError(ValueError):
    """Bad input: missing/unreadable file, size or frame-count mismatch."""


# ====================================================================== input
@dataclass
class MediaInfo:
    path: str
    kind: str  # "image" | "video"
    width: int
    height: int
    frames: int  # 0 = unknown



def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalInputError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def probe(path) -> MediaInfo:
    """Kind, size and frame count of an image or a video (EvalInputError if unusable)."""
    p = Path(path)
    if not p.exists():
        raise EvalInputError(f"no such file: {p}")
    if not p.is_file():
        raise EvalInputError(f"not a file: {p}")
    if _is_image(p):
        img = _read_image(p)
        return MediaInfo(str(p), "image", img.shape[1], img.shape[0], 1)
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise EvalInputError(f"no video stream in {p}")
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            n = int(s.frames or 0)
    except EvalInputError:
        raise
    except Exception as e:  # av.error.FFmpegError, OSError, ...
        raise EvalInputError(f"cannot read video {p}: {one_line(e)}") from None
    if not w or not h:
        raise EvalInputError(f"cannot read video {p}: no frame size")
    return MediaInfo(str(p), "video", int(w), int(h), n)


def iter_frames(path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an image (one) or a video (PyAV)."""
    p = Path(path)
    if _is_image(p):
        yield _read_image(p)
        return
    import av

    try:
        c = av.open(str(p))
    except Exception as e:
        raise EvalInputError(f"cannot read video {p}: {one_line(e)}") from None
    try:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        it = c.decode(s)
        while True:
            try:
                f = next(it)
            except StopIteration:
                return
            except Exception as e:  # decode error mid-stream
                raise EvalInputError(f"decode error in {p}: {one_line(e)}") from None
            yield f.to_ndarray(format="rgb24")
    finally:
        c.close()


def open_pair(original, deidentified, max_frames: Optional[int] = None) -> tuple:
    """Validate a pair up front; returns (MediaInfo, MediaInfo)."""
    a, b = probe(original), probe(deidentified)
    if a.kind != b.kind:
        raise EvalInputError(f"cannot compare {a.kind} {a.path} with {b.kind} {b.path}")
    if (a.width, a.height) != (b.width, b.height):
        raise EvalInputError(
            f"size mismatch: {a.path} is {a.width}x{a.height}, {b.path} is {b.width}x{b.height}")
    if a.frames and b.frames and a.frames != b.frames:
        if max_frames is None or max_frames > min(a.frames, b.frames):
            raise EvalInputError(
                f"frame count mismatch: {a.path} has {a.frames} frames, {b.path} has {b.frames}")
    return a, b


def iter_pair(original, deidentified, max_frames: Optional[int] = None,
              every: int = 1) -> Iterator[tuple]:
    """``(index, rgb_original, rgb_output)`` for frames 0, every, 2*every, ...

    Raises EvalInputError on a size or frame-count mismatch (also when it
    only shows while decoding).
    """
    a, b = open_pair(original, deidentified, max_frames)
    every = max(1, int(every))
    ia, ib = iter_frames(a.path), iter_frames(b.path)
    i = 0
    try:
        while max_frames is None or i < max_frames:
            fa, fb = next(ia, None), next(ib, None)
            if fa is None and fb is None:
                return
            if fa is None or fb is None:
                short, long_ = (a, b) if fa is None else (b, a)
                raise EvalInputError(
                    f"frame count mismatch: {short.path} ends after {i} frames, {long_.path} goes on")
            if fa.shape != fb.shape:
                raise EvalInputError(
                    f"size mismatch at frame {i}: {fa.shape[1]}x{fa.shape[0]} vs {fb.shape[1]}x{fb.shape[0]}")
            if i % every == 0:
                yield i, fa, fb
            i += 1
    finally:
        ia.close()
        ib.close()


def one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s or type(e).__name__

