"""Sources of more than 8 bits (a phone's 10-bit HDR video) keep their depth outside the faces.

The face pipeline works on 8-bit planes. For a 10-bit (or 12-bit) source the decoder keeps the
frame's planes at 10 bits as well (`Frame.deep`) and derives the 8-bit planes from them by rounding
(v8 = (v10 + 2) >> 2). The blend stage notes every crop it writes (`Frame.touched`); an output that
keeps the depth then takes the 10-bit samples everywhere else, bit for bit, and the de-identified
8-bit samples, scaled (v10 = v8 << 2), inside those crops. So the background, the hair and every
smooth HDR gradient keep their 10 bits, and nothing of a face the pipeline changed survives in the
low bits: inside a touched crop not one source sample is written.

Which outputs keep it (`output_format`): encoders whose 10-bit profile plays where the source
played: HEVC Main 10 (libx265; what phones record), AV1 10-bit (libsvtav1) and FFV1 (lossless).
libx264's High 10 plays in few players (no browser, no QuickTime, no phone's decoder), so H.264
outputs stay 8-bit. `--codec auto` picks libx265 for an HDR source (HLG or PQ transfer) of more than
8 bits written to .mp4, .mov or .mkv by a file run (`auto_codec`); a live output keeps libx264,
whose speed a stream needs.
"""
from __future__ import annotations

import os
import re
import struct
from typing import Optional

import av
import numpy as np

from ideud.stream.types import Frame

DEEP_CODECS = ("libx265", "libsvtav1", "ffv1")
HDR_TRANSFERS = (16, 18)  # SMPTE ST 2084 (PQ: HDR10, Dolby Vision), ARIB STD-B67 (HLG)
HDR_CONTAINERS = (".mp4", ".mov", ".mkv")
_PLANAR = ("yuv420p", "yuv422p", "yuv444p")


def bits_of(pix_fmt: str) -> int:
    """Bits per sample of a pixel format's first component (8 for an unknown one)."""
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, TypeError, IndexError, AttributeError):
        return 8


def deep_format(work_fmt: str) -> Optional[str]:
    """The 10-bit twin of an 8-bit planar working format (yuv420p -> yuv420p10le), or None."""
    plain = work_fmt.replace("yuvj", "yuv")
    return plain + "10le" if plain in _PLANAR else None


def split(f: "av.VideoFrame", work_fmt: str) -> Optional[tuple[list, list]]:
    """(8-bit planes, 10-bit planes) of a decoded frame of more than 8 bits, or None (8-bit, grey,
    packed RGB: the caller converts as before)."""
    fmt10 = deep_format(work_fmt)
    if fmt10 is None or bits_of(f.format.name) <= 8:
        return None
    if f.format.name != fmt10:
        f = f.reformat(format=fmt10)  # p010, 12-bit, ... -> planar 10-bit
    deep = [np.frombuffer(p, np.uint16).reshape(p.height, p.line_size // 2)[:, : p.width].copy() for p in f.planes]
    return [to_8_bit(d) for d in deep], deep


def to_8_bit(plane10: np.ndarray) -> np.ndarray:
    return np.minimum((plane10 + 2) >> 2, 255).astype(np.uint8)


def output_format(codec: "av.Codec", pix_fmt8: str, source_fmt: str) -> Optional[str]:
    """The 10-bit format an encoder writes for this source, or None (8 bits: see the module doc)."""
    if codec.name not in DEEP_CODECS or bits_of(source_fmt) <= 8:
        return None
    fmt10 = deep_format(pix_fmt8)
    return fmt10 if fmt10 in [f.name for f in (codec.video_formats or [])] else None


def auto_codec(codec: str, dst: str, source_fmt: str, transfer: int) -> str:
    """`--codec auto` for a file run: libx265 for an HDR source of more than 8 bits into a container
    that plays HEVC; else `codec` (what the container's own choice gave) unchanged."""
    if (os.path.splitext(dst)[1].lower() in HDR_CONTAINERS and transfer in HDR_TRANSFERS
            and bits_of(source_fmt) > 8 and codec == "libx264"):
        try:
            av.Codec("libx265", "w")
            return "libx265"
        except Exception:
            return codec
    return codec


def auto_codec_of_file(codec: str, src: str, dst: str) -> str:
    """`auto_codec` for a source not yet decoded (a batch run resolves `--codec auto` once per file,
    before its segments are written): its first video stream's format and transfer, as declared."""
    try:
        with av.open(src) as c:
            cc = c.streams.video[0].codec_context
            return auto_codec(codec, dst, cc.pix_fmt or "", int(cc.color_trc or 2))
    except (av.error.FFmpegError, OSError, IndexError, ValueError):
        return codec  # (the run itself says what is wrong with the input)


def planes_to_write(frame: Frame) -> list[np.ndarray]:
    """The frame's planes at 10 bits: the source's outside the touched crops, the pipeline's 8-bit
    samples (<< 2) inside them. Consumes `frame.deep`."""
    if frame.deep is None or [d.shape for d in frame.deep] != [p.shape for p in frame.planes]:
        return [p.astype(np.uint16) << 2 for p in frame.planes]
    out = frame.deep
    frame.deep = None
    for crop in frame.touched:
        for deep, plane in zip(out, frame.planes):
            # subsampled chroma: the crop's chroma box as the blend stage takes it (stream/blend.py)
            sx, sy = (2 if plane.shape[1] < frame.width else 1), (2 if plane.shape[0] < frame.height else 1)
            y0, y1, x0, x1 = crop.y0 // sy, -(-crop.y1 // sy), crop.x0 // sx, -(-crop.x1 // sx)
            np.left_shift(plane[y0:y1, x0:x1], 2, out=deep[y0:y1, x0:x1], dtype=np.uint16)
    return out


def hdr10_params(f: "av.VideoFrame") -> Optional[str]:
    """x265's `master-display` and `max-cll` for an HDR10 frame's static metadata (the mastering
    display's colours and light levels: how players tone-map a PQ video; they describe a screen, not a
    person), or None where the frame carries none."""
    parts = []
    container = f.side_data
    for sd in container:
        if not hasattr(sd, "type"):  # PyAV ≥ 18.1.1: a mapping, iterated by its keys (the types)
            sd = container[sd]
        kind = getattr(sd.type, "name", str(sd.type))
        raw = bytes(sd)
        if kind == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
            r = struct.unpack_from("<20i2i", raw)  # AVRational primaries[3][2] (R, G, B), white[2], min, max; has_*
            q = [r[i] / r[i + 1] if r[i + 1] else 0.0 for i in range(0, 20, 2)]
            if not (r[20] and r[21]):
                continue
            c = [round(v * 50000) for v in q[:8]]  # chromaticity in 0.00002
            lum = [round(v * 10000) for v in q[8:]]  # luminance in 0.0001 cd/m2
            parts.append(f"master-display=G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})"
                         f"WP({c[6]},{c[7]})L({lum[1]},{lum[0]})")
        elif kind == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
            parts.append("max-cll=%d,%d" % struct.unpack_from("<2I", raw))
    return ":".join(parts) or None


HDR10_PARAMS = {"libx265": "x265-params", "libsvtav1": "svtav1-params"}  # where each encoder takes HDR10 metadata


def hdr10_for(codec: str, x265: str) -> str:
    """`hdr10_params`' x265 string as `codec` takes it: SVT-AV1 wants the same numbers as
    chromaticities and cd/m2 (mastering-display=G(0.265,0.69)...L(1000,0.0001):content-light=1000,400)."""
    if codec != "libsvtav1":
        return x265
    out = []
    for part in x265.split(":"):
        key, _, value = part.partition("=")
        if key == "master-display":
            def scaled(m):
                div = 10000.0 if m.group(1) == "L" else 50000.0
                return f"{m.group(1)}({int(m.group(2)) / div:g},{int(m.group(3)) / div:g})"
            out.append("mastering-display=" + re.sub(r"(G|B|R|WP|L)\((\d+),(\d+)\)", scaled, value))
        elif key == "max-cll":
            out.append("content-light=" + value)
    return ":".join(out)
