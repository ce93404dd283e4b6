"""A track no escalation step clears with its own surroundings gets the mildest steps again with the
surroundings (hair, ears, outline, background around the face) blurred, then filled flat, as an
obfuscated box is (stream/guard_policy.py `STEPS`, `blend.blur_surroundings`, `blend.fill_surroundings`):
the new face, its expression and pose stay visible instead of a flat box, and the guard checks exactly
what is drawn."""
from fractions import Fraction

import cv2
import numpy as np
import pytest

from footage import portrait_mesh
from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream import guard as gd
from ideud.stream.guard_policy import BLUR_FROM, FILL_FROM, surroundings_mode
from ideud.stream.guard_views import surroundings_redrawn
from ideud.stream.types import Crop, Frame


def _frame(rgb: np.ndarray) -> Frame:
    return Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)],
                 pix_fmt="rgb", full_range=True, time=0.0)


def _redrawn(draw) -> tuple:
    """A portrait with its surroundings drawn by `draw(frame, crop, points)`: (input, points, its crop, output,
    the surroundings' box, that box as a mask, the face oval, its size, the oval grown and shrunk by a tenth)."""
    head, lm = portrait_mesh(0, 220)
    pts = lm[:, :2]
    fr = _frame(head.copy())
    full = Crop(0, 0, head.shape[1], head.shape[0])
    draw(fr, full, pts)
    box, _ = bl.surroundings(full, pts, head.shape[1], head.shape[0])
    inbox = np.zeros(head.shape[:2], bool)
    inbox[box.y0:box.y1, box.x0:box.x1] = True
    face = fm.face_polygon_mask(head.shape, pts) > 0
    size = float(np.ptp(pts, 0).max())
    grown = cv2.dilate(face.astype(np.uint8), np.ones((int(0.1 * size),) * 2, np.uint8)) > 0
    shrunk = cv2.erode(face.astype(np.uint8), np.ones((int(0.1 * size),) * 2, np.uint8)) > 0
    return head, pts, full, np.dstack(fr.planes), box, inbox, face, size, grown, shrunk


def test_the_surroundings_are_filled_flat_and_the_face_oval_is_kept():
    head, pts, full, out, box, inbox, _, _, grown, shrunk = _redrawn(bl.fill_surroundings)
    flat = out[inbox & ~grown]
    assert flat.size and (flat == flat[0]).all(), "the surroundings are not one flat colour"
    assert np.array_equal(out[shrunk], head[shrunk]), "the face oval was filled"
    assert np.array_equal(out[~inbox], head[~inbox]), "pixels outside the box were written"
    # the box reaches over the hair above the face, and the ears and neck beside and below it
    assert box.y0 <= pts[:, 1].min() - 0.4 * np.ptp(pts[:, 1]) or box.y0 == 0
    assert box.x0 <= pts[:, 0].min() - 0.25 * np.ptp(pts[:, 0]) or box.x0 == 0
    # the guard's copy of a context is filled the same way (it checks what the blend stage draws)
    ctx = Crop(20, 10, head.shape[1] - 4, head.shape[0] - 6)
    got = surroundings_redrawn(head[ctx.y0:ctx.y1, ctx.x0:ctx.x1], ctx, full, pts, "fill")
    assert np.abs(got.astype(int) - out[ctx.y0:ctx.y1, ctx.x0:ctx.x1].astype(int)).max() <= 1


def test_the_surroundings_are_blurred_in_their_own_colours_and_the_face_oval_is_kept():
    head, pts, full, out, box, inbox, face, size, grown, shrunk = _redrawn(bl.blur_surroundings)
    inner = np.zeros(head.shape[:2], bool)  # the box less its fading rim
    m = int(np.ceil(bl.SURROUNDINGS_FADE * size))
    inner[box.y0 + m * (box.y0 > 0):box.y1 - m, box.x0 + m * (box.x0 > 0):box.x1 - m] = True
    part = inner & ~grown
    detail = (lambda img: np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)))
    assert part.sum() > 500
    assert detail(out)[part].mean() < 0.25 * detail(head)[part].mean(), "the surroundings keep their shapes"
    around = inbox & ~grown  # (the blur moves colour around within the surroundings, not in or out)
    assert np.abs(out[around].astype(float).mean(0) - head[around].astype(float).mean(0)).max() < 12, "their colours changed"
    assert np.array_equal(out[shrunk], head[shrunk]), "the face oval was blurred"
    assert np.array_equal(out[~inbox], head[~inbox]), "pixels outside the box were written"
    # no seam where the blur ends: next to the box's sides the change is small
    rim = inbox & ~cv2.erode(inbox.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(out[rim].astype(int) - head[rim].astype(int)).max() <= 40
    # the face's own pixels do not bleed into the blur: a face painted green leaves the surroundings as they were
    green = head.copy()
    green[face] = (0, 255, 0)
    fg = _frame(green)
    bl.blur_surroundings(fg, full, pts)
    assert np.abs(np.dstack(fg.planes)[part].astype(int) - out[part].astype(int)).max() <= 1
    # the guard's copy of a context is blurred the same way (it checks what the blend stage draws)
    # (a context holds the box: sides of the box on the frame's edge are on the context's edge too)
    ctx = Crop(max(0, box.x0 - 6) // 2 * 2, max(0, box.y0 - 4) // 2 * 2, min(head.shape[1], box.x1 + 3), min(head.shape[0], box.y1 + 5))
    got = surroundings_redrawn(head[ctx.y0:ctx.y1, ctx.x0:ctx.x1], ctx, full, pts, "blur")
    assert np.abs(got.astype(int) - out[ctx.y0:ctx.y1, ctx.x0:ctx.x1].astype(int)).max() <= 1


def test_only_the_last_steps_change_the_surroundings_and_they_repeat_the_mildest():
    modes = [surroundings_mode(s) for s in range(len(gd.STEPS) + 1)]
    assert modes == [None] * BLUR_FROM + ["blur"] * (FILL_FROM - BLUR_FROM) + ["fill"] * (len(gd.STEPS) - FILL_FROM) + [None]
    mildest = gd.STEPS[:FILL_FROM - BLUR_FROM]
    assert gd.STEPS[BLUR_FROM:FILL_FROM] == mildest and gd.STEPS[FILL_FROM:] == mildest


# held-out portraits (index, seed) that no step clears with their surroundings at the default settings
# (tools/bench/bench_face_prior.py --privacy balanced, twenty-seventh session: 6 of 100 blurred, 3 filled;
# since the search's EdgeFace margin is 0.06 (thirty-first) none at its own seed ends filled: 97 at seed 5 does)
DRAWN_WITHOUT = {"blur": ((40, 40), (58, 58), (3, 2), (30, 30)),  # a step that blurs them clears them
                 "fill": ((97, 5), (97, 97), (41, 41))}  # only a step that fills them flat does


@pytest.mark.parametrize("mode", ["blur", "fill"])
def test_a_face_no_step_clears_with_its_surroundings_is_drawn_without_them(tmp_path, mode):
    from footage import mesh_of
    from ideud.eval.portraits import held_out_names, portraits_dir
    from ideud.models.recognizers import TwoRecognizers
    from ideud.stream.guard_policy import POLICIES, step_candidates
    from ideud.stream.pipeline import Options, deidentify
    from ideud.tools.frontdoor import summary

    names = held_out_names(portraits_dir())
    for index, seed in DRAWN_WITHOUT[mode]:
        src = portraits_dir() / names[index]
        rep = deidentify(str(src), str(tmp_path / f"{index}.png"), Options(seed=seed, force=True))
        pv = rep["tracks"][0]["privacy"]
        if surroundings_mode(pv["step"]) == mode and pv["status"] == "verified":
            break
    else:
        raise AssertionError(f"none of the portraits was drawn with its surroundings ({mode})")
    pol = POLICIES["balanced"]
    before = BLUR_FROM if mode == "blur" else FILL_FROM
    assert pv["candidates"] >= sum(step_candidates(pol, s) for s in range(before))  # the steps before were tried first
    assert pv["distance"] >= pol.tau + pol.margin and pv["edgeface"] <= pol.edge_max - pol.edge_margin
    assert pv["surroundings_filled"] == (mode == "fill") and pv["surroundings_blurred"] == (mode == "blur")
    label = {"blur": "blurred", "fill": "filled"}[mode]
    assert rep["fallback_face_frames"] == 0 and rep["privacy"][f"tracks_surroundings_{label}"] == 1
    assert ("1 drawn with its surroundings blurred" if mode == "blur" else "1 drawn without its surroundings") in summary(rep)
    rgb = cv2.imread(str(src))[:, :, ::-1].copy()
    out = cv2.imread(str(tmp_path / f"{index}.png"))[:, :, ::-1].copy()
    lm = mesh_of(rgb)[:, :2]
    # the hair above the face and the background beside it: one flat colour, or blurred in their own colours
    lo, hi = lm.min(0), lm.max(0)
    w, h = hi - lo
    rows_above, cols_above = slice(int(max(0, lo[1] - 0.4 * h)), int(lo[1] - 0.1 * h)), slice(int(lo[0] + 0.2 * w), int(hi[0] - 0.2 * w))
    a = 0.2 if mode == "fill" else 0.14  # the part beside starts this far out (a wider new face's feathered edge)
    rows_beside, cols_beside = slice(int(lo[1] + 0.3 * h), int(hi[1] - 0.3 * h)), slice(int(max(0, lo[0] - (a + 0.12) * w)), int(lo[0] - a * w))
    detail = (lambda img: np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)))
    d_in, d_out = detail(rgb), detail(out)
    for rows, cols in ((rows_above, cols_above), (rows_beside, cols_beside)):
        part = out[rows, cols]
        assert part.size
        if mode == "fill":
            assert np.percentile(np.abs(part.astype(int) - np.median(part.reshape(-1, 3), 0)).max(-1), 80) <= 1
        else:
            assert d_out[rows, cols].mean() < 0.5 * d_in[rows, cols].mean() + 0.5, "the surroundings keep their shapes"
            assert np.abs(part.reshape(-1, 3).mean(0) - rgb[rows, cols].reshape(-1, 3).mean(0)).max() < 25
    # both recognizers, the output landmarked on its own, against the photo: among different people
    two = TwoRecognizers()
    olm = mesh_of(out)
    assert olm is not None, "no face in the output"
    d, s = two.measure(out, olm[:, :2], *[np.asarray([x]) for x in two.person(rgb, lm)])
    assert d >= pol.tau and s <= pol.edge_max


def test_the_fill_holds_in_a_subsampled_frame_at_its_edge():
    # a YUV 4:2:0 frame (as decoded video comes), the face at the frame's left and top edge, odd sizes:
    # the box is clipped and chroma-aligned, the surroundings flat in every plane, nothing else written
    head, lm = portrait_mesh(1, 220)
    h, w = 181, 203
    rgb = np.ascontiguousarray(np.pad(head, ((0, 60), (0, 60), (0, 0)), mode="edge")[70:70 + h, 60:60 + w])
    pts = lm[:, :2] - (60, 70)  # the face partly off the frame's top-left corner
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
    half = ((w + 1) // 2, (h + 1) // 2)
    planes = [np.ascontiguousarray(yuv[..., 0])] + [
        np.ascontiguousarray(cv2.resize(yuv[..., c], half, interpolation=cv2.INTER_AREA)) for c in (1, 2)]
    fr = Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=[p.copy() for p in planes], pix_fmt="yuv420p",
               full_range=False, time=0.0)
    full = Crop(0, 0, w, h)
    bl.fill_surroundings(fr, full, pts)
    box, _ = bl.surroundings(full, pts, w, h)
    assert box.x0 == 0 and box.y0 == 0 and box.x1 <= w and box.y1 <= h
    face = fm.face_polygon_mask((h, w), pts) > 0
    size = float(np.ptp(pts, 0).max())
    grown = cv2.dilate(face.astype(np.uint8), np.ones((int(0.12 * size),) * 2, np.uint8)) > 0
    inbox = np.zeros((h, w), bool)
    inbox[box.y0:box.y1, box.x0:box.x1] = True
    assert len(np.unique(fr.planes[0][inbox & ~grown])) == 1, "the surroundings' luma is not flat"
    assert np.array_equal(fr.planes[0][~inbox], planes[0][~inbox]), "luma outside the box was written"
    # chroma samples whose luma pixels are all in the flat part: flat too
    flat = (inbox & ~grown).astype(np.uint8)
    flat = cv2.erode(np.pad(flat, ((0, h % 2), (0, w % 2))), np.ones((3, 3), np.uint8))[::2, ::2] > 0
    for c in (1, 2):
        assert len(np.unique(fr.planes[c][flat])) == 1, f"chroma plane {c} is not flat in the surroundings"
    # blurred there too: every plane changed only inside the (chroma-aligned) box, the face oval kept
    fb = Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=[p.copy() for p in planes], pix_fmt="yuv420p",
               full_range=False, time=0.0)
    bl.blur_surroundings(fb, full, pts)
    assert np.array_equal(fb.planes[0][~inbox], planes[0][~inbox]) and not np.array_equal(fb.planes[0], planes[0])
    shrunk = cv2.erode(face.astype(np.uint8), np.ones((int(0.1 * size),) * 2, np.uint8)) > 0
    assert np.array_equal(fb.planes[0][shrunk], planes[0][shrunk])
    outside = ~np.pad(inbox, ((0, h % 2), (0, w % 2)))[::2, ::2]
    for c in (1, 2):
        assert np.array_equal(fb.planes[c][outside], planes[c][outside])


def test_an_occluder_found_past_the_face_oval_keeps_its_pixels():
    head, lm = portrait_mesh(0, 220)
    pts = lm[:, :2]
    full = Crop(0, 0, head.shape[1], head.shape[0])
    box, plain = bl.surroundings(full, pts, head.shape[1], head.shape[0])
    # a hand the occlusion stage found over the chin, reaching below the face oval
    found = np.zeros(head.shape[:2], np.uint8)
    chin = pts[fm.CHIN]
    found[int(chin[1]) - 20:min(head.shape[0], int(chin[1]) + 25), int(chin[0]) - 25:int(chin[0]) + 25] = 255
    _, keep = bl.surroundings(full, pts, head.shape[1], head.shape[0], occluder=(full, found))
    below = np.zeros(head.shape[:2], bool)
    below[box.y0:box.y1, box.x0:box.x1] = found[box.y0:box.y1, box.x0:box.x1] > 0
    below &= fm.face_polygon_mask(head.shape, pts) == 0
    assert below.any()
    k = np.zeros(head.shape[:2], np.float32)
    k[box.y0:box.y1, box.x0:box.x1] = keep
    assert (k[below] >= 1.0 - 1e-6).all(), "the occluder past the oval is filled"
    p = np.zeros(head.shape[:2], np.float32)
    p[box.y0:box.y1, box.x0:box.x1] = plain
    assert (p[below] < 0.5).any()  # (without it those pixels were filled)


def test_each_face_is_pasted_with_the_surroundings_its_own_frame_was_checked_with(tmp_path, monkeypatch):
    """A file run pastes a frame back after the next frames' reviews (it holds frames: the restorer, the
    look-back), and one of those may move the track on: to a step that keeps the surroundings, or to
    obfuscated (no step). The frame's face must keep the surroundings its own review passed it with
    (hard_turns, bench_footage.py: a face cleared with them blurred was pasted with the person's hair and
    outline because the next frame's re-check failed; the judge matched it, EdgeFace 0.23-0.28).
    Here each review says the track's surroundings are blurred after even frames and kept after odd ones."""
    from clips import moving_faces, write_clip
    from ideud.stream import processor
    from ideud.stream.pipeline import Options, deidentify

    src = write_clip(str(tmp_path / "in.mp4"), moving_faces(12, size=200), audio=False)
    now, reviewed, drawn = {"mode": None}, {}, []
    review, redraw_surroundings = gd.PrivacyGuard.review, bl.redraw_surroundings

    def reviewing(self, frame, entries):
        out = review(self, frame, entries)
        now["mode"] = reviewed[frame.index] = "blur" if frame.index % 2 == 0 else None
        return out

    def redraw(frame, crop, target, mode, occluder=None):
        drawn.append((frame.index, mode))
        return redraw_surroundings(frame, crop, target, mode, occluder)

    monkeypatch.setattr(gd.PrivacyGuard, "review", reviewing)
    monkeypatch.setattr(gd.PrivacyGuard, "surroundings", lambda self, track_id: now["mode"])
    monkeypatch.setattr(processor.bl, "redraw_surroundings", redraw)
    rep = deidentify(src, str(tmp_path / "out.mkv"), Options(codec="ffv1", seed=1, audio=False, force=True))
    assert rep["fallback_face_frames"] <= 2 and len(drawn) >= 10, "too few faces pasted to tell"
    assert [mode for _, mode in drawn] == [reviewed[i] for i, _ in drawn]


def test_the_fill_next_to_a_kept_occluder_takes_its_colour_and_never_the_face_oval_s():
    # the stage's outline of a hand ends at the face oval and runs a pixel or three inside the hand's
    # own: the hand's rim past it was filled flat (32 dB on multi_person's hand under a face drawn with
    # its surroundings filled). Next to the kept occluder the fill takes its colour, as an obfuscated
    # face's fill does; next to the face oval (its original pixels, which the new face covers) never
    head, lm = portrait_mesh(0, 220)
    pts = lm[:, :2]
    rgb = head.copy()
    chin = pts[fm.CHIN]
    y0, y1, x0, x1 = int(chin[1]) - 10, min(head.shape[0], int(chin[1]) + 30), int(chin[0]) - 25, int(chin[0]) + 25
    rgb[y0:y1, x0:x1] = (205, 140, 110)  # a hand over the chin, reaching below the oval
    found = np.zeros(head.shape[:2], np.uint8)
    found[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 255  # what the stage found of it: 2 px short of its edge
    full = Crop(0, 0, head.shape[1], head.shape[0])
    fr = _frame(rgb)
    bl.fill_surroundings(fr, full, pts, occluder=(full, found))
    out = np.dstack(fr.planes).astype(int)
    rim = np.zeros(head.shape[:2], bool)
    rim[y0:y1, x0:x1] = found[y0:y1, x0:x1] == 0
    box, keep = bl.surroundings(full, pts, head.shape[1], head.shape[0], occluder=(full, found))
    k = np.zeros(head.shape[:2], np.float32)
    k[box.y0:box.y1, box.x0:box.x1] = keep
    rim &= k < 0.5  # the hand's rim the fill covers
    assert rim.sum() > 20
    assert np.abs(out[rim] - (205, 140, 110)).max() <= 2, "the hand's rim is not in the hand's colour"
    # the fill next to the face oval (within twice the reach of its kept core), far from the hand: flat,
    # in the surroundings' own colour
    reach = 2 * bl.OCCLUDER_REACH * float(np.ptp(pts, 0).max()) + 2
    core = (k >= 0.5).astype(np.uint8)
    ring = (cv2.dilate(core, np.ones((2 * int(reach) + 1,) * 2, np.uint8)) > 0) & (k < 1e-6)
    ring &= cv2.dilate((found > 0).astype(np.uint8), np.ones((31, 31), np.uint8)) == 0
    assert ring.sum() > 100 and len(np.unique(out[ring], axis=0)) == 1, "face colours reached into the fill"


def test_the_blurred_surroundings_next_to_a_kept_occluder_take_its_colour_too(monkeypatch):
    # as the fill above, for the steps that blur the surroundings: the hand's rim past the stage's
    # outline was blurred into the background and the collar (multi_person's near face drawn at a
    # blur step behind the hand, seed 2: 34 dB over the hand; 41-67 dB a frame with this)
    head, lm = portrait_mesh(0, 220)
    pts = lm[:, :2]
    rgb = head.copy()
    chin = pts[fm.CHIN]
    y0, y1, x0, x1 = int(chin[1]) - 10, min(head.shape[0], int(chin[1]) + 30), int(chin[0]) - 25, int(chin[0]) + 25
    rgb[y0:y1, x0:x1] = (205, 140, 110)
    found = np.zeros(head.shape[:2], np.uint8)
    found[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 255
    full = Crop(0, 0, head.shape[1], head.shape[0])
    fr = _frame(rgb)
    bl.blur_surroundings(fr, full, pts, occluder=(full, found))
    out = np.dstack(fr.planes).astype(int)
    box, keep = bl.surroundings(full, pts, head.shape[1], head.shape[0], occluder=(full, found))
    k = np.zeros(head.shape[:2], np.float32)
    k[box.y0:box.y1, box.x0:box.x1] = keep
    rim = np.zeros(head.shape[:2], bool)
    rim[y0:y1, x0:x1] = (found[y0:y1, x0:x1] == 0) & (k[y0:y1, x0:x1] < 0.5)
    assert rim.sum() > 20
    assert np.abs(out[rim] - (205, 140, 110)).max() <= 2, "the hand's rim is not in the hand's colour"
    # away from the hand (past twice the reach) the surroundings are blurred as without the reach
    monkeypatch.setattr(bl, "OCCLUDER_REACH", 0.0)
    fr2 = _frame(rgb.copy())
    bl.blur_surroundings(fr2, full, pts, occluder=(full, found))
    far = (k < 1e-6) & (cv2.dilate((found > 0).astype(np.uint8), np.ones((31, 31), np.uint8)) == 0)
    far[:box.y0], far[box.y1:], far[:, :box.x0], far[:, box.x1:] = False, False, False, False
    assert far.sum() > 100 and np.array_equal(out[far], np.dstack(fr2.planes).astype(int)[far])
