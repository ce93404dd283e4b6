"""Timestamps the source does not give well.

Joined recordings (`cat a.ts b.ts`): the second part's clock restarts and its picture may be of
another size. Before, the encoder refused the first frame whose time went back ("encoding failed at
frame N (Invalid argument)", no output at all), and a frame of another size could not be encoded.
Now every frame is written, in order, at the first part's size; the video and the audio continue
across the join; a change of size ends the tracks (a scene cut), so no box of the first part is
carried into the second; the report says what happened.

A raw H.264 stream (a camera's .h264 file) has no timestamps at all: its frames were numbered one
tick apart by the encoder, a video of microseconds; now they are one frame's duration apart.
"""
from __future__ import annotations

import av
import numpy as np
import pytest

from clips import as_mpegts, audio_of, encoded, moving_faces, write_clip
from ideud.stream.pipeline import Options, deidentify
from ideud.stream.scene import CutDetector

N = 20


def _ts_part(tmp_path, name: str, width: int, height: int) -> bytes:
    """One recording as MPEG-TS (H.264 + AAC tone), its clock starting at zero like any other."""
    return as_mpegts(write_clip(str(tmp_path / f"{name}.mp4"), moving_faces(N, width, height, size=int(height * 0.5)),
                                audio=True))


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    folder = tmp_path_factory.mktemp("joined")
    path = folder / "joined.ts"
    path.write_bytes(_ts_part(folder, "a", 640, 360) + _ts_part(folder, "b", 480, 270))
    return path


def test_joined_recordings_are_written_whole(joined, tmp_path):
    with av.open(str(joined)) as c:
        frames = [(f.pts, f.width) for f in c.decode(video=0)]
    assert len(frames) == 2 * N and frames[N][0] < frames[N - 1][0] and frames[N][1] == 480  # as made
    out = tmp_path / "out.mkv"
    rep = deidentify(str(joined), str(out), Options(privacy="off", restorer="classic", seed=1))
    assert rep["output"]["frames"] == 2 * N
    assert rep["output"]["resized_frames"] == N and rep["output"]["timestamp_jumps"] == 1
    assert rep["scene_cuts"] == 1 and rep["face_frames"] == 2 * N and rep["fallback_face_frames"] == 0
    assert sorted(t["first_frame"] for t in rep["tracks"]) == [0, N]  # the first part's track ended at the join
    with av.open(str(out)) as c:
        got = [(float(f.pts * f.time_base), f.width, f.height) for f in c.decode(video=0)]
    times = [t for t, _, _ in got]
    assert len(got) == 2 * N and all(b > a for a, b in zip(times, times[1:]))
    assert {(w, h) for _, w, h in got} == {(640, 360)}
    step = np.median(np.diff(times))
    assert times[N] - times[N - 1] == pytest.approx(step, abs=0.002)  # the second part follows on
    sound, rate, _ = audio_of(out)
    assert sound.size / rate == pytest.approx(2 * N / 25, abs=0.15)  # both parts' audio, not the first's only


def test_a_frame_of_another_size_is_a_cut():
    det, rng = CutDetector(), np.random.default_rng(0)
    still = rng.integers(0, 255, (90, 160, 3), np.uint8)
    assert not det.is_cut(still, (640, 360)) and not det.is_cut(still, (640, 360))
    assert det.is_cut(still, (480, 270))  # the same picture, another size: its boxes mean nothing
    assert not det.is_cut(still, (480, 270))


def test_a_raw_h264_stream_gets_one_frame_duration_per_frame(tmp_path):
    src, out = encoded(tmp_path / "camera.h264", 10, 320, 180, fmt="h264"), tmp_path / "out.mp4"
    with av.open(str(src)) as c:
        assert all(f.pts is None for f in c.decode(video=0))  # as a camera writes it
    rep = deidentify(str(src), str(out), Options(privacy="off", restorer="classic", seed=1, audio=False))
    assert rep["output"]["frames"] == 10
    with av.open(str(out)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([k / 25 for k in range(10)], abs=1e-3)
