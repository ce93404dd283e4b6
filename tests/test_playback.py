"""The output plays, and shows as the input did: the colours it holds (primaries, transfer and
matrix in the stream's header), the shape of its pixels, its interlacing, and a chroma layout and
codec tag that common players take.

Before: a phone's HDR video (10-bit HEVC, BT.2020 with the HLG transfer) came out as untagged 8-bit
H.264 that shows washed out, and a BT.709 SD clip untagged (players take BT.601); an anamorphic video
came out squeezed; an interlaced one coded as progressive frames (combs on every movement); an MJPEG
camera's 4:2:2 as H.264 High 4:2:2 (no browser, no QuickTime); `--codec libx265` into MP4 tagged
hev1 (not played by QuickTime, iOS, Safari), with 25 lines of x265's settings on stderr.
"""
from __future__ import annotations

import io
import subprocess
from fractions import Fraction
from typing import Optional

import av
import pytest

from clips import encoded
from live_support import CLI
from ideud.stream.pipeline import Options, deidentify

FAST = dict(privacy="off", restorer="classic", seed=1, audio=False)
HLG = (9, 18, 9)  # BT.2020 primaries, ARIB STD-B67 (HLG) transfer, BT.2020 non-constant matrix
BT709 = (1, 1, 1)


def _clip(codec: str, pix_fmt: str, colour: tuple, fmt: str = "mp4", sar: Optional[Fraction] = None) -> bytes:
    context = dict(zip(("color_primaries", "color_trc", "colorspace"), colour))
    if sar:
        context["sample_aspect_ratio"] = sar
    return encoded(io.BytesIO(), 4, 320, 180, codec, pix_fmt, fmt=fmt, size=120, context=context,
                   options={"x265-params": "log-level=error"} if codec == "libx265" else None).getvalue()


def _colour(path) -> tuple:
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return f.format.name, (int(f.color_primaries), int(f.color_trc), int(f.colorspace))


@pytest.mark.parametrize("codec,pix_fmt,colour", [("libx265", "yuv420p10le", HLG), ("libx264", "yuv420p", BT709)],
                         ids=["hlg-10-bit", "bt709-sd"])
def test_a_file_keeps_its_colour_description(tmp_path, codec, pix_fmt, colour):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    src.write_bytes(_clip(codec, pix_fmt, colour))
    assert _colour(src) == (pix_fmt, colour)
    deidentify(str(src), str(out), Options(**FAST))
    # a 10-bit HDR source comes out as 10-bit HEVC (tests/test_deep.py), the 8-bit one as 8-bit H.264
    assert _colour(out) == (pix_fmt, colour)


def test_a_live_pipe_keeps_its_colour_description(tmp_path):
    out = tmp_path / "out.mkv"
    p = subprocess.run([*CLI, "-", str(out), "-qq", "--privacy", "off", "--restorer", "classic"],
                       input=_clip("libx265", "yuv420p10le", HLG, fmt="mpegts"), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert _colour(out) == ("yuv420p", HLG)


@pytest.mark.parametrize("live", [False, True], ids=["file", "pipe"])
def test_non_square_pixels_stay_non_square(tmp_path, live):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    src.write_bytes(_clip("libx264", "yuv420p", BT709, sar=Fraction(4, 3)))  # 320x180 shown 16:9 * 4/3
    if live:
        p = subprocess.run([*CLI, "-", str(out), "-qq", "--privacy", "off", "--restorer", "classic"],
                           input=src.read_bytes(), capture_output=True, timeout=300)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    else:
        deidentify(str(src), str(out), Options(**FAST))
    with av.open(str(out)) as c:
        assert c.streams.video[0].sample_aspect_ratio == Fraction(4, 3)


def test_interlaced_video_stays_interlaced(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    encoded(src, 4, 320, 240, options={"x264-params": "interlaced=1:bff=1"}, size=120)
    deidentify(str(src), str(out), Options(**FAST))
    for path in (src, out):
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.field_order == 3  # bottom field first
            assert all(f.interlaced_frame for f in c.decode(video=0))


def test_a_4_2_2_camera_file_comes_out_as_4_2_0_unless_lossless(tmp_path):
    """An MJPEG camera's 4:2:2 (full range) became H.264 High 4:2:2, which no browser or QuickTime
    plays; a lossy output is 4:2:0 now, a lossless one (ffv1) keeps the source's chroma."""
    src = encoded(tmp_path / "camera.avi", 4, 320, 180, "mjpeg", "yuvj422p")
    for name, codec, want in (("out.mp4", "auto", ("yuvj420p", "High")), ("out.mkv", "ffv1", ("yuv422p", None))):
        deidentify(str(src), str(tmp_path / name), Options(**{**FAST, "codec": codec}))
        with av.open(str(tmp_path / name)) as c:
            cc = c.streams.video[0].codec_context
            assert (cc.pix_fmt, cc.profile if codec != "ffv1" else None) == want
            assert next(c.decode(video=0)).color_range == 2  # still full range


def test_hevc_in_mp4_is_tagged_for_apple_players_and_quiet(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    src.write_bytes(_clip("libx264", "yuv420p", BT709))
    p = subprocess.run([*CLI, str(src), str(out), "--codec", "libx265", "-q", "--privacy", "off",
                        "--restorer", "classic"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "x265 [info]" not in p.stderr
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "hevc" and c.streams.video[0].codec_tag == "hvc1"
