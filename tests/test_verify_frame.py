"""The frame's look at finds too small in the detector's input (stream/verify_frame.py).

Real components: the verifier with its confirmers (CenterFace, FaceMesh, BlazeFace, dlib), a held-out
portrait pasted small into a 1280x720 frame, the animals set's blob. The whole product path on the
blob's frames is in tests/test_false_faces_video.py."""
from __future__ import annotations

import numpy as np
import pytest

from false_face_sets import animals_at, dogs_jpg, hard_faces
from ideud.stream.detect import find_centerface_model, make_detector
from ideud.stream.types import Face, Frame
from ideud.stream.verify_frame import FRAME_JUDGED_MIN_PX, FrameJudge

pytestmark = pytest.mark.skipif(find_centerface_model() is None, reason="no CenterFace ONNX")

BLOB = (70.88, 58.9, 98.18, 92.04)  # frame 482 of the 1,000-frame animals set at 1280x720 (its kept find)


@pytest.fixture(scope="module")
def judge():
    return FrameJudge(make_detector("centerface"))


def stored(rgb: np.ndarray, box, k: int) -> tuple[Frame, np.ndarray]:
    """The upright picture as a phone stores it: turned back by k quarter turns, the display matrix
    saying 90 k degrees; `box` (upright pixels) in the stored frame's pixels."""
    h, w = rgb.shape[:2]
    x = np.array([box[0], box[2]], float)
    y = np.array([box[1], box[3]], float)
    sx, sy = {0: (x, y), 1: (h - y, x), 2: (w - x, h - y), 3: (y, w - x)}[k]  # upright -> stored
    planes = np.ascontiguousarray(np.rot90(rgb, -k))
    frame = Frame(index=0, pts=None, time_base=None, planes=[planes[..., c] for c in range(3)], pix_fmt="rgb",
                  rotation=90 * k)
    frame.small_scale = (1280 / 448, 720 / 252)
    return frame, np.array([sx.min(), sy.min(), sx.max(), sy.max()])


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_a_small_real_face_is_kept_and_the_blob_dropped_however_the_frame_is_stored(judge, k):
    """A 32 px held-out face (11 px in the detector's input at 1280x720) is a face on the frame's
    pixels, and the animals set's blob is not, whichever way the phone stored the picture: the look
    turns the region upright as the detector saw it."""
    rgb, boxes = hard_faces(1, (32,), ("plain",), 1280, 720)["plain"][0]
    frame, box = stored(rgb, boxes[0], k)
    face = Face(box=box, score=0.5)
    assert judge.due(face, frame.small_scale)
    assert not judge.is_false(frame, face)
    if dogs_jpg() is None:
        pytest.skip("no dogs.jpg")
    frame, box = stored(animals_at([482], width=1280, height=720)[482], BLOB, k)
    assert judge.is_false(frame, Face(box=box, score=0.32))


def test_only_weak_finds_small_in_the_input_and_big_enough_in_the_frame_are_looked_at(judge):
    """Nothing changes at 640x360 (a 12 px find in the input is 17 px in the frame), for strong
    finds, nor for finds the verifier judged in the input itself."""
    at_720p = (1280 / 448, 720 / 252)
    at_360p = (640 / 448, 360 / 252)
    assert judge.due(Face(box=np.array([0, 0, 30, 33.0]), score=0.3), at_720p)
    assert not judge.due(Face(box=np.array([0, 0, 30, 33.0]), score=0.9), at_720p)  # over keep_score
    assert not judge.due(Face(box=np.array([0, 0, 36, 40.0]), score=0.3), at_720p)  # 14 px in the input
    small_in_frame = FRAME_JUDGED_MIN_PX - 1
    assert not judge.due(Face(box=np.array([0, 0, small_in_frame, small_in_frame]), score=0.3), at_720p)
    assert not judge.due(Face(box=np.array([0, 0, 17.0, 17.0]), score=0.3), at_360p)


def test_a_confirmed_find_is_looked_at_once_while_it_stays(judge):
    """A small real face costs one look, then is remembered (as the verifier remembers its own)."""
    rgb, boxes = hard_faces(1, (32,), ("plain",), 1280, 720)["plain"][0]
    frame, box = stored(rgb, boxes[0], 0)
    look = FrameJudge(judge.verifier)
    for _ in range(3 * judge.verifier.policy.remember_calls):  # longer than the memory: it is renewed
        assert len(look.faces(frame, [Face(box=box, score=0.5)])) == 1
    assert look.asked == 1 and look.dropped == 0


def test_a_batch_runs_first_pass_records_what_the_frames_look_kept(monkeypatch):
    """Batch pass 1 records the detections that pass 2 replays (stream/batch/work.py): the blob the
    frame's look drops is dropped from the record too, so both passes see the same faces."""
    if dogs_jpg() is None:
        pytest.skip("no dogs.jpg")
    from false_face_sets import video_detector_inputs
    from ideud.stream import verify_frame
    from ideud.stream.batch.work import RecordingDetector
    from ideud.stream.options import Options
    from ideud.stream.pipeline import FaceProcessor

    seg = range(478, 490)  # as in tests/test_false_faces_video.py: the blob in frame 482 only
    by_index = animals_at(seg, width=1280, height=720)

    def recorded() -> tuple[int, int]:
        recorder = RecordingDetector(make_detector("centerface"))
        proc = FaceProcessor(Options(track_only=True), detector=recorder)
        try:
            for frame in video_detector_inputs([by_index[i] for i in seg], proc.detect_size, whole=True):
                proc.process(frame)
        finally:
            proc.close()
        return sum(len(c) for c in recorder.calls), proc.face_frames

    assert recorded() == (0, 0)
    monkeypatch.setattr(verify_frame, "FRAME_JUDGED_MIN_PX", float("inf"))
    found, face_frames = recorded()
    assert found >= 1 and face_frames >= 1
