"""Live degrade steps (stream/degrade.py): a face stage that is behind reuses a track's last
pasted face for a frame (longer for a still face), takes new tracks one at a time or obfuscates
them, never writes a raw face, and never reuses an obfuscated one; and the detection thread
(stream/live_detect.py). "Behind" is the degrade level or the queue depth handed over directly:
nothing here depends on the clock."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from clips import moving_faces
import threading

from ideud.stream.degrade import (CALM_FRAMES, MAX_REUSE, DegradeControl, ReuseCache, level_for,
                                  reuse_limit)
from ideud.stream.live_detect import LiveDetect
from ideud.stream.live_io import END, DropQueue, Gap
from ideud.stream.workers import detect_upright
from ideud.stream.pipeline import FaceProcessor, Options
from ideud.stream.types import Crop, Frame


def _live_processor(o: Options) -> FaceProcessor:
    """A processor as a live stream runs it (stream/live.py): the detector on every frame."""
    return FaceProcessor(dataclasses.replace(o, detect_every=1))


def frame_of(rgb: np.ndarray, index: int) -> Frame:
    return Frame(index=index, pts=index, time_base=Fraction(1, 25),
                 planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)], pix_fmt="rgb", full_range=True,
                 time=index / 25)


def _run(o: Options, frames: list, reuse_from: int, max_reuse: int = 1, level: int = 1):
    """Process `frames`, the face stage 'behind' from frame `reuse_from` on (a face reused up to
    `max_reuse` frames in a row, at degrade `level`); outputs, report, boxes and statuses."""
    p = _live_processor(o)
    p.reuse.max_reuse = max_reuse
    p.reuse.level = level
    outs, boxes = [], []
    try:
        for i, rgb in enumerate(frames):
            p.reuse_faces = i >= reuse_from
            fr = frame_of(rgb.copy(), i)
            p.process(fr)
            outs.append(np.dstack(fr.planes))
            boxes.append([f["box"] for f in p.frame_log[-1]["faces"]])
        rep = p.report()
        rep["statuses"] = [[f["status"] for f in entry["faces"]] for entry in p.frame_log]
        rep["new_obfuscated"] = p.reuse.new_obfuscated
        return outs, rep, boxes
    finally:
        p.close()


def _raw_share(out: np.ndarray, src: np.ndarray, box) -> float:
    """Share of the box's inner part (a face's eyes, nose, mouth) left exactly as it came in."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    sl = np.s_[int(y0 + 0.2 * h):int(y1 - 0.2 * h), int(x0 + 0.2 * w):int(x1 - 0.2 * w)]
    same = np.abs(out[sl].astype(int) - src[sl].astype(int)).max(-1) <= 1
    return float(same.mean())


def _true_boxes(n: int, width: int, height: int, first_box) -> list:
    """Where the face really is in each frame of `moving_faces` (one face): the first frame's mesh
    box moved with the clip's head centre (the scale change, at most 10 %, is left to the margin)."""
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        dx = 20 * np.sin(2 * np.pi * t)
        dy = 10 * np.cos(2 * np.pi * t) - 10
        out.append(np.asarray(first_box, float) + [dx, dy, dx, dy])
    return out


def test_a_reused_face_is_moved_onto_the_new_box_and_never_raw():
    n, w, h = 5, 480, 320
    frames = list(moving_faces(n, width=w, height=h, size=180))
    _, rep_full, boxes_full = _run(Options(seed=1, privacy="off", frame_log=True), frames, reuse_from=n)
    outs, rep, boxes = _run(Options(seed=1, privacy="off", frame_log=True), frames, reuse_from=1)
    assert rep_full["reused_face_frames"] == 0
    # frame 1 reuses frame 0's face; frame 2 goes the full way (one behind: one reuse in a row); and so on
    assert rep["reused_face_frames"] >= 2
    truth = _true_boxes(n, w, h, boxes_full[0][0])
    for i in range(n):
        assert _raw_share(outs[i], frames[i], truth[i]) < 0.02, i
        for box in boxes[i]:
            assert _raw_share(outs[i], frames[i], box) < 0.02, i
    # the reused frame is not just a mosaic: the moved face is pasted over the middle of the box
    x0, y0, x1, y1 = (int(v) for v in truth[1])
    middle = outs[1][y0 + (y1 - y0) // 3:y1 - (y1 - y0) // 3, x0 + (x1 - x0) // 3:x1 - (x1 - x0) // 3]
    assert middle.std() > 4.0


def test_an_obfuscated_track_is_never_reused():
    # sigma 0 and a restorer that changes nothing: the guard cannot clear the face, it is obfuscated
    frames = list(moving_faces(3, width=480, height=320, size=180))
    outs, rep, boxes = _run(Options(seed=1, scale=0.0, restorer="none", privacy="balanced", frame_log=True),
                            frames, reuse_from=1)
    assert rep["reused_face_frames"] == 0
    assert rep["fallback_face_frames"] == 3
    for i in range(3):
        for box in boxes[i]:
            assert _raw_share(outs[i], frames[i], box) < 0.02, i


def test_behind_means_frames_already_wait():
    q = DropQueue(3)
    assert q.waiting == 0 and level_for(q.waiting, 2) == 0
    q.put("a")
    q.put("b")
    assert q.get(0.0) == "a"
    assert q.waiting == 1 and level_for(q.waiting, 2) > 0


def test_further_behind_reuses_longer_and_still_never_raw():
    n, w, h = 6, 480, 320
    frames = list(moving_faces(n, width=w, height=h, size=180))
    _, _, boxes_full = _run(Options(seed=1, privacy="off", frame_log=True), frames, reuse_from=n)
    outs, rep, boxes = _run(Options(seed=1, privacy="off", frame_log=True), frames, reuse_from=1,
                            max_reuse=MAX_REUSE)
    # one track: reused on frames 1, 2 then its stagger phase or the limit sends it the full way
    assert rep["reused_face_frames"] >= 3
    truth = _true_boxes(n, w, h, boxes_full[0][0])
    for i in range(n):
        assert _raw_share(outs[i], frames[i], truth[i]) < 0.02, i


def test_reuse_limit_grows_with_the_backlog():
    assert [reuse_limit(w) for w in range(6)] == [1, 1, 2, 3, 3, 3][:6]
    assert MAX_REUSE == 3


def test_full_renders_spread_over_frames():
    """Four tracks: each goes the full way at least every (limit + 1)-th frame, and the full renders
    spread out evenly over frames (three behind: one track per frame; one behind: two)."""
    for limit, per_frame in ((3, 1), (1, 2)):
        assert _full_renders(limit)[4:] == [per_frame] * 35


def _full_renders(limit: int) -> list:
    """Full renders per frame of four tracks whose faces may be reused up to `limit` in a row."""
    cache = ReuseCache(max_reuse=limit)
    box = np.array([10.0, 10.0, 60.0, 70.0])
    rgb, mask = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32)
    since_full = {t: 0 for t in range(1, 5)}
    fulls = []
    for frame in range(1, 40):
        full = 0
        for t in range(1, 5):
            if frame > 1 and cache.usable(t, box, frame):
                cache._last[t].reused += 1  # as paste_moved counts it
                since_full[t] += 1
                assert since_full[t] <= limit
            else:
                cache.keep(t, rgb, mask, Crop(0, 0, 4, 4), box)
                since_full[t] = 0
                full += 1
        fulls.append(full)
    return fulls


# ---------------------------------------------------------------------- the level from the backlog

def test_the_level_for_a_backlog_grows_as_it_fills_the_queue():
    # default queue (3): two frames can wait undropped; detecting ahead, three; a queue of 6: five
    assert [level_for(w, 2) for w in range(4)] == [0, 3, 4, 4]
    assert [level_for(w, 3) for w in range(4)] == [0, 2, 3, 4]
    assert [level_for(w, 5) for w in range(6)] == [0, 2, 3, 3, 4, 4]
    assert [level_for(w, 1) for w in range(3)] == [0, 4, 4]


def test_the_level_follows_the_backlog_up_at_once_and_down_slowly():
    c = DegradeControl(capacity=3)
    assert c.update(0) == 0
    assert c.update(1) == 2
    assert c.update(3) == 4 and c.update(9) == 4  # a full queue (and more): the last step
    levels = [c.update(0) for _ in range(3 * CALM_FRAMES)]
    # one level down after CALM_FRAMES calm frames, not straight back to 0
    assert levels[:CALM_FRAMES - 1] == [4] * (CALM_FRAMES - 1)
    assert levels[CALM_FRAMES - 1] == 3 and levels[2 * CALM_FRAMES - 1] == 2
    assert c.update(2) == 3  # behind again: up at once
    assert sum(c.frames_at) == 3 + 1 + 3 * CALM_FRAMES + 1
    capped = DegradeControl(max_level=1, capacity=3)
    assert [capped.update(w) for w in (0, 1, 3)] == [0, 1, 1]
    off = DegradeControl(max_level=0)
    assert off.update(3) == 0


def test_apply_sets_the_processors_reuse():
    class _Proc:  # the two hooks of FaceProcessor that DegradeControl sets
        reuse = ReuseCache()
        reuse_faces = False
    c, proc = DegradeControl(capacity=3), _Proc()
    c.update(2)
    c.apply(proc)
    assert proc.reuse_faces and proc.reuse.level == 3 and proc.reuse.waiting == 2
    assert proc.reuse.max_reuse == reuse_limit(3) == MAX_REUSE
    c = DegradeControl()
    c.update(0)
    c.apply(proc)
    assert proc.reuse_faces and proc.reuse.level == 0  # level 0: the processor asks route (new tracks paced)
    c = DegradeControl(max_level=0)  # degrading off
    c.update(3)
    c.apply(proc)
    assert not proc.reuse_faces


# ---------------------------------------------------------------------- still faces

def _reuse_run(level: int, limit: int, step: float, frames: int = 30) -> int:
    """Longest run of reuses of one track whose box moves `step` px a frame."""
    cache = ReuseCache(max_reuse=limit)
    cache.level = level
    rgb, mask = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32)
    longest = run = 0
    for f in range(frames):
        box = np.array([100.0 + step * f, 100.0, 200.0 + step * f, 220.0])
        if f > 0 and cache.usable(2, box, f):
            cache._last[2].reused += 1  # as paste_moved counts it
            run += 1
        else:
            cache.keep(2, rgb, mask, Crop(0, 0, 4, 4), box)
            run = 0
        longest = max(longest, run)
    return longest


def test_a_still_face_is_reused_longer_from_level_2_a_moving_one_is_not():
    assert _reuse_run(level=1, limit=1, step=0.0) == 1  # level 1: no still step
    assert _reuse_run(level=2, limit=2, step=0.0) == 4  # still: twice the limit
    assert _reuse_run(level=3, limit=3, step=0.5) == 6
    assert _reuse_run(level=3, limit=3, step=12.0) == 3  # 12 px a frame on a 100 px box: moving


# ---------------------------------------------------------------------- new tracks

def test_far_behind_new_tracks_are_obfuscated_outright_and_never_raw():
    """Level 4: no track is verified yet, so every face is obfuscated without landmarks, render or
    guard search (dlib never runs), and none is written raw."""
    n, w, h = 3, 480, 320
    frames = list(moving_faces(n, width=w, height=h, size=150, faces=2))
    outs, rep, boxes = _run(Options(seed=1, privacy="balanced", guard_per_frame=1, frame_log=True), frames,
                            reuse_from=0, max_reuse=MAX_REUSE, level=4)
    assert rep["statuses"] == [["fallback:degrade"] * 2] * n
    assert rep["new_obfuscated"] == 2 * n and rep["reused_face_frames"] == 0
    assert rep["privacy"]["dlib_chips"] == 0  # the searches paused
    for i in range(n):
        assert len(boxes[i]) == 2
        for box in boxes[i]:
            assert _raw_share(outs[i], frames[i], box) < 0.02, i


def test_behind_new_tracks_go_the_full_way_one_at_a_time():
    """Level 3: of two new (unverified) tracks one goes the full way (its guard search advances)
    and the other is obfuscated outright; then it is the other's turn. None raw."""
    n, w, h = 2, 480, 320
    frames = list(moving_faces(n, width=w, height=h, size=150, faces=2))
    outs, rep, boxes = _run(Options(seed=1, privacy="balanced", guard_per_frame=1, frame_log=True), frames,
                            reuse_from=0, max_reuse=MAX_REUSE, level=3)
    assert [len(s) for s in rep["statuses"]] == [2] * n
    assert rep["statuses"][0].count("fallback:degrade") == 1  # both new: one waits its turn
    assert all(s.count("fallback:degrade") <= 1 for s in rep["statuses"])  # never both
    assert rep["new_obfuscated"] >= 1
    assert rep["privacy"]["edgeface_chips"] > 0  # one track's search did advance
    for i in range(n):
        for box in boxes[i]:
            assert _raw_share(outs[i], frames[i], box) < 0.02, i


def test_at_level_3_a_new_track_searches_only_with_nothing_waiting():
    cache = ReuseCache(max_reuse=3)
    box = np.array([10.0, 10.0, 60.0, 70.0])
    cache.level = 0  # not behind: new tracks paced, one a frame; no face reused
    assert [cache.route(t, box, 4, status=None) for t in (1, 2)] == ["full", "obfuscate"]
    cache.keep(3, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32), Crop(0, 0, 4, 4), box)
    assert cache.route(3, box, 5, status="verified") == "full" and cache.reused == 0
    cache.new_obfuscated = 0
    cache.level, cache.waiting = 3, 1
    assert cache.route(1, box, 5, status=None) == "obfuscate"
    cache.waiting = 0
    assert [cache.route(t, box, 6, status=None) for t in (1, 2)] == ["full", "obfuscate"]
    assert cache.route(2, box, 7, status=None) == "full"  # the next frame: a turn again
    cache.level = 4
    assert cache.route(1, box, 8, status=None) == "obfuscate"
    assert cache.route(1, box, 8, status="verified") == "full"  # a verified track: nothing to reuse yet
    assert cache.new_obfuscated == 3
    cache.level = 2
    assert cache.route(1, box, 9, status=None) == "full"  # below level 3 new tracks go the full way
    # a track the guard gave up on is obfuscated by the guard: it does not take a new track's turn
    assert [cache.route(t, box, 10, status=s) for t, s in ((5, "obfuscated"), (1, "pending"))] == ["full", "full"]
    cache.level = 4
    assert cache.route(5, box, 11, status="obfuscated") == "obfuscate"  # its retry search waits too


# ---------------------------------------------------------------------- the detection thread

def _frames_for_detection(n: int) -> list:
    return [frame_of(rgb, i) for i, rgb in enumerate(moving_faces(n, width=480, height=320, size=150, faces=2))]


def _wait_until(cond, timeout: float = 30.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        done.wait(0.05)  # polling a condition, not a count after a fixed sleep
    return cond()


def test_the_detection_thread_finds_what_the_face_stage_would_and_keeps_order():
    p = _live_processor(Options(seed=1, privacy="off"))
    stop = threading.Event()
    q = DropQueue(8)
    det = LiveDetect(q, p.detector, p.detect_size, stop).start()
    try:
        frames = _frames_for_detection(3)
        q.put((frames[0], 0.0, 0.0))
        q.put(Gap(1.0))
        for f in frames[1:]:
            q.put((f, 0.0, 0.0))
        q.put(END)
        got = [det.get(30.0) for _ in range(5)]
        assert [type(g).__name__ for g in got] == ["tuple", "Gap", "tuple", "tuple", "_Marker"]
        assert [g[0].index for g in got if isinstance(g, tuple)] == [0, 1, 2]
        for f in frames:
            mine = detect_upright(p.detector, f.small, f.small_scale, f.rotation) if f.small is not None else None
            ahead = det.faces(f, None)
            assert mine is not None and len(ahead) == len(mine) == 2
            for a, b in zip(ahead, mine):
                assert np.allclose(a.box, b.box)
        assert det.frames == 3 and det.error is None
    finally:
        stop.set()
        det.join(5)
        p.close()


def test_only_one_frame_is_held_outside_the_drop_queue():
    """The oldest unprocessed frame is still the one dropped; `waiting` counts the held one."""
    p = _live_processor(Options(seed=1, privacy="off"))
    stop = threading.Event()
    dropped = []
    q = DropQueue(2, on_drop=lambda: dropped.append(1))
    det = LiveDetect(q, p.detector, p.detect_size, stop).start()
    try:
        frames = _frames_for_detection(4)
        q.put((frames[0], 0.0, 0.0))
        assert _wait_until(lambda: q.waiting == 0 and det.waiting == 1)  # detected, held for the face stage
        for f in frames[1:]:
            q.put((f, 0.0, 0.0))  # the queue holds 2: frame 1 (the oldest waiting) is dropped
        assert len(dropped) == 1 and det.waiting == 3
        order = [det.get(30.0)[0].index for _ in range(3)]
        assert order == [0, 2, 3]
    finally:
        stop.set()
        det.join(5)
        p.close()


def test_a_detection_that_fails_on_the_thread_hides_the_whole_frame():
    p = _live_processor(Options(seed=1, privacy="off", frame_log=True))
    stop = threading.Event()
    q = DropQueue(4)
    det = LiveDetect(q, p.detector, p.detect_size, stop).start()
    p.ahead = det
    try:
        frame = _frames_for_detection(1)[0]
        src = np.dstack(frame.planes).copy()
        frame.small = np.zeros((8, 8), np.uint8)  # a detector input the detector cannot read
        q.put((frame, 0.0, 0.0))
        item = det.get(30.0)
        p.process(item[0])
        assert p.report()["failed_frames"] == 1
        out = np.dstack(frame.planes)
        assert float((np.abs(out.astype(int) - src.astype(int)).max(-1) <= 1).mean()) < 0.02
    finally:
        stop.set()
        det.join(5)
        p.close()


def test_a_reused_face_drawn_without_its_surroundings_has_them_obfuscated_too():
    """A track the guard cleared only with its surroundings blurred or filled (guard_policy.STEPS): a
    frame that reuses its last face hides them as far as the blend stage does (the face's box grown by
    half each side: REUSE_SURROUNDINGS_GROW), not just the box a plain reuse obfuscates."""
    from ideud.stream.degrade import REUSE, REUSE_SURROUNDINGS_GROW

    rgb = np.ascontiguousarray(next(iter(moving_faces(1, width=480, height=320, size=180))))
    box = np.array([200.0, 110.0, 270.0, 190.0])
    bw, bh = box[2] - box[0], box[3] - box[1]
    band = np.s_[int(box[1] - 0.45 * bh):int(box[1] - 0.3 * bh), int(box[0] + 0.2 * bw):int(box[2] - 0.2 * bw)]
    face = np.full((int(bh), int(bw), 3), 200, np.uint8)
    assert REUSE_SURROUNDINGS_GROW >= 0.5  # (the band below lies within it, and past a plain reuse's 0.25)
    outs = {}
    for hide in (False, True):
        cache = ReuseCache()
        cache.keep(1, face, np.ones(face.shape[:2], np.float32), Crop(200, 110, 270, 190), box)
        fr = frame_of(rgb.copy(), 1)
        cache.paste_moved(fr, 1, box, "pixelate", 0, hide)
        outs[hide] = np.dstack(fr.planes)
    raw = (lambda out: float((np.abs(out[band].astype(int) - rgb[band].astype(int)).max(-1) <= 1).mean()))
    assert raw(outs[True]) < 0.05, "the surroundings were left raw"
    assert raw(outs[False]) > 0.5  # (a plain reuse leaves them)
    # the processor asks for the wider box exactly for tracks the guard draws without their surroundings,
    # and for a kept face that was checked without them though the track has moved on since
    frames = list(moving_faces(2, width=480, height=320, size=180))
    for kept_hid, mode, want in ((False, None, False), (False, "blur", True), (False, "fill", True), (True, None, True)):
        p = _live_processor(Options(seed=2, privacy="balanced"))
        asked = []
        try:
            p.process(frame_of(frames[0].copy(), 0))
            if kept_hid:
                assert p.reuse._last, "no face kept to reuse"
                for last in p.reuse._last.values():
                    last.hid_surroundings = True
            p.guard.surroundings = lambda tid, mode=mode: mode
            p.reuse.route = lambda *a: REUSE
            p.reuse.paste_moved = lambda *a: asked.append(a[-1])
            p.reuse_faces = True
            p.process(frame_of(frames[1].copy(), 1))
        finally:
            p.close()
        assert asked and all(g == want for g in asked), (kept_hid, mode, asked)
