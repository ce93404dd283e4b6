"""Animated images (WebP, APNG): every frame de-identified, written as an animation again.

OpenCV reads an animated WebP or PNG as its first frame only, and FFmpeg does not decode animated
WebP at all: such an input went through the still-image path and came out as one frame, the rest
of the animation silently lost. Pillow reads the frames here; one `FaceProcessor` takes them in
order (tracks, each person's new face and the guard carry from frame to frame, as in a video), and
Pillow writes them back with their own durations and loop count. Animated GIFs are videos to
FFmpeg and take the video path (a `.gif` output is written by the gif encoder: stream/encode.py).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Optional

import numpy as np

from ideud.stream.decode import ImageFrame
from ideud.stream.encode import write_via_temp
from ideud.stream.errors import InputError, UsageError

ANIMATED_OUTPUTS = {".webp": "WEBP", ".png": "PNG"}


def frame_count(path: str, formats: tuple = ("WEBP", "PNG")) -> int:
    """Frames of an animated WebP or PNG (pages of a TIFF, with formats=("TIFF",)); 1 for anything
    else (or what Pillow cannot open)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) if im.format in formats else 1
    except Exception:
        return 1


def read(path: str) -> tuple[list[ImageFrame], list[int], int]:
    """(frames, each frame's duration in ms, loop count: 0 forever) of an animated WebP or PNG."""
    from PIL import Image

    frames, durations = [], []
    try:
        with Image.open(path) as im:
            loop = int(im.info.get("loop", 0))
            icc = im.info.get("icc_profile") or None
            for k in range(im.n_frames):
                im.seek(k)
                rgba = np.asarray(im.convert("RGBA"))
                alpha = np.ascontiguousarray(rgba[..., 3]) if int(rgba[..., 3].min()) < 255 else None
                frames.append(ImageFrame(index=k, pts=sum(durations), time_base=Fraction(1, 1000),
                                         planes=[np.ascontiguousarray(rgba[..., i]) for i in range(3)], pix_fmt="rgb",
                                         full_range=True, alpha=alpha, icc_profile=icc))
                durations.append(int(im.info.get("duration", 100)))
    except Exception as e:
        raise InputError(f"{path}: an animated image Pillow cannot read ({type(e).__name__})") from None
    return frames, durations, loop


def write(dst: str, frames: list[ImageFrame], durations: list[int], loop: int,
          exif: Optional[bytes] = None, xmp: Optional[bytes] = None) -> None:
    """The frames as an animated WebP or PNG at `dst`, via a temp file."""
    from PIL import Image

    fmt = ANIMATED_OUTPUTS.get(os.path.splitext(dst)[1].lower())
    if fmt is None:
        raise UsageError(f"{dst}: an animated image is written as .webp or .png")
    alpha = any(f.alpha is not None for f in frames)
    ims = [Image.fromarray(np.dstack(f.planes + ([f.alpha if f.alpha is not None else np.full_like(f.planes[0], 255)]
                                                 if alpha else [])), "RGBA" if alpha else "RGB") for f in frames]
    extra = {"icc_profile": frames[0].icc_profile} if frames[0].icc_profile else {}
    if fmt == "WEBP":
        # lossless, as OpenCV writes a still WebP: only the faces change
        extra.update({"lossless": True, **({"exif": exif} if exif else {}), **({"xmp": xmp} if xmp else {})})
    write_via_temp(dst, lambda tmp: ims[0].save(tmp, format=fmt, save_all=True, append_images=ims[1:],
                                                 duration=durations, loop=loop, **extra))
