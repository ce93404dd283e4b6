"""An animated WebP or PNG comes out animated, every frame de-identified (stream/animated.py): it
came out as its first frame alone before, the rest of the animation silently lost."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clips import moving_faces
from ideud.stream.pipeline import Options, deidentify

FAST = dict(seed=3, privacy="off", restorer="classic")
N = 6


@pytest.fixture(scope="module")
def frames():
    return list(moving_faces(N, 256, 192, size=130))


def _save(path, frames, fmt):
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, format=fmt, save_all=True, append_images=ims[1:], duration=[80 + 10 * k for k in range(N)],
                loop=0, **({"lossless": True} if fmt == "WEBP" else {}))


def _read(path):
    out, durations = [], []
    with Image.open(path) as im:
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")).astype(int))
            durations.append(im.info.get("duration"))
    return out, durations


@pytest.mark.parametrize("ext,fmt", [(".webp", "WEBP"), (".png", "PNG")])
def test_every_frame_is_de_identified_and_the_animation_kept(tmp_path, frames, ext, fmt):
    src, dst = tmp_path / f"in{ext}", tmp_path / f"out{ext}"
    _save(src, frames, fmt)
    rep = deidentify(str(src), str(dst), Options(**FAST, frame_log=True))
    got, durations = _read(dst)
    assert len(got) == N and rep["output"]["frames"] == N and rep["input"]["animated"]
    assert durations == [80 + 10 * k for k in range(N)]
    # (this 6-frame clip jumps back at its last frame: a second track there, as in the video path)
    assert rep["face_frames"] >= N and rep["fallback_face_frames"] == 0 and rep["tracks"][0]["frames"] == N
    for k, (a, b) in enumerate(zip(frames, got)):
        assert np.array_equal(a[:, :40], b[:, :40])  # the background as it was (lossless, both formats)
        for face in rep["frame_log"][k]["faces"]:
            x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
            diff = np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1]).mean()
            assert diff > 5, f"frame {k}: the face was not changed ({diff:.2f})"


def test_an_animation_to_a_still_format_is_one_plain_line(tmp_path, frames):
    src = tmp_path / "in.webp"
    _save(src, frames, "WEBP")
    p = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(src), str(tmp_path / "o.jpg"), "-qq"],
                       capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert f"is animated ({N} frames)" in lines[0] and ".webp or .png" in lines[0]
    assert not (tmp_path / "o.jpg").exists()


def test_every_page_of_a_multi_page_tiff_is_de_identified(tmp_path, frames):
    """A TIFF's pages are separate pictures: each is de-identified in its own size, none carries a
    person to the next (a new track on every page), and the file keeps its pages and compression."""
    src, dst, rep_path = tmp_path / "pages.tif", tmp_path / "o.tif", tmp_path / "r.json"
    small = np.ascontiguousarray(frames[3][::2, ::2])  # a page of another size
    Image.fromarray(frames[0]).save(src, save_all=True, append_images=[Image.fromarray(small)], compression="tiff_lzw")
    p = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(src), str(dst), "-q", "--privacy", "off",
                        "--restorer", "classic", "--seed", "3", "--report", str(rep_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rep = json.loads(rep_path.read_text())
    assert rep["input"]["pages"] == 2 and rep["output"]["frames"] == 2
    assert len(rep["tracks"]) == 2 and all(t["frames"] == 1 for t in rep["tracks"])
    with Image.open(dst) as im:
        assert im.n_frames == 2 and im.info.get("compression") == "tiff_lzw"
        got = []
        for k in range(2):
            im.seek(k)
            got.append(np.asarray(im.convert("RGB")).astype(int))
    for a, b in zip((frames[0], small), got):
        assert a.shape == b.shape
        h, w = a.shape[:2]
        face = (slice(int(0.3 * h), int(0.7 * h)), slice(int(0.35 * w), int(0.65 * w)))
        assert np.abs(a[face] - b[face]).mean() > 5, "a page's face was not changed"
        assert np.array_equal(a[:, : w // 8], b[:, : w // 8])  # the rest as it was (lossless)


def test_a_multi_page_tiff_to_a_still_format_says_only_its_first_page_is_written(tmp_path, frames):
    src, rep_path = tmp_path / "pages.tif", tmp_path / "r.json"
    Image.fromarray(frames[0]).save(src, save_all=True, append_images=[Image.fromarray(frames[3])])
    p = subprocess.run([sys.executable, "-m", "ideud.tools.cli", str(src), str(tmp_path / "o.png"), "-q",
                        "--privacy", "off", "--restorer", "classic", "--report", str(rep_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "a TIFF of 2 pages: only its first page is written" in p.stderr
    assert json.loads(rep_path.read_text())["input"]["pages"] == 2
