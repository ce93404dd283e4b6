"""The guard's search restores its next batch while it checks this one (stream/guard_ahead.py):
what a batch started ahead and not used fixed is taken back, so the video is the same bit for bit
with and without looking ahead."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clips import moving_faces, read_frames, write_clip
from test_prior_caches import face  # noqa: F401  (a fixture: a held-out portrait and its landmarks)
from ideud.stream import guard_ahead
from ideud.stream import guard_policy as gp
from ideud.stream.identity import IdentityStage
from ideud.stream.pipeline import Options, deidentify
from ideud.stream.restore_prior import PriorRestorer
from ideud.stream.types import RestoreItem


def _item(rgb, lm, provisional=False):
    return RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                       track_id=1, seed=9, level=1, provisional=provisional)


def _other_frame(rgb):
    """The same face in another frame: other light, so the track's new face would be chosen differently."""
    return np.clip(rgb.astype(np.int16) * 3 // 4 + 20, 0, 255).astype(np.uint8)


def test_a_provisional_restore_taken_back_leaves_nothing_behind(face):  # noqa: F811
    rgb, lm = face
    later = _other_frame(rgb)
    fresh = PriorRestorer().restore([_item(later, lm)])[0]  # the key first asked in the later frame
    after_a = PriorRestorer()
    after_a.restore([_item(rgb, lm)])
    fixed_earlier = after_a.restore([_item(later, lm)])[0]  # ... and first asked in the earlier one
    assert not np.array_equal(fresh, fixed_earlier)  # where it was first asked shows: the check can fail

    taken_back = PriorRestorer()
    taken_back.restore([_item(rgb, lm, provisional=True)])
    assert (1, 9, 1) in taken_back._targets
    taken_back.settle(1, keep=False)
    assert not any(k[0] == 1 for k in taken_back._targets) and not taken_back._provisional
    assert np.array_equal(taken_back.restore([_item(later, lm)])[0], fresh)

    kept = PriorRestorer()
    kept.restore([_item(rgb, lm, provisional=True)])
    kept.settle(1, keep=True)
    assert np.array_equal(kept.restore([_item(later, lm)])[0], fixed_earlier)


def test_settle_goes_in_order_through_the_worker_and_the_restore_process(face):  # noqa: F811
    from ideud.stream.restore_processes import RestoreProcesses
    from ideud.stream.restore_worker import RestoreWorker

    rgb, lm = face
    later = _other_frame(rgb)
    fresh = PriorRestorer().restore([_item(later, lm)])[0]
    worker = RestoreWorker(RestoreProcesses(PriorRestorer(), 1, sigma=0.25))
    try:
        assert worker.settles
        ahead = worker.submit([_item(rgb, lm, provisional=True)])  # not waited for: settle queues behind it
        worker.settle(1, keep=False)
        assert np.array_equal(worker.restore([_item(later, lm)])[0], fresh)
        assert len(ahead.result()[0]) == 1
    finally:
        worker.close()
        worker.restorer.close()


def test_identity_picks_fixed_ahead_are_dropped():
    ident = IdentityStage(sigma=0.25)
    ident.preset_picks(4, seed=11, picks={"00": 1})
    before = ident.pick_keys(4)
    ident.preset_picks(4, seed=11, picks={"0a": 2})
    new = ident.pick_keys(4) - before
    assert new == {bytes.fromhex("0a")}
    ident.drop_picks(4, new)
    assert ident.pick_keys(4) == before and ident.pick_keys(5) == set()


def test_the_next_batch_stays_within_the_step_table_and_the_frames_budget():
    p = gp.POLICIES["balanced"]
    assert guard_ahead.batch_size(p, 0, 0, first=object(), budget=99) == 1  # the pipeline's own render alone
    assert guard_ahead.next_batch(p, 0, 0, 1, budget=99) == (0, 1, 3)
    assert guard_ahead.next_batch(p, 0, 1, 3, budget=99) == (1, 0, 4)
    assert guard_ahead.next_batch(p, 0, 1, 3, budget=2) == (1, 0, 2)
    assert guard_ahead.next_batch(p, 0, 1, 3, budget=0) is None  # never into the next frame
    assert guard_ahead.next_batch(p, len(gp.STEPS) - 1, 0, 4, budget=99) is None


@pytest.fixture(scope="module")
def searched_clip(clip_dir):
    return write_clip(str(clip_dir / "two_faces_ahead.mp4"), moving_faces(12, 640, 360, size=170, faces=2), audio=False)


def test_looking_ahead_gives_the_same_video(searched_clip, tmp_path, monkeypatch):
    # default settings: the guard searches through the restore worker and process; batches started
    # ahead are both used (the search went on) and taken back (it stopped before them)
    counts = {"kept": 0, "dropped": 0}
    real_settle = guard_ahead.settle

    def counting_settle(guard, tid, batch, keep):
        if batch is not None and batch.provisional:
            counts["kept" if keep else "dropped"] += 1
        return real_settle(guard, tid, batch, keep)

    from ideud.stream import guard as guard_module

    monkeypatch.setattr(guard_module, "settle", counting_settle)
    videos = {}
    for ahead in (False, True):
        for mode in gp.MODES:
            if mode in gp.POLICIES:
                monkeypatch.setitem(gp.POLICIES, mode, dataclasses.replace(gp.POLICIES[mode], ahead=ahead))
        out = tmp_path / f"ahead_{ahead}.mkv"
        report = deidentify(searched_clip, str(out), Options(codec="ffv1", seed=3, audio=False))
        assert report["fallback_face_frames"] < report["face_frames"]
        videos[ahead] = read_frames(out)
    assert counts["kept"] >= 1 and counts["dropped"] >= 1, counts
    assert len(videos[False]) == len(videos[True]) == 12
    for a, b in zip(videos[False], videos[True]):
        assert np.array_equal(a, b)


def test_a_batch_started_ahead_that_fails_midway_is_taken_back(monkeypatch):
    # the second candidate's render fails: the first one's identity pick and restorer choices are
    # taken back before the error goes on (a fault put in on purpose: stand-ins record the calls)
    calls = []

    class Identity:
        picks: set = {b"old"}

        def pick_keys(self, tid):
            return set(self.picks)

        def set_noise(self, tid, noise):
            self.picks.add(bytes([len(self.picks)]))

        def drop_picks(self, tid, keys):
            calls.append(("drop_picks", set(keys)))
            self.picks -= set(keys)

    class Restorer:
        def settle(self, tid, keep):
            calls.append(("settle", keep))

    class Guard:
        identity, restorer = Identity(), Restorer()

        def _candidate(self, st, step, j):
            return None, 0, j, 0.25

    def start(*args):
        if len(calls) or start.n:
            raise RuntimeError("render failed")
        start.n = 1
        return "handle"
    start.n = 0
    monkeypatch.setattr(guard_ahead, "start_candidate", start)
    with pytest.raises(RuntimeError):
        guard_ahead.start_batch(Guard(), None, 1, None, None, 1, 0, 4, None, provisional=True)
    assert calls == [("drop_picks", {b"\x01", b"\x02"}), ("settle", False)]
    assert Guard.identity.picks == {b"old"}
