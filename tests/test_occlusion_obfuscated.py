"""An obfuscated face keeps the hand in front of it (issue 13, stream/obfuscate_keep.py): only the
occluder the occlusion stage found in that frame stays original, the rest of the box is filled, the
eyes never stay, and with the privacy guard on the result is checked by both recognizers."""
import av
import cv2
import numpy as np
import pytest
from fractions import Fraction

from clips import read_frames, write_clip
from footage import hand_over_mouth, mesh_of, multi_person, near_face_occluders, portrait_mesh, psnr
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


def test_slivers_along_the_face_s_edge_are_not_kept_the_hand_over_the_mouth_is(portrait_points):
    # what the occlusion stage finds along the face's edge alone (a strip at the jaw line, the ear)
    # is the person's face, not something in front of it: an obfuscated face does not keep it
    from ideud.stream.occlusion import KEEP_THIN, _reaching_in

    head, lm = portrait_points
    size = float(np.ptp(lm, 0).max())
    occ = np.zeros(head.shape[:2], np.uint8)
    mouth = lm[fm.LIPS]
    cx, cy = np.round(mouth.mean(0)).astype(int)
    cv2.ellipse(occ, (int(cx), int(cy)), (int(0.25 * size), int(0.15 * size)), 0, 0, 360, 1, -1)  # a hand
    oval = np.round(lm[fm.FACE_OVAL]).astype(np.int32)
    strip = int(round(0.6 * KEEP_THIN * size))  # thinner than KEEP_THIN: a sliver
    cv2.polylines(occ, [oval[len(oval) // 2:]], False, 1, max(1, strip))  # along one side of the outline
    ear = oval[oval[:, 0].argmax()]
    cv2.circle(occ, (int(ear[0] + 0.08 * size), int(ear[1])), int(0.06 * size), 1, -1)  # past the cheek: an ear
    kept = _reaching_in(occ.astype(bool), lm)
    hand = np.zeros_like(occ)
    cv2.ellipse(hand, (int(cx), int(cy)), (int(0.25 * size), int(0.15 * size)), 0, 0, 360, 1, -1)
    assert kept[hand > 0].mean() > 0.95, "the hand over the mouth was not kept"
    away = (occ > 0) & ~(cv2.dilate(hand, np.ones((9, 9), np.uint8)) > 0)
    assert away.sum() > 0.02 * size * size and kept[away].mean() < 0.05, f"{kept[away].mean():.0%} of the slivers kept"
    assert not _reaching_in(np.zeros_like(occ, bool), lm).any()


def _first_shot(src_path: str, dst_path: str) -> str:
    """`src_path`'s packets up to its second keyframe (the IDR x264 puts at a scene cut), copied: its
    first shot, each frame decoding bit for bit as in the whole clip (no frame before an IDR refers to
    one after it). Encoded alone, the shot's frames would differ: x264 looks ahead."""
    with av.open(src_path) as i, av.open(dst_path, "w") as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is None or (p.is_keyframe and p.pts > 0):
                break
            p.stream = stream
            o.mux(p)
    return dst_path


def test_a_hand_over_a_face_keeps_its_pixels_rendered_or_obfuscated(tmp_path):
    # tests/footage.py's multi_person clip at the default privacy level: a hand comes over the near
    # face's mouth (frames 17-39). Since the forty-ninth session the guard measures that face against
    # the person behind the hand (stream/guard_occluded_refs.py), and it is rendered behind it at every
    # seed of 1-8 (before: obfuscated at most of them, refused against its own frame, which holds the
    # same hand). Rendered, the hand keeps its pixels through the render's cut and the surroundings'
    # blur or fill (their rim in its colour: stream/blend.py). Obfuscated (here forced by a fault
    # injected in the blend stage, frames 18-39), the mosaic keeps the hand, checked by the guard
    # against its references of the person. x264 input, as tools/bench/bench_footage.py makes it: lossy
    # Run on scene A alone (frames 0-39, up to the cut): the hand, the near face and every check here are
    # in it, and each run below gives the whole clip's frames 0-39, tracks and counts bit for bit (measured
    # for all seven), in half the time
    frames = multi_person()
    whole = write_clip(str(tmp_path / "mp-whole.mp4"), [f.rgb for f in frames], audio=False)
    src_path, frames = _first_shot(whole, str(tmp_path / "mp.mp4")), frames[:40]
    src = read_frames(src_path)
    assert len(src) == len(frames), "scene A's cut is no longer at frame 40"
    outs, reps = [], []
    for processes in (1, 0):  # the occluder found in a restore process, and in this one: the same output
        out_path = tmp_path / f"mp-out-{processes}.mkv"
        reps.append(deidentify(src_path, str(out_path), Options(codec="ffv1", seed=3, frame_log=True, audio=False,
                                                                restore_processes=processes)))
        outs.append(read_frames(str(out_path)))
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    near = next(t for t in reps[0]["tracks"] if t["first_frame"] == 0 and t["last_frame"] == 39
                and t["privacy"]["status"] == "verified")
    assert near["fallback_frames"] <= 3, near  # rendered behind the hand (the frame it arrives in may not be)
    assert near["privacy"]["checks_behind_occluder"] >= 1, near["privacy"]

    # the face oval (FaceMesh on the frame without the hand) away from the hand: there the face is drawn
    # (the box around it holds hair and background, which a face drawn with its surroundings keeps)
    covered, ovals = near_face_occluders(frames), {}  # made once: hand_numbers runs for every output
    for i, _, occluder in covered:
        lm = mesh_of(frames[i].clean, inside=np.asarray(frames[i].faces[0], float))
        ovals[i] = (fm.face_polygon_mask(src[i].shape, lm[:, :2]).astype(bool)
                    & ~(cv2.dilate(occluder.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0))

    def hand_numbers(out):
        hand_in, hand_out = [], []
        for i, _, occluder in covered:
            # the face itself is not raw: away from the hand most of it changed
            rest = ovals[i]
            changed = (np.abs(src[i][rest].astype(int) - out[i][rest].astype(int)).max(-1) > 4).mean()
            assert changed > 0.5, f"frame {i}: only {changed:.0%} of the face changed"
            hand_in.append(src[i][occluder])
            hand_out.append(out[i][occluder])
        hand_in, hand_out = np.concatenate(hand_in), np.concatenate(hand_out)
        kept = float((np.abs(hand_in.astype(int) - hand_out.astype(int)).max(-1) <= 4).mean())
        return psnr(hand_in, hand_out), kept

    # issue 13's 40 dB, on the median of seeds 3 and 2, 4, 5, 6 (forty-ninth session, rendered at all:
    # 53.9 / 49.0 / 57.3 / 53.5 / 48.9 dB in the hand's last frames; the frame the hand arrives in,
    # obfuscated at seeds 3 and 4 with the hand not yet found, 14.6 dB)
    psnrs = [hand_numbers(outs[0])[0]]
    for seed in (2, 4, 5, 6):
        out_path = tmp_path / f"mp-out-seed{seed}.mkv"
        deidentify(src_path, str(out_path), Options(codec="ffv1", seed=seed, audio=False))
        psnrs.append(hand_numbers(read_frames(str(out_path)))[0])
    print("occluder PSNR at seeds 3, 2, 4, 5, 6:", [round(v, 1) for v in psnrs])
    assert float(np.median(psnrs)) >= 40.0, psnrs
    # obfuscated: the hand is kept with a thin rim, not the margin a rendered face's cut adds (that
    # margin is the person's skin: between the fingers, along the hand): where the stage's outline
    # misses more than that, the hand is filled (94-98 % of its pixels kept; 100 % with the margin,
    # which showed 12 % of the face oval raw against 6.3 %), and that fill takes the colour of the kept
    # hand next to it (28.1 dB when the whole fill was the face's colour)
    out_path = tmp_path / "mp-out-obfuscated.mkv"
    rep = deidentify(src_path, str(out_path), Options(codec="ffv1", seed=3, audio=False,
                                                      inject_faults={"blend": set(range(18, 40))}))
    value, hand_kept = hand_numbers(read_frames(str(out_path)))
    print(f"obfuscated: occluder PSNR {value:.1f} dB, hand pixels kept {hand_kept:.1%}, {rep['occluder_kept']}")
    assert rep["occluder_kept"]["face_frames"] >= 10, rep["occluder_kept"]
    assert hand_kept >= 0.9  # (33.4 dB: frame 17, the hand arriving and not yet found, 14.6 dB over its 296 px)


def test_the_fill_next_to_a_kept_occluder_takes_its_colour_and_no_face_pixel():
    rng = np.random.default_rng(5)
    rgb = rng.integers(60, 200, (120, 120, 3)).astype(np.uint8)  # the face: noise, no pixel alike
    hand = np.zeros((120, 120), bool)
    hand[70:, 30:90] = True
    rgb[hand] = (30, 90, 220)
    keep = np.zeros((120, 120), np.uint8)
    keep[73:, 33:87] = 255  # the stage's outline, 3 px inside the hand's
    fr = _frame(rgb.copy())
    box = np.array([10, 10, 110, 110], float)
    bl.obfuscate(fr, box, keep=(Crop(0, 0, 120, 120), keep))
    out = np.dstack(fr.planes)
    reach = bl.OCCLUDER_REACH * 100  # 3 px here
    dist = cv2.distanceTransform((keep == 0).astype(np.uint8), cv2.DIST_L2, 3)
    rim = hand & (keep == 0) & (dist <= reach)  # (all of the rim but its two outer corners)
    assert rim.sum() >= 0.95 * (hand & (keep == 0)).sum()
    assert np.abs(out[rim].astype(int) - rgb[rim].astype(int)).max() <= 1, "the hand's rim was not its colour"
    # the fill's colours are the kept hand's, the filled face's mean, or between: never a face pixel's
    filled = out[keep == 0].astype(int)
    mean = np.round(rgb[keep == 0].reshape(-1, 3).mean(0)).astype(int)  # what blend fills with
    lo, hi = np.minimum(mean, (30, 90, 220)) - 1, np.maximum(mean, (30, 90, 220)) + 1
    assert ((filled >= lo) & (filled <= hi)).all(), "a filled pixel is neither the hand's colour, the fill's nor between"
    face = ~hand
    assert (out[face] != rgb[face]).any(-1).mean() > 0.999, "face pixels shown as they were"
    # two reaches away from the kept hand (the whole frame is in the grown box), the flat fill as before
    far = dist > 2 * reach + 1
    assert far.sum() > 5000
    assert (np.abs(out[far].astype(int) - mean) <= 1).all()


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
    # (0.80-0.82 of the hand: the stage's outline, worked out at 112 px, with a thin rim, not the margin)
    assert all(k is not None and (k[t] == 255).mean() > 0.75 for k, t in found[8:10]), "the hand in place was not found"
    assert all(k is None for k, _ in found[17:]), "the hand gone, something still kept"


def test_a_face_first_seen_behind_a_microphone_keeps_it_and_still_passes_both_recognizers(tmp_path):
    # tools/bench/bench_footage.py's microphone_from_start clip: the microphone is in front of the
    # mouth from the first frame, so every reference the guard takes of the person holds it. Those
    # references are compared with the microphone greyed (stream/guard_occluded_refs.py), so the
    # kept microphone is not what makes a face match. Each face-frame that kept it is measured here
    # against the person WITHOUT the microphone (the same clip drawn without it: a reference the
    # guard never had), worst view, by both recognizers at the guard's balanced limits
    from ideud.models.recognizers import TwoRecognizers
    from ideud.stream.guard_policy import POLICIES

    frames = hand_over_mouth(36, enter=-6, leave=24, portrait=10, kind="microphone")
    clean = hand_over_mouth(36, enter=10 ** 6, portrait=10)  # the same face and motion, nothing in front
    src_path = write_clip(str(tmp_path / "mic.mp4"), [f.rgb for f in frames], audio=False)
    out_path = tmp_path / "mic-out.mkv"
    rep = deidentify(src_path, str(out_path), Options(codec="ffv1", seed=1, audio=False, privacy="balanced"))
    src, out = read_frames(src_path), read_frames(str(out_path))
    det, mesh, two = make_detector("centerface"), fm.FaceMesh(), TwoRecognizers()
    edge_max, kept_frames, numbers = POLICIES["balanced"].edge_max, 0, []
    try:
        for i, face, occluder in near_face_occluders(frames):
            rest = face & ~(cv2.dilate(occluder.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
            changed = (np.abs(src[i][rest].astype(int) - out[i][rest].astype(int)).max(-1) > 4).mean()
            # not left raw (ffv1: a raw face changes by 0 %); a rendered one keeps the person's shading,
            # grain and the white beard's tone: 47-55 % of it moved over 4 levels where this face was rendered
            assert changed > 0.4, f"frame {i}: only {changed:.0%} of the face changed"
            if (np.abs(src[i][occluder].astype(int) - out[i][occluder].astype(int)).max(-1) <= 4).mean() < 0.9:
                continue  # refused: the whole box filled (kept: ~97 % of the microphone's pixels as they came)
            kept_frames += 1
            found = max(det.detect(clean[i].rgb), key=lambda d: d.size)
            lm = mesh(clean[i].rgb, fm.roi_from_keypoints(found.box, found.keypoints[0], found.keypoints[1]))
            assert lm is not None
            person = two.person(clean[i].rgb, lm[:, :2])
            d, s = two.measure(out[i], lm[:, :2], np.asarray([person[0]]), np.asarray([person[1]]))
            numbers.append((i, round(d, 3), round(s, 3)))
    finally:
        mesh.close()
    print(rep["occluder_kept"], numbers)
    assert rep["occluder_kept"]["face_frames"] >= 5 and kept_frames >= 5, (rep["occluder_kept"], kept_frames)
    for i, d, s in numbers:
        assert d >= 0.6 and s <= edge_max, f"frame {i}: the kept face matched the person (dlib {d}, EdgeFace {s})"


def test_a_reference_behind_an_occluder_is_greyed_where_the_face_keeps_it_and_stands_in_only_for_its_own_reference():
    from ideud.stream.guard_occluded_refs import kept_references, occluder_core

    # the stage's keep (the occluder and its thin rim) on a crop at (40, 30); the context crop starts
    # at (20, 10): greyed exactly where an obfuscated face keeps it (the same pixels on both sides)
    keep = np.zeros((60, 80), np.uint8)
    keep[20:50, 20:60] = 255
    core = occluder_core((Crop(40, 30, 120, 90), keep), Crop(20, 10, 160, 130))
    ys, xs = np.nonzero(core)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (40, 69, 40, 79) and core.sum() == 30 * 40
    assert occluder_core((Crop(40, 30, 120, 90), keep), Crop(200, 200, 260, 260)) is None  # elsewhere
    # each reference taken behind an occluder is replaced by its greyed one, the others stay
    plain, edge = [np.full(4, 1.0), np.full(4, 2.0)], [np.full(3, 1.0), np.full(3, 2.0)]
    greyed_one = (np.full(4, 9.0), np.full(3, 9.0))
    d, e = kept_references(plain, edge, [None, greyed_one])
    assert np.array_equal(d, [plain[0], greyed_one[0]]) and np.array_equal(e, [edge[0], greyed_one[1]])
    # out of step (an embedding failed): the references as they are, never fewer
    d, e = kept_references(plain, edge, [greyed_one])
    assert np.array_equal(d, plain) and np.array_equal(e, edge)
    assert kept_references([], [], []) is None


def test_the_light_offset_takes_numpys_median_of_the_quarter_that_changed_least():
    # the quarters are sliced at the face's centre and their medians taken by partition: the same
    # numbers as np.median over the coordinates (odd and even counts, ties, a centre on a pixel)
    from ideud.stream.occlusion import _light_offset

    def reference(plain, face):
        ys, xs = np.nonzero(face)
        cy, cx = ys.mean(), xs.mean()
        best = None
        for sel in ((ys < cy) & (xs < cx), (ys < cy) & (xs >= cx), (ys >= cy) & (xs < cx), (ys >= cy) & (xs >= cx)):
            if sel.sum() >= 16:
                m = np.median(plain[ys[sel], xs[sel]], axis=0)
                best = m if best is None or np.abs(m).sum() < np.abs(best).sum() else best
        return best

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:90, :80]
    for trial in range(60):
        plain = rng.normal(0, 6, (90, 80, 3)).astype(np.float32)
        if trial % 3 == 0:
            plain = np.round(plain)  # ties
        face = ((yy - 40 - trial % 9) / (25 + trial % 7)) ** 2 + ((xx - 40) / (20 + trial % 5)) ** 2 < 1
        if trial % 4 == 0:
            face[:, 40] = True  # a column through the centre: the centre on a whole pixel now and then
        got, want = _light_offset(plain, face), reference(plain, face)
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_small_holes_inside_a_kept_occluder_are_kept_too_open_notches_and_big_holes_not(portrait_points):
    # pixels of a hand that happen to look like the face behind them leave holes in what is kept;
    # filled, they came out as a seam across a finger. Enclosed and small: kept with the hand. A gap
    # between fingers (open to the face) and a ring's large inside stay out
    from ideud.stream.occlusion import MAX_HOLE, OcclusionStage, _holes_filled

    head, lm = portrait_points
    size = float(np.ptp(lm, 0).max())
    occ = np.zeros(head.shape[:2], np.uint8)
    mouth = np.round(lm[fm.LIPS].mean(0)).astype(int)
    half = int(0.3 * size)
    cv2.rectangle(occ, tuple(mouth - half), tuple(mouth + half), 1, -1)  # a broad hand over the mouth
    hole = (mouth[0] - 4, mouth[1] - 3, 8, 6)  # a few pixels inside it that read as face
    occ[hole[1]:hole[1] + hole[3], hole[0]:hole[0] + hole[2]] = 0
    notch = (mouth[0] + half - 12, mouth[1] - 2, 13, 4)  # a gap from the hand's edge inwards
    occ[notch[1]:notch[1] + notch[3], notch[0]:notch[0] + notch[2]] = 0
    filled = _holes_filled(occ > 0, size)
    assert filled[hole[1]:hole[1] + hole[3], hole[0]:hole[0] + hole[2]].all(), "an enclosed hole was not filled"
    assert not filled[notch[1]:notch[1] + notch[3], notch[0] + 2:notch[0] + notch[2] - 2].any(), "an open notch was filled"
    ring = np.zeros_like(occ)
    r_in = int(MAX_HOLE * size * 0.7)  # an inside wider than MAX_HOLE * size squared
    cv2.circle(ring, tuple(int(v) for v in mouth), r_in + 6, 1, -1)
    cv2.circle(ring, tuple(int(v) for v in mouth), r_in, 0, -1)
    assert not _holes_filled(ring > 0, size)[mouth[1], mouth[0]], "a large hole was filled"
    # the obfuscated face's keep (`take_occluder`) has the hole filled too
    stage = OcclusionStage()
    stage._keep_found(1, occ > 0, occ.shape, lm)
    keep = stage.take_occluder(1)
    assert (keep[hole[1]:hole[1] + hole[3], hole[0]:hole[0] + hole[2]] == 255).all()
