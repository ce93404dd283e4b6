"""Stills keep their form (stream/still_depth.py): a grey picture comes out grey, a 16-bit PNG or
TIFF keeps its 16 bits outside the faces, with no source sample inside them. Before, every still
came out as 8-bit RGB: a 16-bit scan cut to 8 bits, a grey photo tripled in size."""
import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from clips import portrait
from ideud.stream.image_metadata import with_icc_profile
from ideud.stream.pipeline import Options, deidentify

FAST = dict(seed=2, privacy="off", restorer="classic")
PAD = 96  # a textured border no face crop reaches


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A portrait on a textured border, as 16-bit BGR with low bits of its own, 16-bit grey and
    8-bit grey; a 16-bit BGRA with a graded alpha."""
    d = tmp_path_factory.mktemp("deep_stills")
    rgb = np.pad(portrait(240), ((PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    rng = np.random.default_rng(5)
    bgr16 = (rgb[..., ::-1].astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape)).astype(np.uint16)
    grey16 = cv2.cvtColor(bgr16, cv2.COLOR_BGR2GRAY)
    alpha16 = np.tile(np.linspace(1000, 65000, rgb.shape[1]).astype(np.uint16), (rgb.shape[0], 1))
    cv2.imwrite(str(d / "colour16.png"), bgr16)
    cv2.imwrite(str(d / "colour16.tif"), bgr16)
    cv2.imwrite(str(d / "grey16.png"), grey16)
    Image.fromarray(grey16).save(d / "grey16.tif")
    cv2.imwrite(str(d / "grey8.jpg"), cv2.cvtColor(rgb[..., ::-1], cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(d / "rgba16.png"), np.dstack([bgr16, alpha16]))
    return d


def _run(src, dst, **kw) -> np.ndarray:
    rep = deidentify(str(src), str(dst), Options(**{**FAST, **kw}))
    assert rep["face_frames"] == 1
    return cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[:PAD // 2].ravel(), a[-PAD // 2:].ravel(), a[:, :PAD // 2].ravel(), a[:, -PAD // 2:].ravel()])


@pytest.mark.parametrize("name,out", [("colour16.png", "o.png"), ("colour16.tif", "o.tif"),
                                      ("grey16.png", "o.png"), ("grey16.tif", "o.tiff")])
def test_a_16_bit_still_keeps_its_samples_outside_the_faces(sources, tmp_path, name, out):
    src = cv2.imread(str(sources / name), cv2.IMREAD_UNCHANGED)
    got = _run(sources / name, tmp_path / out)
    assert got.dtype == np.uint16 and got.shape == src.shape  # 16 bits, grey stays one channel
    assert np.array_equal(_border(got), _border(src))  # far from the face: the source, bit for bit
    changed = got != src
    assert changed.mean() > 0.05  # the face was drawn
    assert (got[changed] % 257 == 0).all()  # what was written is 8-bit samples * 257: no source low bits
    far = np.abs(got.astype(np.int64) - src)
    far = (far.max(2) if far.ndim == 3 else far) > 8 * 257
    rows, cols = np.flatnonzero(far.any(1)), np.flatnonzero(far.any(0))
    face = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # where the new face was drawn
    assert far[face].mean() > 0.1
    assert (got[face] % 257 == 0).all()  # inside the face's crop nothing of the source's low bits


def test_a_grey_jpeg_stays_grey(sources, tmp_path):
    got = _run(sources / "grey8.jpg", tmp_path / "o.jpg")
    src = cv2.imread(str(sources / "grey8.jpg"), cv2.IMREAD_UNCHANGED)
    assert got.ndim == 2 and got.shape == src.shape  # one channel, as it came
    face = (slice(PAD + 60, PAD + 200), slice(PAD + 40, PAD + 200))
    assert np.abs(got[face].astype(int) - src[face]).mean() > 4


def test_grey_at_default_settings_has_no_colour_to_lose(sources, tmp_path):
    """The default restorer's new face on a grey picture is grey: written as one channel, nothing
    of it is dropped (the same picture stored as three equal channels comes out with its channels
    at most 3 levels apart)."""
    rep = deidentify(str(sources / "grey8.jpg"), str(tmp_path / "o.png"), Options(seed=2))
    assert rep["face_frames"] == 1
    assert cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    three = np.repeat(cv2.imread(str(sources / "grey8.jpg"), cv2.IMREAD_UNCHANGED)[..., None], 3, 2)
    cv2.imwrite(str(tmp_path / "three.png"), three)
    rep = deidentify(str(tmp_path / "three.png"), str(tmp_path / "o3.png"), Options(seed=2))
    out = cv2.imread(str(tmp_path / "o3.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert out.ndim == 3 and np.abs(out - three).max() > 8  # drawn (rendered or obfuscated)
    assert max(np.abs(out[..., 0] - out[..., 1]).max(), np.abs(out[..., 1] - out[..., 2]).max()) <= 3


def test_a_16_bit_alpha_is_kept_exactly(sources, tmp_path):
    src = cv2.imread(str(sources / "rgba16.png"), cv2.IMREAD_UNCHANGED)
    got = _run(sources / "rgba16.png", tmp_path / "o.png")
    assert got.dtype == np.uint16 and got.shape == src.shape
    assert np.array_equal(got[..., 3], src[..., 3])


def test_8_bit_formats_get_the_8_bit_picture(sources, tmp_path):
    got = _run(sources / "colour16.png", tmp_path / "o.jpg")
    assert got.dtype == np.uint8 and got.ndim == 3
    webp = _run(sources / "grey8.jpg", tmp_path / "o.webp")  # WebP has no grey form
    assert webp.dtype == np.uint8


def test_a_16_bit_colour_tiff_with_a_profile_keeps_the_profile(sources, tmp_path, caplog):
    """Pillow writes no 16-bit colour TIFF and OpenCV no colour profile: the profile wins (8 bits,
    with a warning), as colours without it would be shown wrong."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "tagged16.png"  # a 16-bit PNG with an iCCP chunk (Pillow would read it as 8-bit)
    src.write_bytes(with_icc_profile((sources / "colour16.png").read_bytes(), ".png", profile))
    assert cv2.imread(str(src), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    with caplog.at_level("WARNING", logger="ideud"):
        got = _run(src, tmp_path / "o.tif")
    assert got.dtype == np.uint8
    assert any("16-bit colour TIFF" in r.getMessage() for r in caplog.records)
    with Image.open(tmp_path / "o.tif") as im:
        assert im.info.get("icc_profile") == profile
    assert _run(src, tmp_path / "o.png").dtype == np.uint16  # a PNG holds both
    with Image.open(tmp_path / "o.png") as im:
        assert im.info.get("icc_profile") == profile
