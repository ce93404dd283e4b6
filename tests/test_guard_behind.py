"""A rendered face with a hand or a microphone in front, measured against the person behind it
(stream/guard_occluded_refs.py: `shared_region`, `references`, `behind_level`; stream/guard.py's
re-check once the occluder has gone). Constructed records where the case needs one; the portrait is real."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from footage import portrait_mesh
from ideud.models import facemesh as fm
from ideud.stream import guard as gd
from ideud.stream.guard_occluded_refs import BEHIND_MIN_LEVEL, behind_level, note_behind, references, shared_region
from ideud.stream.guard_policy import BLUR_FROM, STEPS, _Track
from ideud.stream.types import Crop


def _hand_over_mouth(shape, lm) -> np.ndarray:
    """uint8 keep (255: the occluder) of an ellipse over the mouth, as the occlusion stage hands it."""
    size = float(np.ptp(lm, 0).max())
    cx, cy = lm[fm.LIPS].mean(0)
    keep = np.zeros(shape, np.uint8)
    cv2.ellipse(keep, (int(cx), int(cy)), (int(0.25 * size), int(0.15 * size)), 0, 0, 360, 255, -1)
    return keep


def test_what_is_painted_in_is_the_stage_s_occluder_and_the_cut_s_margin_next_to_it_never_the_eyes():
    head, lm = portrait_mesh(0, 220)
    lm = lm[:, :2]
    h, w = head.shape[:2]
    whole = Crop(0, 0, w, h)
    hand = _hand_over_mouth((h, w), lm)
    size = float(np.ptp(lm, 0).max())
    # what the render left original: a ring round the hand (its cut's margin) and a patch on the forehead
    # (no occluder there: the face misread as one, which must never be painted in)
    grown = cv2.dilate(hand, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.08 * size),) * 2))
    left = np.ones((h, w), np.float32)
    left[grown > 0] = 0.0
    top = int(lm[:, 1].min())
    left[top:top + int(0.06 * size), int(lm[:, 0].mean()) - 10:int(lm[:, 0].mean()) + 10] = 0.0
    masked = [None]  # one kept reference, taken with nothing in front
    region = shared_region((whole, left), (whole, hand), whole, lm, masked, 1)
    assert region is not None
    assert region[hand >= 128].mean() > 0.95  # the hand
    assert region[(grown > 0) & (hand < 128)].mean() > 0.5  # its cut's margin
    assert not region[top:top + int(0.06 * size)].any()  # never what is far from the hand
    eyes = np.zeros((h, w), np.uint8)
    for side in (fm.LEFT_EYE, fm.RIGHT_EYE):
        cv2.fillConvexPoly(eyes, cv2.convexHull(np.round(lm[side]).astype(np.int32)), 1)
    assert not region[eyes > 0].any()
    # fail closed: the plain references stand (None) where the stage found nothing in front, or where
    # every kept reference was taken behind an occluder (or they are out of step)
    assert shared_region((whole, left), None, whole, lm, masked, 1) is None
    assert shared_region((whole, left), (whole, hand), whole, lm, [(np.zeros(4), np.zeros(3))], 1) is None
    assert shared_region((whole, left), (whole, hand), whole, lm, [], 1) is None


def test_the_references_behind_an_occluder_are_the_clean_kept_ones_and_this_frame_s_person_painted_in():
    st = _Track(seed=1)
    st.refs, st.edge_refs = [np.full(4, 1.0), np.full(4, 2.0)], [np.full(3, 1.0), np.full(3, 2.0)]
    st.masked_refs = [None, (np.full(4, 7.0), np.full(3, 7.0))]  # the second taken behind a hand
    st.now = (np.full(4, 5.0), np.full(3, 5.0))
    d, e = references(st)
    assert np.array_equal(d, [st.refs[0], st.refs[1], st.now[0]]) and len(e) == 3
    st.now_behind = (np.full(4, 9.0), np.full(3, 9.0))
    d, e = references(st)  # the reference taken behind the hand and the plain person of this frame left out
    assert np.array_equal(d, [st.refs[0], st.now_behind[0]]) and np.array_equal(e, [st.edge_refs[0], st.now_behind[1]])
    d, _ = references(st, plain=True)  # what the mosaic is measured against: the person as they are
    assert np.array_equal(d, [st.refs[0], st.refs[1], st.now[0]])


def test_candidates_measured_behind_an_occluder_are_drawn_with_the_eye_band_redrawn():
    st = _Track(seed=1)
    assert [behind_level(st, lv) for _, lv in STEPS] == [lv for _, lv in STEPS]
    st.now_behind = (np.zeros(4), np.zeros(3))
    assert all(behind_level(st, lv) == max(lv, BEHIND_MIN_LEVEL) for _, lv in STEPS)
    assert BEHIND_MIN_LEVEL == 3  # restore_prior.GLASSES_BELOW_LEVEL: the prior keeps glasses below it
    g = gd.PrivacyGuard.__new__(gd.PrivacyGuard)
    g.sigma = 0.25
    levels = {g._candidate(st, step, 1)[1] for step in range(len(STEPS))}
    assert min(levels) == BEHIND_MIN_LEVEL


def test_a_face_checked_behind_an_occluder_is_checked_again_once_it_has_gone():
    g = gd.PrivacyGuard.__new__(gd.PrivacyGuard)
    g.policy = gd.POLICIES["balanced"]
    g.identity = SimpleNamespace(is_frozen=lambda tid: True)
    st = _Track(seed=1, status="verified")
    r = SimpleNamespace(yaw=0.0, pitch=0.0, landmarks=np.array([[0.0, 0.0, 0.0], [100.0, 100.0, 0.0]]))
    st.last_pose, st.last_size, st.frozen_seen, st.last_occluded = (0.0, 0.0), 100.0, True, 0.2
    rendered = SimpleNamespace(occluded=0.0)
    st.occluder = (Crop(0, 0, 4, 4), np.full((4, 4), 255, np.uint8))
    st.checked_behind = True
    assert not g._due(st, 1, r, rendered)  # the hand still there: nothing changed
    st.occluder = None
    assert g._due(st, 1, r, rendered)  # the hand gone: measured against the person as they are now
    st.checked_behind = False
    assert not g._due(st, 1, r, rendered)
    # drawn with its surroundings blurred (a step from BLUR_FROM on): an occluder coming or going is a
    # change the last check did not see (next to a kept occluder the blur takes its colour)
    st.step = BLUR_FROM
    assert not g._due(st, 1, r, rendered)
    st.occluder = (Crop(0, 0, 4, 4), np.full((4, 4), 255, np.uint8))
    assert g._due(st, 1, r, rendered)  # one came (a misread ear: multi_person strict seed 1, frame 54)
    st.checked_occluder = True
    assert not g._due(st, 1, r, rendered)
    st.occluder = None
    assert g._due(st, 1, r, rendered)  # ... and went
    st.step = 0
    assert not g._due(st, 1, r, rendered)  # surroundings as they are: the occluder's pixels are the frame's


def test_checks_behind_an_occluder_are_counted_and_a_dlib_distance_stands_only_within_one_kind():
    st = _Track(seed=1)
    assert note_behind(st) is False and st.checks_behind == 0  # plain, after plain
    st.now_behind = (np.zeros(4), np.zeros(3))
    assert note_behind(st) is True and st.checked_behind and st.checks_behind == 1
    st.now_behind = None
    assert note_behind(st) is True and not st.checked_behind  # plain after behind: not the same references
    assert note_behind(st) is False and st.checks_behind == 1


def test_a_choice_carries_the_level_it_was_drawn_at_to_another_segment_or_a_returning_track():
    g = gd.PrivacyGuard.__new__(gd.PrivacyGuard)
    g.sigma, g._tracks = 0.25, {}
    g.identity = SimpleNamespace(set_noise=lambda tid, noise: None)
    behind = _Track(seed=1)
    behind.now_behind = (np.zeros(4), np.zeros(3))
    fill = next(i for i, (_, lv) in enumerate(STEPS) if i >= 12 and lv < BEHIND_MIN_LEVEL)
    g._apply(behind, 1, fill, 0)  # chosen behind a hand: drawn at level 3
    assert behind.level == BEHIND_MIN_LEVEL and behind.choice == (fill, 0, BEHIND_MIN_LEVEL)
    g.preset(7, 1, list(behind.choice))  # as the report and the batch stitch hand it on
    assert g._tracks[7].preset == behind.choice
    other = _Track(seed=1)  # nothing in front at its first frame: the same face all the same
    g._apply(other, 7, *g._tracks[7].preset)
    assert other.level == behind.level and other.choice == behind.choice
    g.preset(8, 1, [fill, 0])  # a choice without a level (an older report): the step's own
    g._apply(other, 8, *g._tracks[8].preset)
    assert other.level == STEPS[fill][1]
