"""A still image's metadata under --keep-metadata: read from the input, cleaned of pictures, put
into the output. Without --keep-metadata nothing of this is read (OpenCV writes none of it); the
ICC colour profile is kept in every mode (it describes a camera or an editor, not a person).

Kept, in JPEG, PNG, WebP and TIFF outputs (from any input Pillow reads):
- EXIF: camera, times, GPS, the maker note; Orientation set to 1 (the pixels are upright now);
- XMP, its tiff:Orientation set to 1 too;
- IPTC (a JPEG's Photoshop APP13 resources, a TIFF's IPTC tag) in JPEG and TIFF outputs;
- comments: JPEG COM segments and PNG text chunks (across the two formats as COM / tEXt; in a
  TIFF its ImageDescription where the EXIF has none; WebP has no place for them).
A TIFF keeps EXIF's Exif and GPS directories only uncompressed (libtiff, which Pillow compresses
with, cannot write them): such an output is written uncompressed (`tiff_save_args`).

Never kept, even with --keep-metadata: pictures carried inside the metadata. A maker note may hold
a preview JPEG, XMP a thumbnail, Photoshop resources a thumbnail, EXIF IFD1 a thumbnail: each is
the input picture, faces as they were, so keeping it would write them raw. What was left out is
listed by kind (`ImageMetadata.dropped`, in the report), never by content.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

# signatures of embedded pictures: JPEG (SOI + a marker), PNG, and both as base64 (XMP, text)
_PICTURE = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_PICTURE_B64 = re.compile(rb"(?:/9j/|iVBORw0KGgo)[A-Za-z0-9+/=\s]{64,}")
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PHOTOSHOP = b"Photoshop 3.0\x00"
# Photoshop resources that hold pictures: thumbnails (1033, 1036) and EXIF copies (1058, 1059)
_PICTURE_RESOURCES = {0x0409, 0x040C, 0x0422, 0x0423}
_IPTC_RESOURCE = 0x0404
_MAX_SEGMENT = 0xFFFF - 2  # a JPEG segment's payload


@dataclass
class ImageMetadata:
    exif: Optional[bytes] = None  # "Exif\0\0" + TIFF data
    xmp: Optional[bytes] = None
    photoshop: dict = field(default_factory=dict)  # Photoshop resource id -> data (IPTC is 0x0404)
    comments: list = field(default_factory=list)  # (keyword or "", text) pairs
    dropped: list = field(default_factory=list)  # kinds left out and why: no content

    def kinds(self) -> list[str]:
        return [k for k, v in (("exif", self.exif), ("xmp", self.xmp), ("iptc", self.photoshop),
                               ("comments", self.comments)) if v]


def has_picture(data: bytes) -> bool:
    return any(sig in data for sig in _PICTURE) or _PICTURE_B64.search(data) is not None


def read(path: str) -> ImageMetadata:
    """What --keep-metadata keeps of the image at `path` (empty where Pillow cannot read it)."""
    meta = ImageMetadata()
    try:
        from PIL import Image  # pillow comes with matplotlib; only needed to keep metadata
    except ImportError:
        meta.dropped.append("all: Pillow is not installed")
        return meta
    try:
        with Image.open(path) as im:
            try:
                meta.exif = _exif(im.getexif(), meta.dropped)
            except Exception:  # a malformed EXIF block: the rest is still kept
                meta.dropped.append("exif: could not be read")
            info, text = dict(im.info), dict(getattr(im, "text", None) or {})
            tags = getattr(im, "tag_v2", None) or {}
            app = list(getattr(im, "applist", []))
    except Exception:
        meta.dropped.append("all: the input's metadata could not be read")
        return meta
    xmp = info.get("xmp") or text.pop("XML:com.adobe.xmp", None) or tags.get(700)
    if xmp:
        meta.xmp = _xmp(xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp), meta.dropped)
    resources = dict(info.get("photoshop") or {})
    if tags.get(33723) and _IPTC_RESOURCE not in resources:  # a TIFF's IPTC
        iptc = tags.get(33723)
        resources[_IPTC_RESOURCE] = iptc if isinstance(iptc, bytes) else bytes(iptc)
    for rid, data in resources.items():
        if rid in _PICTURE_RESOURCES or has_picture(data):
            meta.dropped.append(f"photoshop resource {rid}: a picture")
        else:
            meta.photoshop[int(rid)] = bytes(data)
    comments = [("", p) for m, p in app if m == "COM"]
    comments += [(k, v.encode("utf-8") if isinstance(v, str) else bytes(v)) for k, v in text.items()]
    for key, value in comments:
        if key.startswith("Raw profile type") or has_picture(value):
            meta.dropped.append(f"text {key or 'comment'}: a picture or a raw profile copy")
        else:
            meta.comments.append((key, value))
    return meta


def _exif(exif, dropped: list) -> Optional[bytes]:
    """EXIF without pictures (IFD1's thumbnail is never written; a maker note or other byte
    value holding one is left out), Orientation 1."""
    if not exif:
        return None
    if 0x0112 in exif:
        exif[0x0112] = 1
    for ifd in (exif, exif.get_ifd(0x8769), exif.get_ifd(0x8825)):  # IFD0, the Exif and GPS IFDs
        for tag in [t for t, v in ifd.items() if isinstance(v, bytes) and has_picture(v)]:
            del ifd[tag]
            dropped.append(f"exif tag {tag:#06x}: a picture")
    return exif.tobytes()


def _xmp(xmp: bytes, dropped: list) -> Optional[bytes]:
    """XMP without thumbnails, tiff:Orientation 1; None if a picture is still in it after that."""
    xmp = xmp.rstrip(b"\x00")
    cleaned = re.sub(rb"<xmp:Thumbnails\b.*?</xmp:Thumbnails>|<xmp:Thumbnails\b[^>]*/>", b"", xmp, flags=re.S)
    cleaned = re.sub(rb"<xmpGImg:image\b.*?</xmpGImg:image>", b"", cleaned, flags=re.S)
    cleaned = re.sub(rb'\s+xmpGImg:image="[^"]*"', b"", cleaned)
    if cleaned != xmp:
        dropped.append("xmp thumbnail: a picture")
    cleaned = re.sub(rb'(tiff:Orientation=")\d+(")', rb"\g<1>1\g<2>", cleaned)
    cleaned = re.sub(rb"(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)", rb"\g<1>1\g<2>", cleaned)
    if has_picture(cleaned):
        dropped.append("xmp: a picture left in it (all of the XMP)")
        return None
    return cleaned


# ---------------------------------------------------------------- writing

def jpeg_insert(data: bytes, segments: list[bytes]) -> bytes:
    """`segments` (marker + length + payload each) after SOI and the JFIF header, where readers look."""
    at = 2
    if data[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(data[4:6], "big")
    return data[:at] + b"".join(segments) + data[at:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    chunk = kind + body
    return len(body).to_bytes(4, "big") + chunk + (zlib.crc32(chunk) & 0xFFFFFFFF).to_bytes(4, "big")


def png_insert(data: bytes, chunks: list[bytes]) -> bytes:
    """PNG chunks right after IHDR (before the image data, as iCCP and eXIf must be)."""
    at = 8 + 12 + int.from_bytes(data[8:12], "big")
    return data[:at] + b"".join(chunks) + data[at:]


def _segment(marker: bytes, payload: bytes) -> bytes:
    return marker + (len(payload) + 2).to_bytes(2, "big") + payload


def _resources(photoshop: dict) -> bytes:
    out = b""
    for rid, data in sorted(photoshop.items()):
        out += b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data)) + data
        out += b"\x00" if len(data) % 2 else b""
    return out


def _png_text(key: str, value: bytes) -> bytes:
    key = (key or "Comment")[:79]
    try:
        return png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.decode("utf-8").encode("latin-1"))
    except (UnicodeEncodeError, UnicodeDecodeError):
        return png_chunk(b"iTXt", key.encode("latin-1", "replace") + b"\x00\x00\x00\x00\x00" + value)


def embed(data: bytes, ext: str, meta: ImageMetadata) -> tuple[Optional[bytes], list[str]]:
    """The encoded JPEG/PNG `data` with `meta` in it, and what could not be put there (by kind);
    None for other formats."""
    lost = []
    if ext in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":
        segs = []
        iptc = meta.photoshop and _PHOTOSHOP + _resources(meta.photoshop)
        for kind, marker, payload in (("exif", b"\xff\xe1", meta.exif),
                                      ("xmp", b"\xff\xe1", meta.xmp and _XMP_HEADER + meta.xmp),
                                      ("iptc", b"\xff\xed", iptc)):
            if payload and len(payload) > _MAX_SEGMENT:
                lost.append(f"{kind}: over a JPEG segment's 64 KB")
            elif payload:
                segs.append(_segment(marker, payload))
        for key, value in meta.comments:
            text = (key.encode("latin-1", "replace") + b": " if key else b"") + value
            segs.append(_segment(b"\xff\xfe", text[:_MAX_SEGMENT]))
        return jpeg_insert(data, segs), lost
    if ext == ".webp" and _is_webp(data):
        lost += [f"{k}: no place for it in WebP" for k, v in (("iptc", meta.photoshop), ("comments", meta.comments))
                 if v]
        return webp_with(data, exif=meta.exif, xmp=meta.xmp), lost
    if ext == ".png" and data[:8] == b"\x89PNG\r\n\x1a\n":
        chunks = []
        if meta.exif:
            chunks.append(png_chunk(b"eXIf", meta.exif[6:] if meta.exif.startswith(b"Exif\x00\x00") else meta.exif))
        if meta.xmp:
            chunks.append(png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp))
        if meta.photoshop:
            lost.append("iptc: kept in JPEG outputs only")
        chunks += [_png_text(k, v) for k, v in meta.comments]
        return png_insert(data, chunks), lost
    return None, lost


def with_icc_profile(data: bytes, ext: str, icc: bytes) -> Optional[bytes]:
    """The encoded JPEG/PNG `data` with an ICC colour profile embedded (None for other formats)."""
    if ext in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8":
        step = 65519  # an APP2 segment holds 64 KB less its header; big profiles are split
        parts = [icc[i:i + step] for i in range(0, len(icc), step)]
        if not parts or len(parts) > 255:
            return None
        return jpeg_insert(data, [_segment(b"\xff\xe2", b"ICC_PROFILE\x00" + bytes([k + 1, len(parts)]) + p)
                                  for k, p in enumerate(parts)])
    if ext == ".png" and data[:8] == b"\x89PNG\r\n\x1a\n":
        return png_insert(data, [png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))])
    if ext == ".webp" and _is_webp(data):
        return webp_with(data, icc=icc)
    return None


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, at = [], 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        out.append((kind, data[at + 8:at + 8 + size]))
        at += 8 + size + (size & 1)
    return out


def webp_with(data: bytes, icc: Optional[bytes] = None, exif: Optional[bytes] = None,
              xmp: Optional[bytes] = None) -> bytes:
    """A still WebP with an ICC profile, EXIF and/or XMP chunk added (kept where it has them): the
    extended layout (VP8X header, ICCP, the image, EXIF, XMP), as the WebP container spec orders it."""
    chunks = _webp_chunks(data)
    head = dict(chunks).get(b"VP8X")
    flags = head[0] if head else 0
    image = [(k, v) for k, v in chunks if k in (b"ALPH", b"VP8 ", b"VP8L")]
    if head is not None:
        width = 1 + int.from_bytes(head[4:7], "little")
        height = 1 + int.from_bytes(head[7:10], "little")
    else:
        kind, bits = image[0]
        if kind == b"VP8L":  # 0x2f, then 14 bits width - 1, 14 bits height - 1, 1 bit alpha
            v = int.from_bytes(bits[1:5], "little")
            width, height = (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1
            flags |= 0x10 if v >> 28 & 1 else 0
        else:  # VP8: a key frame's 10-byte header, then 14 bits width, 14 bits height
            width = int.from_bytes(bits[6:8], "little") & 0x3FFF
            height = int.from_bytes(bits[8:10], "little") & 0x3FFF
    extra = {b"ICCP": icc or dict(chunks).get(b"ICCP"),
             b"EXIF": (exif[6:] if exif and exif.startswith(b"Exif\x00\x00") else exif) or dict(chunks).get(b"EXIF"),
             b"XMP ": xmp or dict(chunks).get(b"XMP ")}
    flags |= (0x20 if extra[b"ICCP"] else 0) | (0x08 if extra[b"EXIF"] else 0) | (0x04 if extra[b"XMP "] else 0)
    flags |= 0x10 if any(k == b"ALPH" for k, _ in image) else 0
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    order = [(b"VP8X", vp8x), (b"ICCP", extra[b"ICCP"]), *image, (b"EXIF", extra[b"EXIF"]), (b"XMP ", extra[b"XMP "])]
    body = b"WEBP" + b"".join(k + len(v).to_bytes(4, "little") + v + b"\x00" * (len(v) & 1) for k, v in order if v)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


# IFD0 tags that describe the file's own layout (Pillow writes its own) or are carried separately
_TIFF_LAYOUT = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323,
                324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 530, 531, 532, 700, 33723, 34377, 34665, 34675,
                34853, 40965}
_TIFF_SUB_IFDS = (0x8769, 0x8825)  # Exif, GPS


def tiff_save_args(meta: Optional[ImageMetadata], compression: str) -> tuple[dict, list[str]]:
    """Pillow's TIFF save arguments that carry `meta` (`tiffinfo`, and the compression: "raw"
    where EXIF's Exif or GPS directory must be written), and what could not be carried (by kind)."""
    if meta is None or not meta.kinds():
        return {"compression": compression}, []
    from PIL import Image, TiffImagePlugin

    ifd, lost = TiffImagePlugin.ImageFileDirectory_v2(), []
    if meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        for tag, value in exif.items():
            if tag not in _TIFF_LAYOUT:
                ifd[tag] = value
        for sub in _TIFF_SUB_IFDS:
            entries = dict(exif.get_ifd(sub))
            if entries:
                ifd[sub] = entries
                compression = "raw"
    if meta.xmp:
        ifd[700] = meta.xmp
    if meta.photoshop.get(_IPTC_RESOURCE):
        ifd[33723] = meta.photoshop[_IPTC_RESOURCE]
    others = {k: v for k, v in meta.photoshop.items() if k != _IPTC_RESOURCE}
    if others:  # the TIFF's own place for Photoshop's resources
        ifd[34377] = _resources(others)
    if meta.comments:
        if 270 in ifd:
            lost.append("comments: the TIFF's one image description holds the EXIF's own")
        else:
            ifd[270] = "\n".join(((k + ": ") if k else "") + v.decode("utf-8", "replace") for k, v in meta.comments)
    return {"compression": compression, "tiffinfo": ifd}, lost
