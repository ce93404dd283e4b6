"""Stills that OpenCV neither reads nor writes: HEIC/HEIF (what phones take photos as; by
pillow-heif) and AVIF (by Pillow), in and out.

Read upright: pillow-heif applies a HEIF's own rotation and mirror and resets EXIF Orientation to 1;
an AVIF's EXIF Orientation is applied here (as OpenCV does for a JPEG). Nothing but the picture, its
alpha and its colour profile is taken: a HEIC's thumbnails, depth maps and auxiliary images (other
pictures of the same faces) are never read, so never written. Under --keep-metadata an output of
these formats keeps EXIF and XMP (cleaned as for any output: stream/image_metadata.py); IPTC and
comments have no place in them and are listed as left out.
"""
from __future__ import annotations

import functools
import io
from typing import Optional

import numpy as np

from ideud.stream.errors import InputError, OutputError

PILLOW_STILLS = {".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}  # extension -> Pillow's format
KEPT = ("exif", "xmp")  # metadata kinds these formats hold


@functools.lru_cache(maxsize=1)
def _heif_registered() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def ready(ext: str) -> Optional[str]:
    """Makes Pillow read and write this extension's format; why it cannot, or None."""
    if PILLOW_STILLS.get(ext) == "HEIF" and not _heif_registered():
        return "HEIC/HEIF images need pillow-heif (pip install pillow-heif)"
    return None


def read(path: str, ext: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(RGB uint8, alpha uint8 or None) of the still, upright."""
    from PIL import Image, ImageOps

    why = ready(ext)
    if why:
        raise InputError(f"{path}: {why}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            px = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as e:
        why = " ".join(str(e).split())  # one line (libheif's messages end in a newline)
        raise InputError(f"{path}: not a {PILLOW_STILLS[ext]} image that can be read ({why})") from None
    if px.shape[2] == 4:
        return np.ascontiguousarray(px[..., :3]), np.ascontiguousarray(px[..., 3])
    return np.ascontiguousarray(px), None


def encode(dst: str, ext: str, rgb: np.ndarray, quality: int, icc: Optional[bytes],
           metadata) -> tuple[bytes, list[str]]:
    """The RGB(A) pixels encoded, and what of `metadata` (stream/image_metadata.ImageMetadata) it
    could not hold."""
    from PIL import Image

    why = ready(ext)
    if why:
        raise OutputError(f"{dst}: {why}")
    args: dict = {"quality": quality}
    if icc:
        args["icc_profile"] = icc
    lost = []
    if metadata is not None:
        if metadata.exif:
            args["exif"] = metadata.exif[6:] if metadata.exif.startswith(b"Exif\x00\x00") else metadata.exif
        if metadata.xmp:
            args["xmp"] = metadata.xmp
        lost = [f"{k}: no place for it in {PILLOW_STILLS[ext]}" for k in metadata.kinds() if k not in KEPT]
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGBA" if rgb.shape[2] == 4 else "RGB").save(buf, PILLOW_STILLS[ext], **args)
    return buf.getvalue(), lost
