"""A track's faces not checked since its last passed check are hidden when its next re-check fails
(stream/retract.py): the frames a file run still holds are not written with a face that had drifted.

Real components: the default pipeline (privacy guard on, CenterFace, FaceMesh, the prior restorer),
PyAV both ways; only the guard's verdict on one frame is forced, as a re-check that finds the output
drifted toward the person would give it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

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


def test_only_the_failed_tracks_unchecked_faces_since_its_last_check_are_taken_back():
    r = Retraction()
    frames = [_frame(0, [(1, False), (2, False)]), _frame(1, [(1, True), (2, False)]),
              _frame(2, [(1, False), (2, False)]), _frame(3, [(1, False), (2, True)])]
    for p in frames:
        r.reviewed(p, set())
    r.pasted(frames[0])
    r.reviewed(_frame(4, [(2, True)]), {1})  # track 1's re-check failed in frame 4
    kept = [[j.track.id for j in p.reviewed[0]] for p in frames]
    assert kept == [[1, 2], [1, 2], [2], [2]]  # frames 2 and 3 lose track 1's face; frame 1 checked it
    assert [j.reason for j in frames[2].jobs] == ["privacy", None] and frames[3].jobs[0].reason == "privacy"
    assert frames[2].reviewed[1] == ["face 2.2"] and r.hidden == 2
    assert frames[0].jobs[0].reason is None  # pasted already: nothing taken back


def test_a_failed_re_check_hides_the_unchecked_frame_before_it_in_a_file_run(tmp_path, monkeypatch):
    # a slowly moving head: checked at its first frames, then passed frame to frame without a full check
    src = write_clip(str(tmp_path / "in.mp4"), moving_faces(30, size=200), audio=False)
    checked, fail_at = {}, 20
    review = gd.PrivacyGuard.review

    def reviewing(self, frame, entries):
        out = review(self, frame, entries)
        if frame.index == fail_at:  # as if its re-check had found the output drifted to the person
            self.failed, self.checked = {e[0].track.id for e in entries}, set()
            out = [None] * len(out)
        checked[frame.index] = bool(self.checked)
        return out

    monkeypatch.setattr(gd.PrivacyGuard, "review", reviewing)
    rep = deidentify(src, str(tmp_path / "out.mkv"), Options(codec="ffv1", seed=1, audio=False, force=True,
                                                           frame_log=True))
    status = {e["frame"]: e["faces"][0]["status"] for e in rep["frame_log"] if e["faces"]}
    last = max(i for i in range(fail_at) if checked.get(i))
    assert last < fail_at - 2, "checked right before the failed frame: nothing to tell"
    hidden = [i for i in range(fail_at) if status[i] == "fallback:privacy"]
    # the frame before the failed one is still held when that frame is reviewed (file runs paste a frame
    # back after the next two frames' reviews); the ones before it are written already
    assert hidden == [fail_at - 1] and status[fail_at] == "fallback:privacy"
    assert rep["hidden_before_failed_check"] == 1
