"""A face half hidden behind something is kept by the false-face verifier (stream/verify.py `_half_face`).

Real components: CenterFace, the verifier with its confirmers (FaceMesh, BlazeFace, dlib), held-out
portraits half covered as tools/bench/bench_false_faces.py's "half" set covers them (96 px faces, four
a frame: the frame that set holds). CenterFace boxes such a face with its cover; every other cue
misses it on the crop, and before `_half_face` the find was dropped and the face written raw. The
face-free side (no false face comes back) is measured by bench_false_faces.py; the product path on
face-free frames is in tests/test_false_faces_video.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from false_face_sets import detector_input, found, hard_faces
from ideud.stream.detect import find_centerface_model, make_detector
from ideud.stream.verify import VerifyingDetector
from ideud.stream.verify_policy import VerifyPolicy
from ideud.stream.verify_cues import mirrored_halves

pytestmark = pytest.mark.skipif(find_centerface_model() is None, reason="no CenterFace ONNX")


@pytest.fixture(scope="module")
def detectors():
    bare = make_detector("centerface", verify=False)
    return bare, VerifyingDetector(bare)


def test_mirrored_halves_are_symmetric_and_keep_the_crop_size():
    crop = np.random.default_rng(0).integers(0, 255, (192, 192, 3), np.uint8)
    left, right = mirrored_halves(crop)
    for view in (left, right):
        assert view.shape == crop.shape
        np.testing.assert_array_equal(view, view[:, ::-1])
    np.testing.assert_array_equal(left[:, :96], crop[:, :96])
    np.testing.assert_array_equal(right[:, 96:], crop[:, 96:])


@pytest.mark.parametrize("first, face, grey", [(52, 0, True), (28, 1, False)])
def test_a_half_covered_face_is_kept(detectors, first, face, grey):
    bare, verifier = detectors
    (img, gt), = hard_faces(4, sizes=(96,), variants=("half",), first=first)["half"]
    if grey:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)
    small, scale = detector_input(bare, img)
    on_face = [f for f in bare.detect(small, scale) if found([gt[face]], [f.box])[0]]
    assert on_face, "CenterFace finds the half-covered face"
    f = on_face[0]
    assert (f.box[2] - f.box[0]) / (f.box[3] - f.box[1]) < verifier.policy.half_face_aspect  # boxed with its cover
    assert verifier._judged_false(small, f, scale), "every cue on the crop misses it"
    assert not verifier.is_false(small, f, scale), "its mirrored half is a face to two cues"
    kept = verifier.detect(small, scale)
    assert found([gt[face]], [k.box for k in kept])[0]



def test_a_half_covered_face_boxed_less_narrow_is_kept_on_stricter_cues(detectors):
    """A build portrait (the wide tier's own evidence; the held-out ones are only measured) half
    covered, grey, at 48 px: CenterFace boxes it 0.65-0.8 wide for its height, every cue misses it
    on the crop, and a mirrored half is a face to a confirmer at its own threshold and a second cue
    (`half_face_wide_*`)."""
    bare, verifier = detectors
    (img, gt), = hard_faces(4, sizes=(48,), variants=("half",), first=36, split="build")["half"]
    img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)
    small, scale = detector_input(bare, img)
    on_face = [f for f in bare.detect(small, scale) if found([gt[0]], [f.box])[0]]
    assert on_face, "CenterFace finds the half-covered face"
    f = on_face[0]
    p = verifier.policy
    assert p.half_face_aspect <= (f.box[2] - f.box[0]) / (f.box[3] - f.box[1]) < p.half_face_wide_aspect
    assert verifier._judged_false(small, f, scale), "every cue on the crop misses it"
    assert not verifier.is_false(small, f, scale), "a mirrored half is a face to two cues"
    before = VerifyingDetector(bare, VerifyPolicy(half_face_wide_aspect=0.0))  # the narrow tier alone
    assert before.is_false(small, f, scale), "without the wide tier it was dropped and written raw"
