"""--keep-metadata on still images keeps the metadata whole (EXIF, XMP, IPTC, comments), and never
a picture carried inside it: a maker note's preview, an XMP or Photoshop thumbnail show the input's
faces as they were (stream/image_metadata.py). Without --keep-metadata none of it is written."""
import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from clips import portrait
from ideud.stream.pipeline import Options, deidentify

FAST = dict(seed=2, privacy="off", restorer="classic")
CREATOR, BYLINE, COMMENT = "Alice Example", "Bob Byline", "taken at the lake"


def _jpeg(rgb: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, "JPEG", quality=90)
    return b.getvalue()


@pytest.fixture(scope="module")
def preview() -> bytes:
    """What a camera puts in its metadata: a small JPEG of the picture itself."""
    return _jpeg(np.ascontiguousarray(portrait(64)))


def _segment(marker: bytes, payload: bytes) -> bytes:
    return marker + struct.pack(">H", len(payload) + 2) + payload


def _resource(rid: int, data: bytes) -> bytes:
    pad = b"\x00" * (len(data) % 2)
    return b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data)) + data + pad


def _xmp(preview: bytes) -> bytes:
    thumb = base64.b64encode(preview)
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
            b' xmlns:dc="http://purl.org/dc/elements/1.1/"'
            b' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/"'
            b' tiff:Orientation="6"><dc:creator><rdf:Seq><rdf:li>' + CREATOR.encode()
            + b'</rdf:li></rdf:Seq></dc:creator>'
            b'<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType="Resource"><xmpGImg:format>JPEG</xmpGImg:format>'
            b'<xmpGImg:image>' + thumb + b'</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>'
            b'</rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.fixture(scope="module")
def camera_jpeg(tmp_path_factory, preview):
    """A JPEG as cameras and editors write them: EXIF with GPS and a maker note holding a preview,
    XMP with a thumbnail, IPTC with a thumbnail resource beside it, a comment."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "NIKON CORPORATION", "NIKON D750", 1
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)
    exif.get_ifd(0x8769)[0x927C] = b"Nikon\x00\x02\x10\x00\x00" + preview
    b = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(portrait(256))).save(b, "JPEG", quality=92, exif=exif.tobytes())
    data = b.getvalue()
    iptc = b"\x1c\x02\x50" + struct.pack(">H", len(BYLINE)) + BYLINE.encode()
    extra = (_segment(b"\xff\xe1", b"http://ns.adobe.com/xap/1.0/\x00" + _xmp(preview))
             + _segment(b"\xff\xed", b"Photoshop 3.0\x00" + _resource(0x0404, iptc) + _resource(0x040C, preview))
             + _segment(b"\xff\xfe", COMMENT.encode()))
    path = tmp_path_factory.mktemp("meta") / "camera.jpg"
    path.write_bytes(data[:2] + extra + data[2:])
    assert preview in path.read_bytes()  # three times, in fact (the XMP one as base64)
    return path


def _no_picture_but_its_own(data: bytes, preview: bytes) -> None:
    assert preview[:200] not in data and base64.b64encode(preview)[:100] not in data
    assert data.count(b"\xff\xd8\xff") == (1 if data[:2] == b"\xff\xd8" else 0)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_keep_metadata_keeps_it_whole_but_no_picture(tmp_path, camera_jpeg, preview, ext):
    out, rep = tmp_path / f"kept{ext}", tmp_path / "rep.json"
    report = deidentify(str(camera_jpeg), str(out), Options(**FAST, keep_metadata=True))
    data = out.read_bytes()
    _no_picture_but_its_own(data, preview)
    with Image.open(out) as im:
        exif, info = im.getexif(), dict(im.info)
        text = dict(getattr(im, "text", {}) or {})
    assert exif[0x010F] == "NIKON CORPORATION" and exif[0x0110] == "NIKON D750"
    assert exif.get_ifd(0x8825)[2] == (48.0, 51.0, 30.0)
    assert 0x927C not in exif.get_ifd(0x8769)  # the maker note held the preview
    xmp = info.get("xmp") or text.get("XML:com.adobe.xmp")
    xmp = xmp.encode() if isinstance(xmp, str) else xmp
    assert CREATOR.encode() in xmp and b'tiff:Orientation="1"' in xmp and b"xmpGImg:image" not in xmp
    left_out = " ".join(report["metadata"]["left_out"])
    assert COMMENT.encode() in data if ext != ".webp" else "comments: no place for it in WebP" in left_out
    assert "0x927c" in left_out and "xmp thumbnail" in left_out and "photoshop resource 1036" in left_out
    assert CREATOR not in json.dumps(report) and COMMENT not in json.dumps(report)  # kinds, never contents
    if ext == ".jpg":
        assert info["photoshop"][0x0404].endswith(BYLINE.encode()) and 0x040C not in info["photoshop"]
        assert set(report["metadata"]["kept"]) == {"exif", "xmp", "iptc", "comments"}
    else:
        assert BYLINE.encode() not in data and "iptc: " in left_out


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_without_keep_metadata_none_of_it_is_written(tmp_path, camera_jpeg, preview, ext):
    out = tmp_path / f"stripped{ext}"
    report = deidentify(str(camera_jpeg), str(out), Options(**FAST))
    data = out.read_bytes()
    _no_picture_but_its_own(data, preview)
    for s in (b"NIKON", CREATOR.encode(), BYLINE.encode(), COMMENT.encode(), b"xmpmeta", b"Photoshop"):
        assert s not in data
    assert "metadata" not in report


def test_png_text_chunks_are_kept(tmp_path, preview):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Carol")
    info.add_itxt("Description", "Ünïcode caption", zip=False)
    info.add_text("Thumb", base64.b64encode(preview).decode())  # a picture in a text chunk: not kept
    Image.fromarray(np.ascontiguousarray(portrait(256))).save(src, pnginfo=info)
    report = deidentify(str(src), str(out), Options(**FAST, keep_metadata=True))
    with Image.open(out) as im:
        text = dict(im.text)
    assert text["Author"] == "Carol" and text["Description"] == "Ünïcode caption" and "Thumb" not in text
    assert report["metadata"]["kept"] == ["comments"] and "text Thumb" in " ".join(report["metadata"]["left_out"])
    _no_picture_but_its_own(out.read_bytes(), preview)


def test_tiff_outputs_keep_it_whole_too(tmp_path, camera_jpeg, preview):
    """EXIF with its Exif and GPS directories (so written uncompressed: libtiff cannot write them),
    XMP, IPTC, the comment as the image description; no picture; pixels as a PNG output has them."""
    out, png = tmp_path / "kept.tif", tmp_path / "same.png"
    report = deidentify(str(camera_jpeg), str(out), Options(**FAST, keep_metadata=True))
    deidentify(str(camera_jpeg), str(png), Options(**FAST))
    _no_picture_but_its_own(out.read_bytes(), preview)
    with Image.open(out) as im:
        exif, tags, compression = im.getexif(), dict(im.tag_v2), im.info.get("compression")
        pixels = np.asarray(im.convert("RGB"))
    assert exif[0x010F] == "NIKON CORPORATION" and exif[0x0110] == "NIKON D750"
    assert exif.get_ifd(0x8825)[2] == (48.0, 51.0, 30.0) and 0x927C not in exif.get_ifd(0x8769)
    xmp = bytes(tags[700])
    assert CREATOR.encode() in xmp and b'tiff:Orientation="1"' in xmp and b"xmpGImg:image" not in xmp
    assert bytes(tags[33723]).endswith(BYLINE.encode()) and tags[270] == COMMENT
    assert compression == "raw"
    assert set(report["metadata"]["kept"]) == {"exif", "xmp", "iptc", "comments"}
    assert CREATOR not in json.dumps(report) and BYLINE not in json.dumps(report)
    with Image.open(png) as im:
        assert np.array_equal(pixels, np.asarray(im.convert("RGB")))


def test_tiff_outputs_without_keep_metadata_have_none_of_it(tmp_path, camera_jpeg, preview):
    out = tmp_path / "stripped.tif"
    report = deidentify(str(camera_jpeg), str(out), Options(**FAST))
    data = out.read_bytes()
    _no_picture_but_its_own(data, preview)
    for s in (b"NIKON", CREATOR.encode(), BYLINE.encode(), COMMENT.encode(), b"xmpmeta"):
        assert s not in data
    with Image.open(out) as im:
        assert im.info.get("compression") == "tiff_lzw" and 0x8825 not in im.getexif()
    assert "metadata" not in report


def test_a_multi_page_tiff_keeps_its_metadata_on_every_page(tmp_path):
    tags = TiffImagePlugin.ImageFileDirectory_v2()  # (Pillow's TIFF writer takes EXIF as tags only)
    tags[0x010F], tags[0x8825] = "Scanner Co", {2: (48.0, 51.0, 30.0)}
    tags[700] = b"<x:xmpmeta>" + CREATOR.encode() + b"</x:xmpmeta>"
    src, out = tmp_path / "pages.tif", tmp_path / "out.tif"
    page = Image.fromarray(np.ascontiguousarray(portrait(256)))
    page.save(src, save_all=True, append_images=[page.copy()], compression="raw", tiffinfo=tags)
    report = deidentify(str(src), str(out), Options(**FAST, keep_metadata=True))
    assert report["output"]["frames"] == 2 and set(report["metadata"]["kept"]) == {"exif", "xmp"}
    with Image.open(out) as im:
        for k in range(2):
            im.seek(k)
            assert im.getexif()[0x010F] == "Scanner Co" and CREATOR.encode() in bytes(im.tag_v2[700])
        assert im.getexif().get_ifd(0x8825)[2] == (48.0, 51.0, 30.0)
