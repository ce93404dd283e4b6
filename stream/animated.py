"""Animated images (WebP, APNG): every frame de-identified, written as an animation again; and
the pages of a multi-page TIFF, every page de-identified, written as a multi-page TIFF again.

OpenCV reads an animated WebP or PNG as its first frame only, and FFmpeg does not decode animated
WebP at all: such an input went through the still-image path and came out as one frame, the rest
of the animation silently lost. Pillow reads the frames here; one `FaceProcessor` takes them in
order (tracks, each person's new face and the guard carry from frame to frame, as in a video), and
Pillow writes them back with their own durations and loop count. Animated GIFs are videos to
FFmpeg and take the video path (a `.gif` output is written by the gif encoder: stream/encode.py).

A TIFF's pages are separate pictures (scans, a burst, a fax), not frames of one scene: nobody is
carried from one page to the next (the runner ends every track between pages), each page keeps its
own size, is turned upright by its own orientation tag, and the file keeps the first page's
compression where Pillow can write it (LZW otherwise).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterator, Optional

import numpy as np

from ideud.stream.decode import ImageFrame
from ideud.stream.encode import write_via_temp
from ideud.stream.errors import InputError, UsageError
from ideud.stream.image_metadata import ImageMetadata, tiff_save_args

ANIMATED_OUTPUTS = {".webp": "WEBP", ".png": "PNG"}
MAX_BYTES = 2 << 30  # decoded RGBA of all frames: the writer holds every processed frame


def frame_count(path: str, formats: tuple = ("WEBP", "PNG")) -> int:
    """Frames of an animated WebP or PNG (pages of a TIFF, with formats=("TIFF",)); 1 for anything
    else (or what Pillow cannot open)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) if im.format in formats else 1
    except Exception:
        return 1


def frames(path: str, info: dict) -> Iterator[ImageFrame]:
    """The frames of an animated WebP or PNG, one at a time (each kept as its output only: the
    writer needs them all); `info` gets "durations" (ms, one per frame), "loop" (0: forever),
    "icc_profile" and "size"."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h * 4 * int(im.n_frames) > MAX_BYTES:
                raise UsageError(f"{path}: an animation of {im.n_frames} frames of {w}x{h} is over "
                                 f"{MAX_BYTES >> 30} GiB decoded; convert it to a video first")
            info.update(durations=[], loop=int(im.info.get("loop", 0)), icc_profile=im.info.get("icc_profile") or None,
                        size=(w, h))
            for k in range(im.n_frames):
                im.seek(k)
                rgba = np.asarray(im.convert("RGBA"))
                alpha = np.ascontiguousarray(rgba[..., 3]) if int(rgba[..., 3].min()) < 255 else None
                yield ImageFrame(index=k, pts=sum(info["durations"]), time_base=Fraction(1, 1000),
                                 planes=[np.ascontiguousarray(rgba[..., i]) for i in range(3)], pix_fmt="rgb",
                                 full_range=True, alpha=alpha, icc_profile=info["icc_profile"])
                info["durations"].append(int(im.info.get("duration", 100)))
    except (UsageError, InputError):
        raise
    except Exception as e:
        raise InputError(f"{path}: an animated image Pillow cannot read ({type(e).__name__})") from None


TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "jpeg"}


def pages(path: str, info: dict) -> Iterator[ImageFrame]:
    """The pages of a TIFF, one at a time, each upright and in its own size; `info` gets
    "compression" and "icc_profile" (the first page's)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
            for k in range(n):
                im.seek(k)
                if k == 0:
                    info.update(compression=im.info.get("compression"), icc_profile=im.info.get("icc_profile") or None)
                w, h = im.size
                if w * h * 4 * n > MAX_BYTES:
                    raise UsageError(f"{path}: a TIFF of {n} pages of {w}x{h} is over {MAX_BYTES >> 30} GiB decoded")
                rgba = np.asarray(ImageOps.exif_transpose(im.convert("RGBA")))
                alpha = np.ascontiguousarray(rgba[..., 3]) if int(rgba[..., 3].min()) < 255 else None
                yield ImageFrame(index=k, pts=k, time_base=Fraction(1, 1),
                                 planes=[np.ascontiguousarray(rgba[..., i]) for i in range(3)], pix_fmt="rgb",
                                 full_range=True, alpha=alpha, icc_profile=info["icc_profile"])
    except (UsageError, InputError):
        raise
    except Exception as e:
        raise InputError(f"{path}: a multi-page TIFF Pillow cannot read ({type(e).__name__})") from None


def write_pages(dst: str, ims: list, info: dict, meta: Optional[ImageMetadata] = None) -> list[str]:
    """The processed pages (`as_image`) as a multi-page TIFF at `dst`, via a temp file, in the
    input's compression (uncompressed where `meta`'s EXIF directories must be kept:
    image_metadata.tiff_save_args), every page with `meta`. -> what of `meta` could not be kept."""
    compression = info.get("compression")
    extra, lost = tiff_save_args(meta, compression if compression in TIFF_COMPRESSIONS else "tiff_lzw")
    if info.get("icc_profile"):
        extra["icc_profile"] = info["icc_profile"]
    write_via_temp(dst, lambda tmp: ims[0].save(tmp, format="TIFF", save_all=True, append_images=ims[1:], **extra))
    return lost


def as_image(frame: ImageFrame):
    """A processed frame as a Pillow image to write (RGBA where it has transparency)."""
    from PIL import Image

    if frame.alpha is None:
        return Image.fromarray(np.dstack(frame.planes), "RGB")
    return Image.fromarray(np.dstack(frame.planes + [frame.alpha]), "RGBA")


def write(dst: str, ims: list, info: dict, exif: Optional[bytes] = None, xmp: Optional[bytes] = None) -> None:
    """The processed frames (`as_image`) as an animated WebP or PNG at `dst`, via a temp file."""
    fmt = ANIMATED_OUTPUTS.get(os.path.splitext(dst)[1].lower())
    if fmt is None:
        raise UsageError(f"{dst}: an animated image is written as .webp or .png")
    if any(im.mode == "RGBA" for im in ims):
        ims = [im if im.mode == "RGBA" else im.convert("RGBA") for im in ims]
    extra = {"icc_profile": info["icc_profile"]} if info.get("icc_profile") else {}
    if fmt == "WEBP":
        # lossless, as OpenCV writes a still WebP: only the faces change
        extra.update({"lossless": True, **({"exif": exif} if exif else {}), **({"xmp": xmp} if xmp else {})})
    write_via_temp(dst, lambda tmp: ims[0].save(tmp, format=fmt, save_all=True, append_images=ims[1:],
                                                 duration=info["durations"], loop=info["loop"], **extra))
