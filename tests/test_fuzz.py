"""Fuzzing: mutated bytes of a valid clip never crash the tool and never leak a face."""
import subprocess
import sys

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clips import moving_faces, write_clip

CLI = [sys.executable, "-m", "ideud.tools.cli"]


@pytest.fixture(scope="module")
def seed_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "seed.mp4"
    return path, open(write_clip(path, moving_faces(20, 256, 192, size=130), audio=True), "rb").read()


@pytest.fixture(scope="module")
def detector():
    from ideud.stream.detect import make_detector

    return make_detector("auto")


def decoded_frames(path):
    frames = []
    try:
        with av.open(str(path)) as c:
            for f in c.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, ValueError):
        pass
    return frames


mutation = st.tuples(st.floats(0, 1), st.integers(0, 255))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(mutation, min_size=1, max_size=40), cut=st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_mutated_clip(seed_clip, detector, tmp_path_factory, mutations, cut):
    _, data = seed_clip
    data = bytearray(data)
    for where, value in mutations:
        data[int(where * (len(data) - 1))] = value
    if cut is not None:
        data = data[: int(len(data) * cut)]
    work = tmp_path_factory.mktemp("case")
    src, out = work / "in.mp4", work / "out.mp4"
    src.write_bytes(bytes(data))
    p = subprocess.run([*CLI, str(src), str(out), "--quiet", "--seed", "1"], capture_output=True, text=True, timeout=180)
    assert "Traceback" not in p.stderr
    assert p.returncode in (0, 2), p.stderr
    if p.returncode == 2:
        assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()
        return
    inp, res = decoded_frames(src), decoded_frames(out)
    assert res, "exit 0 but no frames written"
    for i, (a, b) in enumerate(zip(inp, res)):
        h, w = a.shape[:2]
        small = a  # the clip is small: detect at full size
        for face in detector.detect(small, 1.0):
            x0, y0, x1, y1 = np.clip(face.box, 0, [w, h, w, h]).astype(int)
            if (x1 - x0) < 12 or (y1 - y0) < 12:
                continue
            diff = np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1].astype(int)).mean()
            assert diff > 1.0, f"frame {i}: a detected face came out unchanged"
