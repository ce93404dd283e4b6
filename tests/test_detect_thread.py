"""Detection ahead on a thread (stream/detect_thread.py; on by default for one process on several
cores, `runner.DETECT_THREAD`): the thread runs the detector on exactly the frames the main thread
would, in the same order, the faces and frames are the main-thread path's, and a detection that
fails on the thread hides that frame whole."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from clips import moving_faces, read_planes, write_clip
from ideud.stream import runner
from ideud.stream.detect import make_detector
from ideud.stream.pipeline import FaceProcessor, Options, deidentify

FRAMES = 12
FAST = dict(seed=7, codec="ffv1", audio=False, privacy="off", restorer="classic", force=True)

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the thread is used on more than one core only")


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect_thread")
    return folder, write_clip(folder / "two.mp4", moving_faces(FRAMES, 480, 270, size=120, faces=2), audio=False)


def _same_video(a, b) -> None:
    for i, (fa, fb) in enumerate(zip(read_planes(a), read_planes(b))):
        for pa, pb in zip(fa, fb):
            assert np.array_equal(pa, pb), f"frame {i} differs"


def test_the_thread_gives_the_main_thread_output(two_faces, monkeypatch):
    folder, src = two_faces
    assert runner.DETECT_THREAD is True  # on by default
    monkeypatch.setenv("IDEUD_DETECT_THREAD", "1")
    o = Options(**FAST)
    proc = FaceProcessor(o, detector=Counting(make_detector("auto")))
    try:
        threaded = deidentify(src, str(folder / "thread.mkv"), o, processor=proc)
    finally:
        proc.close()
    # the detector ran on the thread, on the frames the cadence asked for and no other
    assert proc.detector.threads == {"ideud-detect"}
    assert proc.detector.calls == FRAMES - threaded["detect_skipped_frames"]
    # every frame the detector ran on (stream/cadence.py) was detected on the thread
    assert 0 < threaded["detect_skipped_frames"] < FRAMES
    assert threaded["timing"]["detect_thread"]["calls"] == FRAMES - threaded["detect_skipped_frames"]
    assert threaded["timing"]["detect"]["ms_per_frame"] >= 0 and threaded["processes"] == 1
    assert threaded["face_frames"] >= FRAMES and threaded["fallback_face_frames"] < threaded["face_frames"] // 2
    monkeypatch.setenv("IDEUD_DETECT_THREAD", "0")
    main = deidentify(src, str(folder / "main.mkv"), Options(**FAST))
    assert "detect_thread" not in main["timing"]
    assert main["face_frames"] == threaded["face_frames"]
    _same_video(folder / "main.mkv", folder / "thread.mkv")


class Counting:
    """The real detector, counting its calls and the threads they came from."""

    def __init__(self, inner):
        self.inner, self.calls, self.threads = inner, 0, set()
        self.name = inner.name

    def input_size(self, width, height):
        return self.inner.input_size(width, height)

    def detect(self, image_rgb, scale=1.0):
        self.calls += 1
        self.threads.add(threading.current_thread().name.split("_")[0])
        return self.inner.detect(image_rgb, scale)

    def forward(self, image_rgb):  # CenterFace's pass, which the thread runs ahead for held frames
        self.threads.add(threading.current_thread().name.split("_")[0])
        return self.inner.forward(image_rgb)

    def given(self, image_rgb, outputs):
        return self.inner.given(image_rgb, outputs)


class FailsOnCall:
    """The real detector, failing on its n-th call (0-based): a detection fault on the thread."""

    def __init__(self, inner, n: int):
        self.inner, self.n, self.calls = inner, n, 0
        self.name = inner.name

    def input_size(self, width, height):
        return self.inner.input_size(width, height)

    def detect(self, image_rgb, scale=1.0):
        self.calls += 1
        if self.calls - 1 == self.n:
            raise RuntimeError("detector failed")
        return self.inner.detect(image_rgb, scale)


@pytest.mark.parametrize("threaded", [True, False])
def test_a_detection_failing_on_the_thread_hides_its_frame(two_faces, monkeypatch, threaded):
    folder, src = two_faces
    monkeypatch.setattr(runner, "DETECT_THREAD", threaded)
    o = Options(**FAST, frame_log=True, detect_every=1)  # call 5 is frame 5's
    proc = FaceProcessor(o, detector=FailsOnCall(make_detector("auto"), 5))
    try:
        rep = deidentify(src, str(folder / f"fail_{threaded}.mkv"), o, processor=proc)
    finally:
        proc.close()
    assert ("detect_thread" in rep["timing"]) == threaded
    failed = [f for f in rep["frame_log"] if "failed" in f]
    assert [f["frame"] for f in failed] == [5] and failed[0]["failed"].startswith("detect")
    assert rep["failed_frames"] == 1 and rep["frames"] == FRAMES
    # the whole frame was hidden: no fine detail left (the noisy background alone has a Laplacian
    # variance in the hundreds, the mosaic ~10), while the frames around it keep theirs
    luma = [planes[0].astype(np.float64) for planes in read_planes(folder / f"fail_{threaded}.mkv")[4:7]]
    detail = [cv2.Laplacian(y, cv2.CV_64F).var() for y in luma]
    assert detail[1] < 40 < min(detail[0], detail[2]), detail
    if not threaded:
        _same_video(folder / "fail_True.mkv", folder / "fail_False.mkv")


class Recording:
    """Records the frames it is asked about (their index is the picture's value); frame 2's call
    waits until the test lets it go."""

    def __init__(self):
        self.order, self.entered, self.release = [], {}, threading.Event()

    def detect(self, image_rgb, scale=1.0):
        index = int(image_rgb[0, 0, 0])
        self.order.append(index)
        self.entered.setdefault(index, threading.Event()).set()
        if index == 2:
            assert self.release.wait(60)
        return []


def _frame(index: int):
    from ideud.stream.types import Frame
    return Frame(index=index, pts=index, time_base=None, planes=[], pix_fmt="yuv420p",
                 small=np.full((8, 8, 3), index, np.uint8))


def test_frames_off_the_cadence_wait_for_the_processor():
    from ideud.stream.cadence import DetectCadence
    from ideud.stream.detect_thread import DetectThread

    det = Recording()
    ahead = DetectThread(det, DetectCadence(2))
    frames = [_frame(i) for i in range(5)]
    try:
        for f in frames[:3]:
            ahead.submit(f)
        assert ahead.faces(frames[0], det) == []  # on the schedule: started when submitted
        assert det.order == [0]  # frame 1 may be skipped: neither it nor frame 2 has started
        ahead.forget(frames[1])  # skipped (a track is alive): frame 2 starts before anybody asks
        assert det.entered.setdefault(2, threading.Event()).wait(60)
        det.release.set()
        assert ahead.faces(frames[2], det) == []
        for f in frames[3:]:
            ahead.submit(f)
        assert ahead.faces(frames[3], det) == []  # due (no track alive): detected in order, then 4
        assert ahead.faces(frames[4], det) == []
        assert det.order == [0, 2, 3, 4]  # frame 1 never ran: the calls the main thread would make
    finally:
        ahead.close()


def test_a_held_frame_has_its_network_pass_while_it_waits():
    # frames 2 and 4 are on the schedule but wait behind frame 1 (which the processor may skip or
    # not): CenterFace's pass over them has no state, so it runs while they wait, and their
    # detections then use it; the faces are those of the same calls made one after another
    from ideud.stream.cadence import DetectCadence
    from ideud.stream.detect_thread import DetectThread
    from ideud.stream.types import Frame

    pictures = list(moving_faces(5, 448, 252, size=110, faces=2))
    frames = [Frame(index=i, pts=i, time_base=None, planes=[], pix_fmt="rgb24", small=p, small_scale=(1.0, 1.0))
              for i, p in enumerate(pictures)]
    for f, p in zip(frames, pictures):
        p[0, 0, 0] = f.index  # which frame a pass was over
    reference = make_detector("auto")
    expected = {i: reference.detect(pictures[i], (1.0, 1.0)) for i in (0, 2, 3, 4)}  # the main thread's calls
    det = make_detector("auto")
    passes = []  # over whole frames (the verifier's looks at crops go through `forward` too)
    forward = det.inner.forward
    det.inner.forward = lambda image: (image.shape == pictures[0].shape and passes.append(int(image[0, 0, 0]))
                                       or forward(image))
    ahead = DetectThread(det, DetectCadence(2))
    try:
        for f in frames:
            ahead.submit(f)
        found = {0: ahead.faces(frames[0], det)}
        for _ in range(600):
            if len(passes) >= 3:
                break
            threading.Event().wait(0.1)
        assert passes == [0, 2, 4]  # before anybody decided frame 1
        ahead.forget(frames[1])  # skipped
        found[2] = ahead.faces(frames[2], det)
        assert passes == [0, 2, 4]  # its pass was done already
        found[3] = ahead.faces(frames[3], det)  # due after all (off the schedule: no pass ahead)
        found[4] = ahead.faces(frames[4], det)
        assert passes == [0, 2, 4, 3]
    finally:
        ahead.close()
    for i, faces in found.items():
        assert len(faces) == len(expected[i]) == 2, i
        for a, b in zip(faces, expected[i]):
            assert np.array_equal(a.box, b.box) and a.score == b.score
