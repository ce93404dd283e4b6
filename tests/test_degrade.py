"""Live degrade steps (stream/degrade.py): a face stage that is behind reuses a track's last
pasted face for a frame, never writes a raw face, and never reuses an obfuscated one.
Frames are handed to the processor directly: nothing here depends on the clock."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from clips import moving_faces
from ideud.stream.degrade import MAX_REUSE, ReuseCache, behind, reuse_limit
from ideud.stream.live_io import DropQueue
from ideud.stream.pipeline import FaceProcessor, Options
from ideud.stream.types import Crop, Frame


def frame_of(rgb: np.ndarray, index: int) -> Frame:
    return Frame(index=index, pts=index, time_base=Fraction(1, 25),
                 planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)], pix_fmt="rgb", full_range=True,
                 time=index / 25)


def _run(o: Options, frames: list, reuse_from: int, max_reuse: int = 1):
    """Process `frames`, the face stage 'behind' from frame `reuse_from` on (a face reused up to
    `max_reuse` frames in a row); outputs, report, boxes."""
    p = FaceProcessor(o)
    p.reuse.max_reuse = max_reuse
    outs, boxes = [], []
    try:
        for i, rgb in enumerate(frames):
            p.reuse_faces = i >= reuse_from
            fr = frame_of(rgb.copy(), i)
            p.process(fr)
            outs.append(np.dstack(fr.planes))
            boxes.append([f["box"] for f in p.frame_log[-1]["faces"]])
        return outs, p.report(), boxes
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
    assert q.waiting == 0 and not behind(q.waiting)
    q.put("a")
    q.put("b")
    assert q.get(0.0) == "a"
    assert q.waiting == 1 and behind(q.waiting)


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
