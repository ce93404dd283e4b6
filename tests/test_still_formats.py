"""Phone photos: HEIC (what phones take photos as) and AVIF, in and out (stream/still_formats.py).
Before, a .heic was taken for a video: "the input is a video, so the output must be a video file"
for out.jpg, and "cannot write" for out.heic."""
import io
import subprocess
import sys

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from clips import portrait
from ideud.stream.pipeline import Options, deidentify

pillow_heif.register_heif_opener()
FAST = dict(seed=2, privacy="off", restorer="classic")
MAKE = "Apple"


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = MAKE, orientation
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPS latitude: where the person was
    return exif.tobytes()


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory):
    """The portrait as a phone stores it: sideways pixels and Orientation 6 (shown turned 90 degrees
    clockwise, upright), EXIF with GPS; as HEIC and as AVIF."""
    d = tmp_path_factory.mktemp("phone")
    upright = np.ascontiguousarray(np.pad(portrait(240), ((0, 0), (40, 40), (0, 0)), mode="edge"))  # 240 x 320
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # what the sensor gave
    sideways.save(d / "photo.heic", exif=_exif(6), quality=92)
    sideways.save(d / "photo.avif", exif=_exif(6), quality=92)
    return d, upright


def _read(path) -> tuple[np.ndarray, Image.Exif]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), im.getexif()


@pytest.mark.parametrize("src,dst", [("photo.heic", "o.jpg"), ("photo.heic", "o.heic"), ("photo.avif", "o.avif")])
def test_phone_photo_is_de_identified_upright_and_without_metadata(phone_photos, tmp_path, src, dst):
    d, upright = phone_photos
    rep = deidentify(str(d / src), str(tmp_path / dst), Options(**FAST))
    assert rep["face_frames"] == 1 and rep["input"]["image"]
    out, exif = _read(tmp_path / dst)
    assert out.shape == upright.shape  # shown as the phone showed it
    assert np.abs(out.astype(int) - upright).mean() < 25  # the picture, not something else
    face = (slice(60, 200), slice(80, 240))
    assert np.abs(out[face].astype(int) - upright[face]).mean() > 4  # ... with the face changed
    assert MAKE not in exif.values() and not exif.get_ifd(0x8825)  # no camera, no place


@pytest.mark.parametrize("src,dst", [("photo.heic", "o.heic"), ("photo.avif", "o.avif"), ("photo.heic", "o.jpg")])
def test_keep_metadata_keeps_a_phone_photos_exif(phone_photos, tmp_path, src, dst):
    d, _ = phone_photos
    rep = deidentify(str(d / src), str(tmp_path / dst), Options(keep_metadata=True, **FAST))
    _, exif = _read(tmp_path / dst)
    assert exif.get(0x010F) == MAKE and exif.get_ifd(0x8825).get(2) == (48.0, 51.0, 30.0)
    assert exif.get(0x0112, 1) == 1  # the pixels are upright now
    assert "exif" in rep["metadata"]["kept"]


def test_transparency_is_kept_in_avif(tmp_path):
    rgba = np.dstack([portrait(200), np.full((200, 200), 255, np.uint8)])
    rgba[:20, :, 3] = 0
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "AVIF", quality=95)
    (tmp_path / "a.avif").write_bytes(buf.getvalue())
    deidentify(str(tmp_path / "a.avif"), str(tmp_path / "o.avif"), Options(**FAST))
    with Image.open(tmp_path / "o.avif") as im:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    assert alpha[:15].max() < 40 and alpha[40:].min() > 215


def test_a_cut_or_fake_heic_is_one_line_and_exit_2(phone_photos, tmp_path):
    d, _ = phone_photos
    (tmp_path / "cut.heic").write_bytes((d / "photo.heic").read_bytes()[:3000])
    (tmp_path / "text.heic").write_text("hello")
    for name in ("cut.heic", "text.heic"):
        p = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(tmp_path / name), str(tmp_path / "o.jpg"), "-qq"],
                           capture_output=True, text=True)
        lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith("W0000")]
        assert p.returncode == 2 and len(lines) == 1 and "not a HEIF image that can be read" in lines[0], p.stderr
        assert not (tmp_path / "o.jpg").exists()
