"""An obfuscated face keeps the hand in front of it (issue 13, stream/obfuscate_keep.py): only the
occluder the occlusion stage found in that frame stays original, the rest of the box is filled, the
eyes never stay, and with the privacy guard on the result is checked by both recognizers."""
import cv2
import numpy as np
import pytest
from fractions import Fraction

from clips import read_frames, write_clip
from footage import hand_over_mouth, multi_person, near_face_occluders, portrait_mesh, psnr
from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream.detect import make_detector
from ideud.stream.obfuscate_keep import MAX_KEPT, MAX_KEPT_CHECKED, trusted
from ideud.stream.pipeline import Options, deidentify
from ideud.stream.types import Crop, Frame


def _frame(rgb: np.ndarray) -> Frame:
    planes = [np.ascontiguousarray(rgb[..., i]) for i in range(3)]
    return Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=planes, pix_fmt="rgb", full_range=True)


def test_obfuscate_leaves_kept_pixels_as_they_are_and_fills_the_rest_with_the_rest_s_colour():
    rgb = np.zeros((80, 80, 3), np.uint8)
    rgb[:] = (200, 40, 40)  # the face: red
    rgb[50:, 20:60] = (40, 40, 200)  # the hand: blue, over the lower half
    keep = np.zeros((80, 80), np.uint8)
    keep[50:, 20:60] = 255
    fr = _frame(rgb.copy())
    bl.obfuscate(fr, np.array([10, 10, 70, 70], float), keep=(Crop(0, 0, 80, 80), keep))
    out = np.dstack(fr.planes)
    assert np.array_equal(out[50:, 20:60], rgb[50:, 20:60]), "the kept pixels were written"
    filled = out[5:45, 5:75]
    assert (filled == (200, 40, 40)).all(), "the fill took the hand's colour in"
    # without a keep, the same box is one block of the mean of everything in it (as before)
    fr = _frame(rgb.copy())
    bl.obfuscate(fr, np.array([10, 10, 70, 70], float))
    assert len(np.unique(np.dstack(fr.planes)[5:75, 5:75].reshape(-1, 3), axis=0)) == 1


@pytest.fixture(scope="module")
def portrait_points():
    head, lm = portrait_mesh(0, 220)
    return head, lm[:, :2]


def test_the_eyes_are_never_kept_and_a_keep_over_most_of_the_face_is_refused(portrait_points):
    head, lm = portrait_points
    def below(frac):  # everything below that share of the face's height
        m = np.zeros(head.shape[:2], np.uint8)
        m[int(lm[:, 1].min() + frac * np.ptp(lm[:, 1])):] = 255
        return m

    kept, share = trusted(below(0.6), lm)  # about where a hand over the mouth reaches
    assert kept is not None and 0 < share <= MAX_KEPT
    for eye in (fm.LEFT_EYE, fm.RIGHT_EYE, fm.LEFT_BROW, fm.RIGHT_BROW):
        x, y = np.round(lm[eye]).astype(int).T
        assert (kept[y, x] == 0).all(), "an eye or brow point kept"
    assert trusted(below(0.25), lm)[0] is None, "a keep over the face below the forehead was trusted"
    # with the privacy guard checking what is kept: everything below the eyes, never the eyes
    kept, share = trusted(below(0.4), lm, MAX_KEPT_CHECKED)
    assert kept is not None and MAX_KEPT < share <= MAX_KEPT_CHECKED
    for eye in (fm.LEFT_EYE, fm.RIGHT_EYE):
        x, y = np.round(lm[eye]).astype(int).T
        assert (kept[y, x] == 0).all(), "an eye point kept"
    assert trusted(np.full(head.shape[:2], 255, np.uint8), lm)[0] is None, "a keep over the whole face was trusted"


def test_a_hand_over_an_obfuscated_face_keeps_its_pixels(tmp_path):
    # tests/footage.py's multi_person clip at the default privacy level: the near face that a hand
    # comes over is refused by the guard while the hand is there (the new mouth hidden, what stays
    # the person's reads closer), so it is obfuscated, and the guard checks each hand-kept result
    # against its references of the person (taken before the hand came). x264 input, as
    # tools/bench/bench_footage.py makes it: lossy, like footage
    frames = multi_person()
    src_path = write_clip(str(tmp_path / "mp.mp4"), [f.rgb for f in frames], audio=False)
    outs, reps = [], []
    for processes in (1, 0):  # the occluder found in a restore process, and in this one: the same output
        out_path = tmp_path / f"mp-out-{processes}.mkv"
        reps.append(deidentify(src_path, str(out_path), Options(codec="ffv1", seed=1, frame_log=True, audio=False,
                                                                restore_processes=processes)))
        outs.append(read_frames(str(out_path)))
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    src, out, rep = read_frames(src_path), outs[0], reps[0]
    hand_in, hand_out = [], []
    for i, face, occluder in near_face_occluders(frames):
        # the face itself is not raw: away from the hand most of it changed
        rest = face & ~(cv2.dilate(occluder.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
        changed = (np.abs(src[i][rest].astype(int) - out[i][rest].astype(int)).max(-1) > 4).mean()
        assert changed > 0.5, f"frame {i}: only {changed:.0%} of the face changed"
        hand_in.append(src[i][occluder])
        hand_out.append(out[i][occluder])
    kept = rep["occluder_kept"]
    print(f"occluder PSNR {psnr(np.concatenate(hand_in), np.concatenate(hand_out)):.1f} dB, {kept}")
    assert kept["face_frames"] >= 10, kept
    assert len(hand_in) >= 10
    assert psnr(np.concatenate(hand_in), np.concatenate(hand_out)) >= 40.0


def test_the_occluder_taken_is_this_frame_s_only():
    # the occlusion stage hands over what it cut in the frame just cut, once; a frame without a
    # hand (or one it could not compare) leaves nothing for the next obfuscation to keep
    from ideud.stream.occlusion import OcclusionStage
    from ideud.stream.render import crop_for, render

    frames = hand_over_mouth(20, enter=2, leave=10)  # up from frame 8, gone from frame 16
    det, mesh, stage = make_detector("centerface"), fm.FaceMesh(), OcclusionStage()
    found = []
    try:
        for f in frames:
            face = max(det.detect(f.rgb), key=lambda d: d.size)
            lm = mesh(f.rgb, fm.roi_from_keypoints(face.box, face.keypoints[0], face.keypoints[1]))
            assert lm is not None
            crop = crop_for(lm, lm[:, :2], f.rgb.shape[1], f.rgb.shape[0])
            original = np.ascontiguousarray(f.rgb[crop.y0:crop.y1, crop.x0:crop.x1])
            out = render(original, crop, lm, lm[:, :2], np.ones(len(lm), bool))
            stage.cut(1, original, lm, crop, out.mask)
            keep = stage.take_occluder(1)
            assert stage.take_occluder(1) is None, "taken twice"
            truth = f.occluder[crop.y0:crop.y1, crop.x0:crop.x1] if f.occluder is not None else None
            found.append((keep, truth))
        stage.cut(1, original, None, crop, out.mask)  # no landmarks: nothing compared, nothing kept
        assert stage.take_occluder(1) is None
    finally:
        mesh.close()
    print([None if k is None else round(float((k[t] == 255).mean()), 2) if t is not None and t.any()
           else int((k == 255).sum()) for k, t in found])
    assert all(k is not None and (k[t] == 255).mean() > 0.9 for k, t in found[8:10]), "the hand in place was not found"
    assert all(k is None for k, _ in found[17:]), "the hand gone, something still kept"
