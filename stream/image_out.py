"""A still image out (stream/runner.py's image runs): OpenCV's encoders for JPEG, PNG, WebP and
BMP, with the colour profile, alpha and --keep-metadata's metadata put back into the file
(stream/image_metadata.py); TIFF, HEIC/HEIF and AVIF by Pillow (stream/still_formats.py), which
writes them itself. Via a temp file, renamed."""
from __future__ import annotations

import io
import logging
import os
from typing import Optional

import cv2
import numpy as np

from ideud.stream.decode import ImageFrame
from ideud.stream.encode import write_via_temp
from ideud.stream.errors import OutputError
from ideud.stream import still_depth
from ideud.stream.image_metadata import ImageMetadata, embed, tiff_save_args, with_icc_profile
from ideud.stream.still_formats import PILLOW_STILLS
from ideud.stream.still_formats import encode as pillow_still
from ideud.stream.types import Frame

log = logging.getLogger("ideud")

ALPHA_EXTENSIONS = {".png", ".webp", ".tif", ".tiff", *PILLOW_STILLS}  # image formats with an alpha channel


def write_image(dst: str, frame: Frame, quality: int = 95, metadata: Optional[ImageMetadata] = None) -> list[str]:
    """Still image out, via a temp file. OpenCV writes no EXIF/GPS/XMP; `metadata` (--keep-metadata,
    stream/image_metadata.py) is added to JPEG, PNG and WebP files, and a TIFF, HEIC or AVIF is
    written by Pillow with it. An ImageFrame's alpha channel is written where the format has one,
    and its colour profile is embedded in every format but BMP. -> what of `metadata` could not be
    written (by kind). A grey source is written grey, a 16-bit one in 16 bits outside the faces
    where the format holds them (stream/still_depth.py)."""
    ext = os.path.splitext(dst)[1].lower()
    alpha = frame.alpha if isinstance(frame, ImageFrame) else None
    icc = frame.icc_profile if isinstance(frame, ImageFrame) else None
    if alpha is not None and ext not in ALPHA_EXTENSIONS:
        log.warning("%s: %s has no transparency; the alpha channel is dropped", dst, ext)
        alpha = None
    # grey where the source was, 16 bits outside the faces where the source and the format have them
    bgr = still_depth.pixels(frame, ext, alpha, getattr(frame, "alpha16", None))
    lost = []
    if ext in (".tif", ".tiff") and bgr.dtype == np.uint16 and bgr.ndim == 3 and (icc or (metadata and metadata.kinds())):
        # Pillow writes no 16-bit colour TIFF, OpenCV no colour profile or metadata: those are kept
        log.warning("%s: a 16-bit colour TIFF with a colour profile or metadata is written in 8 bits", dst)
        bgr = still_depth.pixels_8_bit(bgr)
    if ext in PILLOW_STILLS or (ext in (".tif", ".tiff") and not (bgr.dtype == np.uint16 and bgr.ndim == 3)):
        rgb = np.ascontiguousarray(bgr[..., [2, 1, 0, 3][:bgr.shape[2]]]) if bgr.ndim == 3 else bgr
        if ext in PILLOW_STILLS:
            data, lost = pillow_still(dst, ext, rgb, quality, icc, metadata)
        else:
            data, lost = _tiff(rgb, icc, metadata)
        if lost:
            log.warning("%s: metadata not kept: %s", dst, "; ".join(lost))
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
        ok, buf = cv2.imencode(ext, bgr, params)
        if not ok:
            raise OutputError(f"{dst}: cannot encode an image with extension {ext!r}")
        data = buf.tobytes()
        if icc:
            kept = with_icc_profile(data, ext, icc)
            if kept is None:
                log.warning("%s: the colour profile can be kept in JPEG, PNG, WebP and TIFF outputs only; "
                            "written without", dst)
            data = kept or data
        if metadata is not None and metadata.kinds():
            kept, lost = embed(data, ext, metadata)
            if kept is None:
                lost = [f"{k}: kept in JPEG, PNG, WebP and TIFF outputs only" for k in metadata.kinds()]
                log.warning("%s: metadata can be kept in JPEG, PNG, WebP and TIFF outputs only; written without", dst)
            elif lost:
                log.warning("%s: metadata not kept: %s", dst, "; ".join(lost))
            data = kept or data

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_via_temp(dst, _write)
    return lost


def _tiff(rgb: np.ndarray, icc: Optional[bytes], metadata: Optional[ImageMetadata]) -> tuple[bytes, list[str]]:
    """A TIFF of the RGB(A) pixels by Pillow: LZW as OpenCV writes one (uncompressed where EXIF's
    Exif or GPS directory is kept: `tiff_save_args`), with the colour profile and `metadata`."""
    from PIL import Image

    args, lost = tiff_save_args(metadata, "tiff_lzw")
    if icc:
        args["icc_profile"] = icc
    buf = io.BytesIO()
    if rgb.ndim == 2:  # grey, 8 or 16 bits
        im = Image.fromarray(rgb)  # L or I;16 by the dtype
    else:
        im = Image.fromarray(rgb, "RGBA" if rgb.shape[2] == 4 else "RGB")
    im.save(buf, "TIFF", **args)
    return buf.getvalue(), lost
