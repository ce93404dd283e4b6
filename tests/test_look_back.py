"""A face the detector finds only from frame t on is hidden in the frames before t that a file run
still holds (stream/look_back.py): not written raw there.

Real components: CenterFace and its verifier, FaceMesh, the default pipeline (privacy guard on),
PyAV with FFV1 both ways (lossless: what the detector sees is what was drawn), `ideud-video` on an
H.264 clip, a build portrait."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clips import background, read_frames, write_clip
from footage import portrait_head
from ideud.eval.portraits import portraits_dir
from ideud.stream.detect import find_centerface_model
from ideud.stream.look_back import LookBack
from ideud.stream.options import Options
from ideud.stream.runner import deidentify

pytestmark = pytest.mark.skipif(find_centerface_model() is None or portraits_dir() is None,
                                reason="no CenterFace ONNX or no portraits")

W, H, HEAD = 640, 360, 200
X, Y = 220, 80  # where the head square sits when it is all in the picture


def _frame() -> np.ndarray:
    f = np.empty((H, W, 3), np.uint8)
    f[:] = (90, 120, 150)
    return f


def _run(tmp_path, frames, name: str):
    src = write_clip(str(tmp_path / f"{name}.mkv"), frames, codec="ffv1", pix_fmt="yuv444p", audio=False)
    out = tmp_path / f"{name}-out.mkv"
    # restore_ahead 2 (what a machine of 2 cores and more runs): two frames held behind Step I
    rep = deidentify(src, str(out), Options(codec="ffv1", seed=1, audio=False, frame_log=True, force=True,
                                            restore_ahead=2))
    return read_frames(src), read_frames(out), rep


def _changed(a: np.ndarray, b: np.ndarray, box) -> float:
    """Share of the box's pixels the run changed by more than 8 levels."""
    x0, y0, x1, y1 = box
    d = np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1].astype(int)).max(2)
    return float((d > 8).mean())


INNER = (X + 70, Y + 70, X + 130, Y + 140)  # eyes to mouth of the head square


def _blurred_first() -> list[np.ndarray]:
    """Frames 0-1: the face blurred (sigma 14 px: CenterFace finds nothing), then sharp and found."""
    head = portrait_head(3, HEAD, split="build")
    frames = []
    for i in range(6):
        f = _frame()
        f[Y:Y + HEAD, X:X + HEAD] = cv2.GaussianBlur(head, (0, 0), 14) if i < 2 else head
        frames.append(f)
    return frames


def test_face_blurred_in_the_first_frames_is_hidden_there(tmp_path):
    src, out, rep = _run(tmp_path, _blurred_first(), "blurred_first")
    log = {e["frame"]: e for e in rep["frame_log"]}
    assert [len(log[i]["faces"]) for i in range(6)] == [0, 0, 1, 1, 1, 1]  # found from frame 2 on
    assert rep["hidden_before_found"] == 2
    inner = INNER
    for i in (0, 1):
        assert log[i]["hidden_before_found"]
        assert _changed(src[i], out[i], inner) > 0.9, f"frame {i}: the face left as it was"
        patch = out[i][inner[1]:inner[3], inner[0]:inner[2]].reshape(-1, 3)
        assert patch.std(0).max() < 2.0  # one flat block (the default fallback), nothing of the face


def test_head_entering_the_picture_is_hidden_before_it_is_found(tmp_path):
    head = portrait_head(3, HEAD, split="build")
    frames = []
    for vis in (70, 90, 110, 130, 150, 170):  # px of the head square inside the left edge
        f = _frame()
        f[Y:Y + HEAD, :vis] = head[:, HEAD - vis:]
        frames.append(f)
    src, out, rep = _run(tmp_path, frames, "entering")
    log = {e["frame"]: e for e in rep["frame_log"]}
    first = min(i for i in log if log[i]["faces"])
    assert first >= 1  # the detector needs more of the face than the first frame shows
    for i in range(max(0, first - 2), first):
        edge = (0, Y + 40, 40, Y + 160)  # the part of the face already inside
        assert _changed(src[i], out[i], edge) > 0.5, f"frame {i}: the entering face left as it was"
    assert rep["hidden_before_found"] == min(first, 2)


def test_no_look_back_across_a_cut(tmp_path):
    # another picture until frame 2, then the face: the frames before the cut are another shot,
    # and stay as they were
    head = portrait_head(3, HEAD, split="build")
    other = (255 - background(W, H, seed=3)[::-1]).copy()
    frames = []
    for i in range(5):
        f = other.copy() if i < 2 else _frame()
        if i >= 2:
            f[Y:Y + HEAD, X:X + HEAD] = head
        frames.append(f)
    src, out, rep = _run(tmp_path, frames, "cut")
    assert rep["scene_cuts"] >= 1
    assert rep["hidden_before_found"] == 0
    for i in (0, 1):
        assert np.array_equal(src[i], out[i])


def test_a_place_already_processed_is_not_hidden_again():
    # the held frame had a face of its own there (the person, tracked): its output stands
    lb = LookBack("pixelate")
    frame = SimpleNamespace()
    held = SimpleNamespace(frame=frame, jobs=[SimpleNamespace(box=[100, 100, 180, 190])], done=False, look_back=[],
                           detected=True)
    lb.opened(held, [], cut=False)
    lb.opened(SimpleNamespace(frame=frame, look_back=[], detected=True), [np.array([104.0, 98.0, 186.0, 192.0])],
              cut=False)
    assert len(held.look_back) == 1
    assert lb.patch(held) is None  # covered: nothing drawn (the frame object would not take it)
    assert lb.hidden == 0 and held not in lb.open


def test_it_reaches_one_frame_further_past_a_frame_without_detection():
    # stream/cadence.py: a face appearing on a frame the detector skipped is found a frame late
    for detected, reached in (((True, True, False), [1, 1, 1]), ((True, False, True), [0, 1, 1]),
                              ((True, False), [1, 1])):  # a shot two frames old: both
        lb = LookBack("pixelate", frames=3)
        held = [SimpleNamespace(look_back=[], detected=d) for d in detected]
        for q in held:
            lb.opened(q, [], cut=False)
        lb.opened(SimpleNamespace(look_back=[], detected=True), [np.array([10.0, 10.0, 90.0, 100.0])], cut=False)
        assert [len(q.look_back) for q in held] == reached


def test_ideud_video_hides_them_and_says_so(tmp_path):
    """The same clip as H.264 through `ideud-video` at its default settings."""
    src = write_clip(str(tmp_path / "in.mp4"), _blurred_first(), audio=False)
    dst, rep = str(tmp_path / "out.mp4"), str(tmp_path / "rep.json")
    p = subprocess.run([sys.executable, "-m", "ideud.tools.cli", src, dst, "--report", rep, "--seed", "1"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    hidden = json.load(open(rep))["hidden_before_found"]
    assert hidden == 2  # frames 0 and 1: a run holds at least the look-back's frames, on any number of cores
    assert f"{hidden} face-frame" in p.stderr and "face was first found" in p.stderr
    a, b = read_frames(src), read_frames(dst)
    for i in (0, 1):
        assert _changed(a[i], b[i], INNER) > 0.9, f"frame {i}: the face left as it was"
