"""A track's faces not checked since its last passed check are hidden when its next re-check fails
(stream/retract.py): the frames a file run still holds are not written with a face that had drifted.

Real components: the default pipeline (privacy guard on, CenterFace, FaceMesh, the prior restorer),
PyAV both ways; only the guard's verdict on one frame is forced, as a re-check that finds the output
drifted toward the person would give it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from clips import moving_faces, write_clip
from ideud.stream import guard as gd
from ideud.stream.pipeline import Options, deidentify
from ideud.stream.retract import Retraction
from ideud.stream.types import FaceJob, PendingFrame


def _frame(number: int, faces: list) -> PendingFrame:
    """A reviewed frame holding `faces`: [(track id, checked)]."""
    p = PendingFrame(frame=None, number=number)
    p.jobs = [FaceJob(SimpleNamespace(id=t), np.zeros(4), checked=c) for t, c in faces]
    p.reviewed = (list(p.jobs), [f"face {number}.{t}" for t, _ in faces])
    return p


def test_only_the_failed_tracks_unchecked_faces_that_fail_since_its_last_check_are_taken_back(monkeypatch):
    from ideud.stream import retract

    asked = []

    def passes(guard, frame, job, face):  # the full check of a held face: here frame 3's passes, frame 2's not
        asked.append(face)
        return face == "face 3.1"

    monkeypatch.setattr(retract, "held_face_passes", passes)
    guard = SimpleNamespace(failed=set(), _tracks={})
    r = Retraction(guard)
    frames = [_frame(0, [(1, False), (2, False)]), _frame(1, [(1, True), (2, False)]),
              _frame(2, [(1, False), (2, False)]), _frame(3, [(1, False), (2, True)])]
    for p in frames:
        r.reviewed(p)
    r.pasted(frames[0])
    guard.failed = {1}  # track 1's re-check failed in frame 4
    r.reviewed(_frame(4, [(2, True)]))
    assert asked == ["face 3.1"]  # it passed: the frames before it stay as they were
    guard.failed = {1}
    r.reviewed(_frame(5, [(1, False), (2, True)]))  # failed again in frame 6, frame 5's face unchecked
    monkeypatch.setattr(retract, "held_face_passes", lambda *a: False)
    r.reviewed(_frame(6, [(2, True)]))
    kept = [[j.track.id for j in p.reviewed[0]] for p in r.waiting]
    assert kept == [[1, 2], [1, 2], [1, 2], [2], [2], [2]]  # frames 1-3 as they were; 5 loses track 1's face
    assert r.waiting[4].jobs[0].reason == "privacy" and r.hidden == 1 and r.rechecked == 2
    assert frames[0].jobs[0].reason is None  # pasted already: nothing taken back


def _failing_at(monkeypatch, fail_at: int) -> dict:
    """The guard's review made to fail every face of frame `fail_at`, as a re-check that found the output
    drifted to the person; -> which frames had a face checked in full at their review."""
    checked, review = {}, gd.PrivacyGuard.review

    def reviewing(self, frame, entries):
        out = review(self, frame, entries)
        if frame.index == fail_at:
            self.failed, self.checked = {e[0].track.id for e in entries}, set()
            out = [None] * len(out)
        checked[frame.index] = bool(self.checked)
        return out

    monkeypatch.setattr(gd.PrivacyGuard, "review", reviewing)
    return checked


@pytest.mark.parametrize("held_check", ["real", "fails"])
def test_a_failed_re_check_has_the_unchecked_frame_before_it_checked_in_a_file_run(tmp_path, monkeypatch, held_check):
    from ideud.stream import retract

    # a slowly moving head: checked at its first frames, then passed frame to frame without a full check
    src = write_clip(str(tmp_path / "in.mp4"), moving_faces(30, size=200), audio=False)
    fail_at = 20
    checked = _failing_at(monkeypatch, fail_at)
    if held_check == "fails":
        monkeypatch.setattr(retract, "held_face_passes", lambda *a: False)
    rep = deidentify(src, str(tmp_path / "out.mkv"), Options(codec="ffv1", seed=1, audio=False, force=True,
                                                           frame_log=True))
    status = {e["frame"]: e["faces"][0]["status"] for e in rep["frame_log"] if e["faces"]}
    last = max(i for i in range(fail_at) if checked.get(i))
    assert last < fail_at - 2, "checked right before the failed frame: nothing to tell"
    hidden = [i for i in range(fail_at) if status[i] == "fallback:privacy"]
    # the frame before the failed one is still held when that frame is reviewed (file runs paste a frame
    # back after the next two frames' reviews); the ones before it are written already
    assert rep["rechecked_before_failed_check"] == 1 and status[fail_at] == "fallback:privacy"
    if held_check == "fails":
        assert hidden == [fail_at - 1] and rep["hidden_before_failed_check"] == 1
        assert rep["tracks"][0]["privacy"]["fallback_why"]["before_failed_check"] == 1  # the track's report says why
    else:  # this head's new face holds: checked in full, it is written
        assert hidden == [] and rep["hidden_before_failed_check"] == 0
