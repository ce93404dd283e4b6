"""A 10-bit source (a phone's HDR video) keeps its 10 bits outside the faces (stream/deep.py).

Before: every output was 8-bit (the pipeline's planes are 8-bit): an HLG or PQ phone video came out
as 8-bit H.264, its smooth HDR gradients banded, and a PQ video's mastering-display and light-level
data (how players tone-map it) were dropped.
"""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from clips import encoded
from ideud.stream.deep import hdr10_params
from ideud.stream.pipeline import Options, deidentify

FAST = dict(privacy="off", restorer="classic", seed=1, audio=False)
HLG = dict(color_primaries=9, color_trc=18, colorspace=9)
PQ = dict(color_primaries=9, color_trc=16, colorspace=9)
MASTERING = "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"


def _frames(path) -> tuple[str, str, list]:
    """(codec, pixel format, [luma plane of each frame as integers])."""
    with av.open(str(path)) as c:
        lumas, fmt = [], None
        for f in c.decode(video=0):
            fmt = f.format.name
            p = f.planes[0]
            dtype = np.uint16 if "10" in fmt else np.uint8
            lumas.append(np.frombuffer(p, dtype).reshape(p.height, -1)[:, : p.width].astype(np.int32))
        return c.streams.video[0].codec_context.name, fmt, lumas


def test_background_keeps_its_10_bits_and_the_face_none_of_the_source(tmp_path):
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    encoded(src, 8, 640, 360, "ffv1", "yuv420p10le", context=HLG, size=160)
    deidentify(str(src), str(out), Options(codec="ffv1", **FAST))
    _, fmt_in, before = _frames(src)
    codec, fmt, after = _frames(out)
    assert (codec, fmt_in, fmt) == ("ffv1", "yuv420p10le", "yuv420p10le")
    for a, b in zip(before, after):
        changed = a != b
        assert 0.005 < changed.mean() < 0.2  # the face, and only about it
        kept = ~changed
        assert (a[kept] % 4 != 0).mean() > 0.5  # what is kept has its low bits (an 8-bit copy has none)
        ys, xs = np.nonzero(changed)
        face = b[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert (face % 4 == 0).all()  # inside the face's crop not one source sample: 8-bit samples, scaled


def test_an_hdr_phone_video_comes_out_as_10_bit_hevc_at_the_defaults(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    encoded(src, 6, 320, 180, "libx265", "yuv420p10le", context=HLG, size=120,
            options={"x265-params": "log-level=error"})
    deidentify(str(src), str(out), Options(seed=1, audio=False))
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        f = next(c.decode(video=0))
        assert (s.codec_context.name, s.codec_context.profile, s.codec_tag) == ("hevc", "Main 10", "hvc1")
        assert (f.format.name, f.color_primaries, f.color_trc, f.colorspace) == ("yuv420p10le", 9, 18, 9)


@pytest.mark.parametrize("codec,ext", [("auto", ".mp4"), ("libsvtav1", ".mkv")])
def test_hdr10_mastering_display_and_light_levels_are_kept(tmp_path, codec, ext):
    """Kept through x265 (the default for HDR) and SVT-AV1 (before: dropped by AV1, twentieth session)."""
    src, out = tmp_path / "in.mp4", tmp_path / ("out" + ext)
    encoded(src, 4, 320, 180, "libx265", "yuv420p10le", context=PQ, size=120,
            options={"x265-params": "log-level=error:" + MASTERING})
    deidentify(str(src), str(out), Options(**FAST, codec=codec))
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        assert (f.format.name, f.color_trc) == ("yuv420p10le", 16)
        assert hdr10_params(f) == MASTERING


def test_h264_asked_for_stays_8_bit(tmp_path):
    """High 10 H.264 plays in few players: a user who asks for libx264 gets 8-bit High."""
    src, out = tmp_path / "in.mkv", tmp_path / "out.mp4"
    src.write_bytes(encoded(io.BytesIO(), 4, 320, 180, "ffv1", "yuv420p10le", fmt="matroska", context=HLG,
                            size=120).getvalue())
    deidentify(str(src), str(out), Options(codec="libx264", **FAST))
    codec, fmt, _ = _frames(out)
    assert (codec, fmt) == ("h264", "yuv420p")


@pytest.mark.parametrize("dst", ["out.webm", "out.mp4"])
def test_8_bit_sources_are_written_as_before(tmp_path, dst):
    src, out = tmp_path / "in.mp4", tmp_path / dst
    encoded(src, 4, 320, 180, "libx264", "yuv420p", context=HLG, size=120)
    deidentify(str(src), str(out), Options(**FAST))
    codec, fmt, _ = _frames(out)
    assert (codec, fmt) == (("vp9" if dst.endswith("webm") else "h264"), "yuv420p")
