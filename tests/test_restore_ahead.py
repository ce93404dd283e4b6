"""The restorer on its own thread (`restore_ahead`): same output as one thread, faces of waiting
frames batched together, the privacy guard still deciding on up-to-date faces."""
from __future__ import annotations

import os
import time

import av
import numpy as np
import pytest

from clips import frame_pts, moving_faces, read_frames, write_clip
from report_checks import assert_nothing_of_the_person
from ideud.stream.pipeline import FaceProcessor, Options, deidentify
from ideud.stream.restore import ClassicRestorer


class HeldClassic(ClassicRestorer):
    """The classic restorer whose first call is held, as by a busy GPU, until more frames' faces
    wait behind it (a condition, not a fixed delay: the next call must find them waiting)."""

    def __init__(self, behind: int = 2):
        super().__init__()
        self.behind = behind
        self.worker = None  # set once the processor has made its restore worker
        self.calls = 0

    def restore(self, items):
        self.calls += 1
        if self.calls == 1:
            deadline = time.monotonic() + 60  # generous: a loaded machine only makes Step I slower
            while self.worker.waiting() < self.behind and time.monotonic() < deadline:
                time.sleep(0.01)
        return super().restore(items)


def test_the_cpu_default_runs_the_restorer_on_its_own_thread():
    # the CPU restorers gain a second core while Step I runs on the next frame (issue 14)
    p = FaceProcessor(Options(restorer="classic", privacy="off"))
    try:
        assert not p.restorer.on_gpu
        if (os.cpu_count() or 1) > 1:
            assert p.restore_ahead == 2 and p.worker is not None
        else:
            assert p.restore_ahead == 0 and p.worker is None
    finally:
        p.close()


def test_the_report_check_finds_a_leaked_code_not_the_bound_of_a_clipped_one():
    # an ID code clipped to [-1, 1] has many values of exactly 1.0, as has the worker's
    # "faces_per_call" with one face per call: not the person (the check counted 5 "hits")
    code = np.clip(np.random.default_rng(0).normal(0, 0.8, 48), -1, 1)
    assert (code == 1).sum() >= 5
    report = {"restore_worker": {"calls": 20, "faces": 20, "faces_per_call": 1.0, "seconds": 0.966}}
    assert_nothing_of_the_person(report, [code])
    inside = [float(v) for v in code if 0.05 < abs(v) < 1]
    for digits in (3, 4, 6):  # the values inside the range, as a report would write them: a leak
        leaked = {**report, **{f"v{i}": round(v, digits) for i, v in enumerate(inside[:10])}}
        with pytest.raises(AssertionError, match="values of an ID code"):
            assert_nothing_of_the_person(leaked, [code])


def _audio_packets(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(audio=0) if p.size)


def test_restore_ahead_gives_the_same_video_and_batches_across_frames(face_clip, tmp_path):
    o = dict(codec="ffv1", seed=5, privacy="off", restorer="classic")
    seq = deidentify(str(face_clip), str(tmp_path / "seq.mkv"), Options(**o, audio=False, restore_ahead=0))
    assert "restore_worker" not in seq
    held = HeldClassic()
    proc = FaceProcessor(Options(**o, audio=False, restore_ahead=4), restorer=held)
    held.worker = proc.worker
    try:
        ahead = deidentify(str(face_clip), str(tmp_path / "ahead.mkv"), Options(**o, audio=False), processor=proc)
    finally:
        proc.close()
    a, b = read_frames(tmp_path / "seq.mkv"), read_frames(tmp_path / "ahead.mkv")
    assert len(a) == len(b) == 30
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert frame_pts(tmp_path / "seq.mkv") == frame_pts(tmp_path / "ahead.mkv")
    assert ahead["face_frames"] == seq["face_frames"] and ahead["fallback_face_frames"] == seq["fallback_face_frames"]
    w = ahead["restore_worker"]
    assert w["ahead"] == 4 and w["faces"] == seq["face_frames"] - seq["fallback_face_frames"]
    assert w["max_faces_per_call"] >= 2 and w["calls"] < w["faces"]  # one face per frame, several per call
    assert ahead["timing"]["restore"]["calls"] == seq["timing"]["restore"]["calls"]


def test_restore_ahead_keeps_audio_and_frame_order(face_clip, tmp_path):
    out = tmp_path / "ahead.mp4"
    rep = deidentify(str(face_clip), str(out), Options(seed=5, privacy="off", restorer="classic", restore_ahead=3))
    assert rep["output"]["frames"] == 30 and rep["output"]["audio_streams"] == 1
    assert _audio_packets(out) == _audio_packets(face_clip)
    pts = frame_pts(out)
    assert pts == sorted(pts) and len(set(pts)) == 30


class SlowedRestorer:
    """Another restorer, each call held a little on the worker's thread: the main thread runs
    ahead of it by other amounts than usual. Only the timing changes, never a face."""

    def __init__(self, restorer, seconds: float):
        self.restorer, self.seconds = restorer, seconds  # `restorer`: the guard's inversion finds the prior

    def restore(self, items):
        time.sleep(self.seconds)
        return self.restorer.restore(items)

    def __getattr__(self, name):
        return getattr(self.restorer, name)


def test_with_the_guard_the_output_depends_on_neither_restore_ahead_nor_the_restorers_timing(tmp_path):
    # default settings (guard on): frame 0's review chooses each track's face (a search, one track
    # escalated) while later frames already wait for the restorer. Those frames' Step I must see
    # that decision as on one thread; before, they were drawn again from later state (2 frames
    # differed) and one track's re-check came out otherwise
    src = write_clip(tmp_path / "two.mp4", moving_faces(12, 320, 240, size=120, faces=2), audio=False)
    o = dict(seed=11, codec="ffv1", audio=False)
    seq = deidentify(str(src), str(tmp_path / "seq.mkv"), Options(**o, restore_ahead=0))
    assert seq["privacy"]["mode"] == "balanced" and "restore_worker" not in seq
    assert sum(t["privacy"]["searches"] for t in seq["tracks"]) >= 2  # the decisions the later frames wait on
    for ahead in (1, 4):
        proc = FaceProcessor(Options(**o, restore_ahead=ahead))
        proc.worker.restorer = SlowedRestorer(proc.worker.restorer, 0.02)
        try:
            rep = deidentify(str(src), str(tmp_path / f"ahead{ahead}.mkv"), Options(**o), processor=proc)
        finally:
            proc.close()
        assert rep["restore_worker"]["ahead"] == ahead
        a, b = read_frames(tmp_path / "seq.mkv"), read_frames(tmp_path / f"ahead{ahead}.mkv")
        assert len(a) == len(b) == 12
        assert [k for k, (x, y) in enumerate(zip(a, b)) if not np.array_equal(x, y)] == []
        decisions = [{k: t["privacy"][k] for k in ("status", "choice", "distance", "edgeface", "checks")}
                     for t in rep["tracks"]]
        assert decisions == [{k: t["privacy"][k] for k in ("status", "choice", "distance", "edgeface", "checks")}
                             for t in seq["tracks"]]
        # a frame's Step I runs before the previous frame's review (processor._settle): a decision
        # there has the next frame drawn again, the same number of times whatever the timing
        refreshed = [t["privacy"]["refreshed"] for t in rep["tracks"]]
        assert refreshed == [t["privacy"]["refreshed"] for t in seq["tracks"]]
        assert sum(refreshed) <= sum(t["privacy"]["searches"] + t["privacy"]["checks"] for t in seq["tracks"])


@pytest.mark.slow
def test_gan_restorer_on_its_own_thread(face_clip, tmp_path):
    torch = pytest.importorskip("torch")
    from ideud.engines.torch_engine import TorchEngine
    from ideud.models.gfpgan import GFPGANv1Clean
    from ideud.stream.restore_gan import GanRestorer

    torch.manual_seed(0)
    net = GFPGANv1Clean(narrow=0.125, num_style_feat=32).eval()
    outs, reps = [], []
    for ahead in (0, 3):
        proc = FaceProcessor(Options(seed=2, privacy="off", restore_ahead=ahead),
                             restorer=GanRestorer(TorchEngine(net, device="cpu", max_batch=4)))
        try:
            reps.append(deidentify(str(face_clip), str(tmp_path / f"gan{ahead}.mkv"),
                                   Options(codec="ffv1", audio=False), processor=proc))
        finally:
            proc.close()
        outs.append(read_frames(tmp_path / f"gan{ahead}.mkv"))
    assert reps[1]["restorer"] == "gan" and reps[1]["restore_worker"]["faces"] == reps[0]["face_frames"] - \
        reps[0]["fallback_face_frames"]
    # batches of several frames' faces give the same picture (conv kernels may round differently)
    assert max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(*outs)) <= 2


def test_the_next_frame_s_step_i_runs_before_this_frame_s_review(tmp_path):
    # the restorer works on frame t while frame t+1 is meshed and drawn: t's review waits until
    # after t+1's Step I (else the restorer idles through the guard, the guard through the
    # restorer), and comes before t+2's, whatever restore_ahead
    src = write_clip(tmp_path / "two.mp4", moving_faces(8, 320, 240, size=120, faces=2), audio=False)
    for ahead in (0, 2):
        proc = FaceProcessor(Options(seed=4, restore_ahead=ahead))
        events = []
        render_jobs, review = proc._render_jobs, proc.guard.review

        def drawn(frame, jobs, _f=render_jobs):
            events.append(("step1", frame.index))
            return _f(frame, jobs)

        def reviewed(frame, entries, _f=review):
            events.append(("review", frame.index))
            return _f(frame, entries)

        proc._render_jobs, proc.guard.review = drawn, reviewed
        try:
            rep = deidentify(str(src), str(tmp_path / f"o{ahead}.mkv"), Options(codec="ffv1", audio=False),
                             processor=proc)
        finally:
            proc.close()
        assert rep["frames"] == 8 and rep["fallback_face_frames"] < rep["face_frames"]
        at = {e: i for i, e in enumerate(events)}
        reviews = [k for kind, k in events if kind == "review"]
        assert reviews == sorted(reviews) and len(reviews) >= 6
        for k in reviews:
            if ("step1", k + 1) in at:
                assert at[("step1", k + 1)] < at[("review", k)], events
            if ("step1", k + 2) in at:
                assert at[("review", k)] < at[("step1", k + 2)], events
