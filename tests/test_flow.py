"""Optical-flow propagation of a face's last mesh (stream/flow.py) and the landmark stage's
retries (issue 13), with the real FaceMesh and CenterFace on held-out portraits."""
from fractions import Fraction

import cv2
import numpy as np
import pytest

from clips import background
from footage import _paste, portrait_head, turned_head
from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream import flow
from ideud.stream.detect import make_detector
from ideud.stream.landmarks import MAX_PROPAGATED, LandmarkStage, mirrored_fit
from ideud.stream.track import Tracker
from ideud.stream.types import Face, Frame


def frame_of(rgb: np.ndarray, index: int = 0) -> Frame:
    return Frame(index=index, pts=index, time_base=Fraction(1, 25),
                 planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)], pix_fmt="rgb", full_range=True,
                 time=index / 25)


@pytest.fixture(scope="module")
def mesh():
    m = fm.FaceMesh()
    yield m
    m.close()


@pytest.fixture(scope="module")
def detector():
    return make_detector("centerface")


def scene(head: np.ndarray, x: float, y: float, scale: float = 1.0, angle: float = 0.0, seed: int = 11,
          size: tuple = (480, 300)):
    img = background(*size, seed=seed)
    _paste(img, head, x, y, scale, angle)
    return img


def fit(mesh, detector, img):
    f = max(detector.detect(img), key=lambda f: f.size)
    return mesh(img, fm.roi_from_keypoints(f.box, f.keypoints[0], f.keypoints[1])), f


def error(a: np.ndarray, b: np.ndarray) -> float:
    """Median point distance, x the face's height."""
    return float(np.median(np.linalg.norm(a[:, :2] - b[:, :2], axis=1)) / np.ptp(b[:, 1]))


@pytest.mark.parametrize("side", [180, 440])  # a ~80 px face (crop at face resolution), a ~200 px one (shrunk)
def test_flow_moves_the_mesh_with_the_face(mesh, detector, side):
    head = portrait_head(2, side)
    k, canvas = side / 180, (int(480 * side / 180), int(300 * side / 180))
    a, b = scene(head, 220 * k, 150 * k, size=canvas), scene(head, (220 + 6) * k, (150 - 4) * k, 1.04, 3.0, size=canvas)
    lm_a, _ = fit(mesh, detector, a)
    lm_b, face_b = fit(mesh, detector, b)
    ref = flow.reference(frame_of(a, 0), lm_a)
    moved = flow.propagate(ref, frame_of(b, 1), face_b.box)
    assert moved is not None and not moved.smoothed
    assert error(lm_a, lm_b) > 0.05, "test setup: the face must really move"
    assert error(moved.landmarks, lm_b) < 0.02, error(moved.landmarks, lm_b)
    # a motion-blurred frame (a 9 px shake on a ~70 px face) is followed too (on the low-passed crops)
    n = int(9 * k) | 1
    blurred = cv2.filter2D(b, -1, np.full((1, n), 1.0 / n, np.float32))
    moved = flow.propagate(ref, frame_of(blurred, 1), face_b.box)
    assert moved is not None and error(moved.landmarks, lm_b) < 0.03


def test_flow_refuses_a_face_that_is_gone_or_replaced(mesh, detector):
    a = scene(portrait_head(2, 180), 220, 150)
    lm_a, _ = fit(mesh, detector, a)
    ref = flow.reference(frame_of(a, 0), lm_a)
    empty = background(480, 300, seed=11)
    assert flow.propagate(ref, frame_of(empty, 1), None) is None
    other = scene(portrait_head(6, 180), 220, 150)
    assert flow.propagate(ref, frame_of(other, 1), None) is None


def test_flow_stops_when_the_head_turns_out_of_the_picture_plane(mesh, detector):
    # a similarity cannot follow a head turn: the drift check ends the propagation early
    imgs = [scene(turned_head(5, 180, yaw), 220, 150) for yaw in range(0, 61, 5)]
    lm, f = fit(mesh, detector, imgs[0])
    ref, reached = flow.reference(frame_of(imgs[0], 0), lm), 0
    for i, img in enumerate(imgs[1:], 1):
        moved = flow.propagate(ref, frame_of(img, i), f.box)
        if moved is None:
            break
        reached = 5 * i
        ref = flow.reference(frame_of(img, i), moved.landmarks, moved.drift)
    assert 0 < reached <= 35, reached


def test_landmark_stage_propagates_through_a_blur_burst_for_a_few_frames_only(mesh):
    # a ~20 px face: FaceMesh (even on the sharpened window) fails under a 9 px shake; the face is
    # still "detected" (its true box: the detector is not under test here), so the last mesh is
    # carried by the flow, for at most MAX_PROPAGATED frames
    head = portrait_head(3, 60)
    tracker = Tracker()
    stage = LandmarkStage(mesh, tracker)
    shake = np.full((1, 9), 1 / 9.0, np.float32)
    found = []
    for i in range(16):
        clean = background(480, 300, seed=4)
        box = _paste(clean, head, 200 + 2 * i, 150 + i, 1.0, 0.0)
        img = cv2.filter2D(clean, -1, shake) if i >= 4 else clean
        ((track, face),) = tracker.update([Face(box, 0.9)], i)
        lm = stage.fit(frame_of(img, i), track, face)
        found.append("prop" if lm is not None and stage.propagated(track.id) else "mesh" if lm is not None else None)
        if found[-1] == "prop":
            truth = mesh(clean, fm.roi_from_landmarks(lm))
            assert truth is not None and error(lm, truth) < 0.06, (i, error(lm, truth))
    assert found[:4] == ["mesh"] * 4, found
    assert found[4:4 + MAX_PROPAGATED] == ["prop"] * MAX_PROPAGATED, found
    assert found[4 + MAX_PROPAGATED] is None, found  # still blurred: obfuscated, not propagated on
    assert stage.propagated_frames[track.id] == MAX_PROPAGATED


def test_the_report_counts_the_face_frames_rendered_from_a_propagated_mesh():
    # the blur burst above through the whole processor (its own CenterFace and FaceMesh)
    from ideud.stream.pipeline import FaceProcessor, Options

    head = portrait_head(3, 60)
    shake = np.full((1, 9), 1 / 9.0, np.float32)
    p = FaceProcessor(Options(seed=1, privacy="off", restorer="classic", frame_log=True))
    moved = []  # per frame: rendered from the landmark stage's propagated mesh
    try:
        for i in range(16):
            clean = background(480, 300, seed=4)
            _paste(clean, head, 200 + 2 * i, 150 + i, 1.0, 0.0)
            p.process(frame_of(cv2.filter2D(clean, -1, shake) if i >= 4 else clean, i))
            faces = p.frame_log[-1]["faces"]
            assert len(faces) == 1, (i, faces)
            moved.append(faces[0]["status"] == "deidentified" and p.landmarks.propagated(faces[0]["track"]))
        rep = p.report()
    finally:
        p.close()
    assert not any(moved[:4]) and 1 <= sum(moved) <= MAX_PROPAGATED, moved
    assert sum(t.get("propagated_frames", 0) for t in rep["tracks"]) == sum(moved)


def test_mirrored_window_gives_the_same_mesh_in_the_same_order(mesh, detector):
    img = scene(turned_head(2, 200, 25), 220, 150, angle=8.0)
    f = max(detector.detect(img), key=lambda f: f.size)
    roi = fm.roi_from_keypoints(f.box, f.keypoints[0], f.keypoints[1])
    affine = mesh.window(roi)
    window = bl.affine_rgb(frame_of(img), affine, mesh.window_size(affine, roi))
    direct, mirrored = mesh.on_window(window, affine, roi), mirrored_fit(mesh, window, affine, roi)
    assert direct is not None and mirrored is not None
    assert error(mirrored, direct) < 0.03
    # the subject's left eye (image right) stays on the image right
    assert mirrored[fm.LEFT_EYE_OUTER, 0] > mirrored[fm.RIGHT_EYE_OUTER, 0]
