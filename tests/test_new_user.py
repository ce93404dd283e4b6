"""What a new user trips over (issue 16): exit codes, silent bad output, leftovers, metadata, the demo,
the words. Every test runs the real command on real files."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clips import (TONE_HZ, astronaut, audio_of, loudest_hz, moving_faces, subtitle_text, with_audio_codec, with_subtitles,
                   write_clip)

CLI = [sys.executable, "-m", "ideud.tools.cli"]
FAST = ["--privacy", "off", "--restorer", "classic"]  # for tests about files, not about faces


def run(*args, timeout=300):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line_error(proc, code=2) -> str:
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ideud-video: error:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """60 frames with the index at the end (FFmpeg's default mp4)."""
    return Path(write_clip(tmp_path_factory.mktemp("nu") / "clip.mp4", moving_faces(60, 256, 192, size=130), audio=False))


@pytest.fixture(scope="module")
def faststart_clip(clip, tmp_path_factory) -> Path:
    """The same clip with its index (moov) before the data, as streaming sites and phones write it."""
    dst = tmp_path_factory.mktemp("nu") / "faststart.mp4"
    with av.open(str(clip)) as src, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for p in src.demux():
            if p.dts is not None:
                p.stream = streams[p.stream.index]
                out.mux(p)
    return dst


# ---------------------------------------------------------------- 1: exit codes
def test_output_folder_missing_is_usage(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "missing" / "o.mp4"))
    assert "does not exist" in line


def test_output_folder_unwritable_is_usage(clip, tmp_path):
    if os.geteuid() == 0:
        folder = Path("/sys")  # root passes every permission check, not sysfs
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    try:
        assert "not writable" in one_line_error(run(clip, folder / "o.mp4"))
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o755)


def test_negative_crf_is_usage_with_the_range(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "o.mp4", "--crf", "-5"))
    assert "0-51" in line and "Numerical result" not in line
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- 2: silent bad output
def test_crf_out_of_range_is_refused(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "o.mp4", "--crf", "999"))
    assert "--crf 999" in line and "0-51" in line


def test_bad_preset_and_audio_codec_are_refused(clip, tmp_path):
    assert "veryfast" in one_line_error(run(clip, tmp_path / "o.mp4", "--preset", "quick"))
    assert "audio" in one_line_error(run(clip, tmp_path / "o.mp4", "--codec", "aac"))


def test_truncated_with_index_first_says_how_many_frames(faststart_clip, tmp_path):
    data = faststart_clip.read_bytes()
    src = tmp_path / "cut.mp4"
    src.write_bytes(data[: len(data) // 2])
    out, rep_path = tmp_path / "o.mp4", tmp_path / "r.json"
    p = run(src, out, "--report", rep_path, *FAST)
    assert p.returncode == 0, p.stderr
    rep = json.loads(rep_path.read_text())
    declared, written = rep["input"]["frames_declared"], rep["output"]["frames"]
    assert declared == 60 and 0 < written < 60
    assert f"decoded {written} of 60 declared frames" in " ".join(rep["decode_errors"])
    assert "looks truncated" in p.stderr
    summary = p.stderr.strip().splitlines()[-1]
    assert f"{written} of 60 declared frames" in summary, p.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == written


def test_a_whole_avi_is_not_called_truncated(tmp_path):
    """FFmpeg's AVI muxer declares one frame more than it writes where there is sound (41 for 40): a
    whole file is not reported as a truncated one (it was: 40 is under 98 % of 41)."""
    src = tmp_path / "cam.avi"
    with av.open(str(src), "w") as c:
        s, a = c.add_stream("mpeg4", rate=25), c.add_stream("libmp3lame", rate=48000)
        s.width, s.height, s.pix_fmt = 256, 192, "yuv420p"
        a.layout = "mono"
        for rgb in moving_faces(40, 256, 192, size=130):
            c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        c.mux(s.encode(None))
        n = a.codec_context.frame_size
        for k in range(0, 48000 * 40 // 25, n):
            f = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = 48000, k, Fraction(1, 48000)
            c.mux(a.encode(f))
        c.mux(a.encode(None))
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 41  # the muxer's count this test is about
    out, rep_path = tmp_path / "o.mp4", tmp_path / "r.json"
    p = run(src, out, "--report", rep_path, *FAST)
    assert p.returncode == 0, p.stderr
    rep = json.loads(rep_path.read_text())
    assert rep["output"]["frames"] == 40 and not rep["decode_errors"]
    assert "truncated" not in p.stderr and "declared" not in p.stderr


def test_truncated_with_index_last_says_truncated(clip, tmp_path):
    data = clip.read_bytes()
    src = tmp_path / "cut.mp4"
    src.write_bytes(data[: len(data) // 2])
    line = one_line_error(run(src, tmp_path / "o.mp4"))
    assert "looks truncated" in line and "moov" in line


def test_whole_file_has_no_truncation_note(clip, tmp_path):
    rep_path = tmp_path / "r.json"
    p = run(clip, tmp_path / "o.mp4", "--report", rep_path, *FAST)
    assert p.returncode == 0, p.stderr
    assert "truncated" not in p.stderr
    assert json.loads(rep_path.read_text())["decode_errors"] == []


# ---------------------------------------------------------------- 3: video to an image name
def test_video_to_jpg_is_one_plain_line(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "o.jpg"))
    assert "video" in line and ".mp4" in line
    assert "image2" not in line and "codec" not in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("ext,codec", [("webm", "vp9"), ("gif", "gif"), ("ogv", "vp8")])
def test_webm_gif_and_ogv_outputs_get_a_codec_they_hold(clip, tmp_path, ext, codec):
    out, rep_path = tmp_path / f"o.{ext}", tmp_path / "r.json"
    p = run(clip, out, "--report", rep_path, "-qq", *FAST)
    assert p.returncode == 0, p.stderr
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
        assert sum(1 for _ in c.decode(video=0)) == 60
    assert json.loads(rep_path.read_text())["output"]["codec"] == {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(codec, codec)


@pytest.mark.parametrize("ext,codec", [("webm", "opus"), ("ogv", "opus"), ("mkv", "aac")])
def test_audio_goes_where_the_container_holds_it(tmp_path, ext, codec):
    """AAC is copied where the container takes it; into WebM and Ogg (which take no AAC: Ogg refused
    it only at the first frame, failing the run) it is encoded once as Opus: the same tone, as long."""
    src = write_clip(tmp_path / "tone.mp4", moving_faces(50, 256, 192, size=130), audio=True)
    out = tmp_path / f"o.{ext}"
    p = run(src, out, "-qq", *FAST)
    assert p.returncode == 0, p.stderr
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == codec
    sound, rate, _ = audio_of(out)
    assert abs(sound.size / rate - 2.0) < 0.1
    assert abs(loudest_hz(sound, rate) - TONE_HZ) < 5
    p = run(src, tmp_path / "o.gif", "-qq", *FAST)  # a GIF holds no sound: said, not silently lost
    assert p.returncode == 0 and "audio stream(s) cannot go into this container" in p.stderr


@pytest.mark.parametrize("src_ext,codec", [("mkv", "libopus"), ("mkv", "flac"), ("mov", "pcm_s16le"), ("mkv", "libmp3lame")])
def test_an_mp4_gets_audio_its_players_play(tmp_path, src_ext, codec):
    """Opus, FLAC and PCM go into an MP4 without complaint but play in few of its players (QuickTime,
    iOS, TVs: no sound); they come out as AAC there: the same tone, as long. MP3 is copied, and a
    Matroska output keeps what it holds (the Opus copied)."""
    tone = write_clip(tmp_path / "tone.mp4", moving_faces(50, 256, 192, size=130), audio=True)
    src = with_audio_codec(tone, tmp_path / f"src.{src_ext}", codec)
    played = {"libmp3lame": "mp3"}.get(codec, "aac")
    for out, want in ((tmp_path / "o.mp4", played), (tmp_path / "o.mkv", None)):
        p = run(src, out, "-qq", *FAST)
        assert p.returncode == 0, p.stderr
        with av.open(str(src)) as c_in, av.open(str(out)) as c:
            kept = c_in.streams.audio[0].codec_context.codec.canonical_name
            assert c.streams.audio[0].codec_context.codec.canonical_name == (want or kept)
        sound, rate, _ = audio_of(out)
        assert abs(sound.size / rate - 2.0) < 0.1
        assert abs(loudest_hz(sound, rate) - TONE_HZ) < 5


def test_a_second_video_stream_is_not_written_and_said(tmp_path):
    """A file with two video streams (two cameras, both showing the face): the first is de-identified,
    the second never copied (it would be the face raw), and a warning says so (it went silently)."""
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as c:
        streams = [c.add_stream("libx264", rate=25) for _ in range(2)]
        for s in streams:
            s.width, s.height, s.pix_fmt = 256, 192, "yuv420p"
        for rgb in moving_faces(20, 256, 192, size=130):
            for s in streams:
                c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        for s in streams:
            c.mux(s.encode(None))
    for extra in ((), ("--keep-metadata",)):
        out = tmp_path / "o.mkv"
        p = run(src, out, "-q", "--force", *extra, *FAST)
        assert p.returncode == 0, p.stderr
        assert "1 more video stream(s) (another camera or angle) not written" in p.stderr
        with av.open(str(out)) as c:
            assert len(c.streams.video) == 1 and not c.streams.audio


def test_a_codec_the_container_cannot_hold_is_one_plain_line(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "o.webm", "--codec", "libx264"))
    assert "cannot hold libx264" in line and "libvpx-vp9" in line and "does not support" not in line
    assert os.listdir(tmp_path) == []
    assert "0-63" in one_line_error(run(clip, tmp_path / "o.webm", "--crf", "64"))
    assert "0-51" in one_line_error(run(clip, tmp_path / "o.mp4", "--codec", "libx264", "--crf", "60"))
    assert "no video encoder here writes .wav files" in one_line_error(run(clip, tmp_path / "o.wav"))


# ---------------------------------------------------------------- 4: leftovers of a killed run
def test_killed_run_leaves_a_temp_file_the_next_run_removes(tmp_path):
    src = write_clip(tmp_path / "long.mp4", moving_faces(150, 256, 192, size=130), audio=False)
    out = tmp_path / "o.mp4"
    parts = re.compile(r"\.o\.[A-Za-z0-9]+-\d+-[0-9a-f]+\.part\.mp4")
    proc = subprocess.Popen([*CLI, src, str(out), "-qq", *FAST], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not [f for f in os.listdir(tmp_path) if parts.fullmatch(f)]:  # the run is writing its temp file
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    left = [f for f in os.listdir(tmp_path) if parts.fullmatch(f)]
    assert left and not out.exists()  # SIGKILL: nothing could clean up
    # a temp file of a process that is alive (this one) is another run's work in progress: kept
    host = re.match(r"\.o\.([A-Za-z0-9]+)-", left[0]).group(1)
    alive = tmp_path / f".o.{host}-{os.getpid()}-0123abcd.part.mp4"
    elsewhere = tmp_path / ".o.otherhost-1-0123abcd.part.mp4"  # another machine's, on a shared folder
    elsewhere.write_bytes(b"not ours to judge")
    alive.write_bytes(b"in progress")
    p = run(src, out, "-qq", *FAST)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["long.mp4", "o.mp4", alive.name, elsewhere.name])


# ---------------------------------------------------------------- 5: metadata, colour profile, alpha
MAKE_MODEL = {"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 15",
              "location": "+48.8584+002.2945/"}


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_keep_metadata_keeps_make_and_model(tmp_path, ext):
    src = write_clip(tmp_path / "phone.mp4", moving_faces(6, 256, 192, size=130), metadata=MAKE_MODEL)
    with av.open(src) as c:
        assert c.metadata.get("com.apple.quicktime.make") == "Apple"  # the input really has them
    kept, stripped = tmp_path / f"k.{ext}", tmp_path / f"s.{ext}"
    assert run(src, kept, "--keep-metadata", "-qq", *FAST).returncode == 0
    assert run(src, stripped, "-qq", *FAST).returncode == 0
    with av.open(str(kept)) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}
    for k, v in MAKE_MODEL.items():
        assert tags.get(k) == v, (k, tags)
    with av.open(str(stripped)) as c:
        text = json.dumps(dict(c.metadata)).lower()
    assert "apple" not in text and "iphone" not in text and "48.8584" not in text


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_keep_metadata_keeps_chapters(clip, tmp_path, ext):
    """Chapter titles are metadata ("Alice arrives"): kept whole with --keep-metadata (they were
    dropped in every mode), never written without it."""
    src = tmp_path / "chapters.mkv"
    chapters = [{"id": 1, "start": 0, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "Alice arrives"}},
                {"id": 2, "start": 1000, "end": 2000, "time_base": Fraction(1, 1000), "metadata": {"title": "Bob speaks"}}]
    with av.open(str(clip)) as i, av.open(str(src), "w") as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        o.set_chapters(chapters)
        for pk in i.demux(i.streams.video[0]):
            if pk.dts is not None:
                pk.stream = vs
                o.mux(pk)
    for keep in (True, False):
        out = tmp_path / f"o{int(keep)}.{ext}"
        p = run(src, out, "-qq", *FAST, *(["--keep-metadata"] if keep else []))
        assert p.returncode == 0, p.stderr
        with av.open(str(out)) as c:
            got = [(float(ch["start"] * ch["time_base"]), ch["metadata"].get("title")) for ch in c.chapters()]
        assert got == ([(0.0, "Alice arrives"), (1.0, "Bob speaks")] if keep else [])


def test_keep_metadata_keeps_subtitles(clip, tmp_path):
    """Subtitles (and data streams: a camera's GPS track) are copied with --keep-metadata, dropped
    without it; a container that cannot hold them says so."""
    src = with_subtitles(clip, tmp_path / "subs.mkv")
    for keep in (True, False):
        out, rep_path = tmp_path / f"o{int(keep)}.mkv", tmp_path / f"r{int(keep)}.json"
        p = run(src, out, "--report", rep_path, "-qq", *FAST, *(["--keep-metadata"] if keep else []))
        assert p.returncode == 0, p.stderr
        n, text = subtitle_text(out)
        assert (b"Hello Alice" in text) == keep and n == int(keep)
    p = run(src, tmp_path / "o.mp4", "-qq", *FAST, "--keep-metadata")  # MP4 takes no SubRip
    assert p.returncode == 0 and "subtitle or data stream(s) of the input cannot go into this container" in p.stderr


@pytest.fixture(scope="module")
def icc_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
@pytest.mark.parametrize("keep", [False, True])
def test_images_keep_their_colour_profile(tmp_path, icc_profile, ext, keep):
    from PIL import Image

    src = tmp_path / f"in{ext}"
    Image.fromarray(astronaut()).save(src, icc_profile=icc_profile)
    out = tmp_path / f"out{ext}"
    p = run(src, out, *(["--keep-metadata"] if keep else []), "-qq", *FAST)
    assert p.returncode == 0, p.stderr
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc_profile


def test_rgba_png_keeps_alpha(tmp_path):
    from PIL import Image

    rgb = astronaut()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    p = run(src, out, "-qq", *FAST)
    assert p.returncode == 0, p.stderr
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        got = np.asarray(im)
    assert np.array_equal(got[:, :, 3], alpha)
    assert np.abs(got[:, :, :3].astype(int) - rgb).max() > 30  # the face itself was changed


# ---------------------------------------------------------------- 7: the demo
def test_demo_animates_a_held_out_portrait_at_default_settings(tmp_path):
    from ideud.eval.portraits import held_out_names, portraits_dir
    from importlib import resources

    shipped = resources.files("ideud.models").joinpath("data/demo_portrait.jpg").read_bytes()
    assert len(shipped) < 50_000
    folder = portraits_dir()
    if folder is not None:
        held_out = {hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in held_out_names(folder)}
        assert hashlib.sha256(shipped).hexdigest() in held_out
    out, rep_path = tmp_path / "demo.mp4", tmp_path / "demo.json"
    p = run("demo", out, "--frames", "10", "--seed", "1", "--report", rep_path, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "default settings" in p.stderr and "guard off" not in p.stderr
    rep = json.loads(rep_path.read_text())
    assert rep["options"]["privacy"] == "balanced" and rep["options"]["restorer"] == "auto"
    assert rep["face_frames"] == 10 and rep["tracks"]
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.width == 2 * 640 and v.frames == 10


# ---------------------------------------------------------------- 8: words
def test_summary_says_rendered_and_obfuscated(clip, tmp_path):
    p = run(clip, tmp_path / "o.mp4", *FAST)
    assert p.returncode == 0, p.stderr
    summary = p.stderr.strip().splitlines()[-1]
    assert re.search(r"60 frames, 1 face track, 60 face-frames: \d+ rendered, \d+ obfuscated", summary), summary


def test_one_image_is_one_frame_one_track(tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(astronaut()).save(src)
    p = run(src, tmp_path / "o.png", *FAST)
    assert p.returncode == 0, p.stderr
    assert "1 frame, 1 face track, 1 face-frame: " in p.stderr, p.stderr


def test_unknown_restorer_lists_auto(clip, tmp_path):
    line = one_line_error(run(clip, tmp_path / "o.mp4", "--restorer", "foo"))
    assert "auto" in line and "bank" in line


def test_quiet_keeps_the_tier_line_and_twice_hides_it(tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(astronaut()).save(src)
    once = run(src, tmp_path / "o1.png", "-q", "--privacy", "off")
    twice = run(src, tmp_path / "o2.png", "-qq", "--privacy", "off")
    assert once.returncode == twice.returncode == 0, once.stderr + twice.stderr
    assert "tier" in once.stderr or "restorer:" in once.stderr, once.stderr
    assert "face track" not in once.stderr  # no summary with -q
    assert twice.stderr.strip() == "", twice.stderr


def test_a_face_free_video_comes_out_untouched(tmp_path):
    # item 6: a Mandelbrot zoom (the bare detector finds a "face" in most frames) at default settings
    from clips import read_frames
    from false_face_sets import face_free

    src = write_clip(str(tmp_path / "zoom.mkv"), face_free("mandelbrot", 40), codec="ffv1", pix_fmt="yuv444p",
                     audio=False)
    out, rep = tmp_path / "zoom-out.mkv", tmp_path / "r.json"
    p = run(src, out, "--codec", "ffv1", "--report", rep, "-qq")
    assert p.returncode == 0, p.stderr
    report = json.loads(rep.read_text())
    assert report["frames"] == 40 and report["face_frames"] == 0 and report["tracks"] == []
    for a, b in zip(read_frames(src), read_frames(out), strict=True):  # no blob anywhere, bit for bit
        assert np.array_equal(a, b)
