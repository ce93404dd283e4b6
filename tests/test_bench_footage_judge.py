"""tools/bench/bench_footage.py's judge measures the face on the truth box, not a neighbour in its crop.
It crops three times the box around it; with the face itself obfuscated, the biggest face found there
was another person's rendered face (hard_turns seed 8, frame 39: judged against this person at dlib
0.576, a match that was no output of this face)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from footage import find_of, mesh_of
from ideud.eval.portraits import portraits_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "bench"))
import bench_footage as bf  # noqa: E402

needs_portraits = pytest.mark.skipif(portraits_dir() is None, reason="public-domain portraits not found")


@needs_portraits
def test_the_judge_measures_the_face_on_its_box_not_a_neighbour_in_the_crop():
    frame = bf.CLIPS["hard_turns"]()[39]
    src, box = frame.rgb, frame.faces[1]
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    out = src.copy()  # this face obfuscated (filled past its box, as the fallback does), its neighbours kept
    out[int(y0 - 0.2 * h):int(y1 + 0.2 * h), int(x0 - 0.2 * w):int(x1 + 0.2 * w)] = 128
    # the judge's crop around the box holds a neighbour's face (the biggest found there)
    crop, offset = bf.FrameMatcher.around(out, box)
    other = mesh_of(crop)
    assert other is not None
    centre = (other[:, :2].min(0) + other[:, :2].max(0)) / 2 + offset
    assert not (x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1)
    judge = bf.FrameMatcher()
    try:
        assert judge(src, out, box)[0] is None  # no face of this box in the output
        same = judge(src, src, box)[0]  # and the face itself is found and judged where it is
        assert same is not None and same[0] < 1e-6 and same[1] > 0.999
        for k, other_box in enumerate(frame.faces):  # each face judged as itself
            m = judge(src, src, other_box)[0]
            assert m is not None and m[0] < 1e-6, k
    finally:
        judge.close()


def test_a_frame_with_a_hand_over_the_face_also_comes_drawn_without_it_and_only_there():
    # the judge compares an output that keeps a hand with the person as a photo of them shows them
    # (the same frame without the hand), not with the frame as it is: the hand both hold is no part
    # of the person
    for frames in (bf.CLIPS["multi_person"](), bf.CLIPS["hand_from_start"]()):
        for i, f in enumerate(frames):
            if f.occluder is None:
                assert f.clean is None, i
                continue
            differs = (f.clean != f.rgb).any(-1)
            assert differs.any() and not (differs & ~f.occluder).any(), i  # the hand's pixels, no other


@needs_portraits
def test_where_centerface_finds_no_face_in_the_output_facemesh_looks_where_the_input_s_is():
    # a face drawn with its surroundings filled flat and a hand over it escaped CenterFace on
    # multi_person's output; FaceMesh found it, and the judge measures it at those points
    frame = bf.CLIPS["multi_person"]()[25]
    crop, offset = bf.FrameMatcher.around(frame.rgb, frame.faces[0])
    inner = np.asarray(frame.faces[0], float) - np.tile(offset, 2)
    judge = bf.FrameMatcher()
    try:
        own = mesh_of(crop, judge.det, judge.mesh, inside=inner)[:, :2]
        at_input = judge._mesh_at(crop, find_of(crop, judge.det, inside=inner))
        assert at_input is not None and np.abs(at_input - own).mean() < 1.0
        blank = np.full_like(crop, 128)  # nothing there: no face
        assert judge._mesh_at(blank, find_of(crop, judge.det, inside=inner)) is None
    finally:
        judge.close()
