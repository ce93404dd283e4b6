"""Detection on every other frame of a file run (stream/cadence.py): FaceMesh follows the tracked
faces between; a face that appears on a frame without detection is found on the next one and
hidden before it (the look-back, one frame deeper for the cadence); a scene cut (it ends every
track) is always detected.

Real components: CenterFace and its verifier, FaceMesh, the default pipeline (privacy guard on),
PyAV with FFV1 both ways, build portraits."""
from __future__ import annotations

import numpy as np
import pytest

from clips import background, read_frames, write_clip
from footage import portrait_head
from ideud.eval.portraits import portraits_dir
from ideud.stream.cadence import DetectCadence
from ideud.stream.detect import find_centerface_model
from ideud.stream.options import Options
from ideud.stream.runner import deidentify

pytestmark = pytest.mark.skipif(find_centerface_model() is None or portraits_dir() is None,
                                reason="no CenterFace ONNX or no portraits")

W, H, HEAD = 640, 360, 180
A, B = (40, 90), (400, 90)  # top-left corners of the two heads


def _frame() -> np.ndarray:
    f = np.empty((H, W, 3), np.uint8)
    f[:] = (90, 120, 150)
    return f


def _put(f: np.ndarray, head: np.ndarray, at) -> None:
    x, y = at
    f[y:y + HEAD, x:x + HEAD] = head


def _inner(at) -> tuple:
    """Eyes to mouth of a head square at `at`."""
    x, y = at
    return x + 60, y + 60, x + 120, y + 128


def _changed(a: np.ndarray, b: np.ndarray, box) -> float:
    x0, y0, x1, y1 = box
    return float((np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1].astype(int)).max(2) > 8).mean())


def _run(tmp_path, frames, name: str, **kw):
    src = write_clip(str(tmp_path / f"{name}.mkv"), frames, codec="ffv1", pix_fmt="yuv444p", audio=False)
    out = tmp_path / f"{name}-out.mkv"
    rep = deidentify(src, str(out), Options(codec="ffv1", seed=1, audio=False, frame_log=True, force=True,
                                            restore_ahead=2, **kw))
    return read_frames(src), read_frames(out), rep


def _tracks_by_frame(rep) -> dict:
    return {e["frame"]: {f["track"] for f in e["faces"]} for e in rep["frame_log"] if "faces" in e}


def test_a_face_appearing_between_detections_is_hidden_until_found(tmp_path):
    first, second = portrait_head(3, HEAD, split="build"), portrait_head(8, HEAD, split="build")
    frames = []
    for i in range(8):
        f = _frame()
        _put(f, first, A)
        if i >= 3:  # frame 3: not detected (a face is tracked, and 3 is odd)
            _put(f, second, B)
        frames.append(f)
    src, out, rep = _run(tmp_path, frames, "appears")
    assert rep["detect_skipped_frames"] == 4  # 1, 3, 5, 7
    tracks = _tracks_by_frame(rep)
    old = tracks[0]
    assert len(old) == 1 and all(old <= tracks[i] for i in range(8))  # the first face followed throughout
    new = {i: tracks[i] - old for i in range(8)}
    assert [bool(new[i]) for i in range(8)] == [False] * 4 + [True] * 4  # found at frame 4, followed at 5 and 7
    # frames 3, 2 and 1: the look-back's two, and one more for the frame the cadence may have found it late by
    assert rep["hidden_before_found"] == 3
    for i in range(8):  # never a face's pixels as they were (a rendered face changes ~70 % of them by > 8)
        if i >= 3:
            assert _changed(src[i], out[i], _inner(B)) > 0.5, f"frame {i}: the new face left as it was"
        assert _changed(src[i], out[i], _inner(A)) > 0.5, f"frame {i}: the first face left as it was"
    x0, y0, x1, y1 = _inner(B)
    assert out[3][y0:y1, x0:x1].reshape(-1, 3).std(0).max() < 2.0  # frame 3: one flat block (the look-back's)


def test_a_scene_cut_is_detected_on_a_frame_that_would_be_skipped(tmp_path):
    first, second = portrait_head(3, HEAD, split="build"), portrait_head(8, HEAD, split="build")
    other = (255 - background(W, H, seed=3)[::-1]).copy()
    frames = []
    for i in range(6):
        if i < 3:
            f = _frame()
            _put(f, first, A)
        else:  # frame 3 (odd): another shot, another person elsewhere
            f = other.copy()
            _put(f, second, B)
        frames.append(f)
    src, out, rep = _run(tmp_path, frames, "cut")
    assert rep["scene_cuts"] >= 1
    tracks = _tracks_by_frame(rep)
    assert tracks[3] and not (tracks[3] & tracks[2])  # found at the cut itself, by a new track
    assert rep["hidden_before_found"] == 0  # nothing to hide: found where it appeared
    assert _changed(src[3], out[3], _inner(B)) > 0.5
    assert rep["detect_skipped_frames"] == 2  # 1 and 5


def test_every_frame_when_asked_and_the_schedule():
    every = DetectCadence(1)
    assert all(every.due(i, tracking=True) for i in range(5)) and every.skipped == 0
    two = DetectCadence(2)
    assert [two.due(i, tracking=True) for i in range(5)] == [True, False, True, False, True]
    assert two.due(3, tracking=False) and two.skipped == 2  # nothing tracked (also after every scene cut)
    with pytest.raises(ValueError):
        DetectCadence(4)  # more frames than the look-back could hide before a first find
