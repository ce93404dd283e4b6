"""A track no escalation step clears with its own surroundings gets the mildest steps again with the
surroundings (hair, ears, outline, background around the face) filled flat, as an obfuscated box is
(stream/guard_policy.py `STEPS`, `blend.fill_surroundings`): the new face, its expression and pose
stay visible instead of a flat box, and the guard checks exactly what is drawn."""
from fractions import Fraction

import cv2
import numpy as np

from footage import portrait_mesh
from ideud.models import facemesh as fm
from ideud.stream import blend as bl
from ideud.stream import guard as gd
from ideud.stream.guard_policy import FILL_FROM, fills_surroundings
from ideud.stream.guard_views import surroundings_filled
from ideud.stream.types import Crop, Frame


def _frame(rgb: np.ndarray) -> Frame:
    return Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)],
                 pix_fmt="rgb", full_range=True, time=0.0)


def test_the_surroundings_are_filled_flat_and_the_face_oval_is_kept():
    head, lm = portrait_mesh(0, 220)
    pts = lm[:, :2]
    fr = _frame(head.copy())
    full = Crop(0, 0, head.shape[1], head.shape[0])
    bl.fill_surroundings(fr, full, pts)
    out = np.dstack(fr.planes)
    box, _ = bl.surroundings(full, pts, head.shape[1], head.shape[0])
    inbox = np.zeros(head.shape[:2], bool)
    inbox[box.y0:box.y1, box.x0:box.x1] = True
    face = fm.face_polygon_mask(head.shape, pts) > 0
    size = float(np.ptp(pts, 0).max())
    grown = cv2.dilate(face.astype(np.uint8), np.ones((int(0.1 * size),) * 2, np.uint8)) > 0
    shrunk = cv2.erode(face.astype(np.uint8), np.ones((int(0.1 * size),) * 2, np.uint8)) > 0
    flat = out[inbox & ~grown]
    assert flat.size and (flat == flat[0]).all(), "the surroundings are not one flat colour"
    assert np.array_equal(out[shrunk], head[shrunk]), "the face oval was filled"
    assert np.array_equal(out[~inbox], head[~inbox]), "pixels outside the box were written"
    # the box reaches over the hair above the face, and the ears and neck beside and below it
    assert box.y0 <= pts[:, 1].min() - 0.4 * np.ptp(pts[:, 1]) or box.y0 == 0
    assert box.x0 <= pts[:, 0].min() - 0.25 * np.ptp(pts[:, 0]) or box.x0 == 0
    # the guard's copy of a context is filled the same way (it checks what the blend stage draws)
    ctx = Crop(20, 10, head.shape[1] - 4, head.shape[0] - 6)
    got = surroundings_filled(head[ctx.y0:ctx.y1, ctx.x0:ctx.x1], ctx, full, pts)
    assert np.abs(got.astype(int) - out[ctx.y0:ctx.y1, ctx.x0:ctx.x1].astype(int)).max() <= 1


def test_only_the_last_steps_fill_and_they_repeat_the_mildest():
    assert [fills_surroundings(s) for s in range(len(gd.STEPS) + 1)] == \
        [False] * FILL_FROM + [True] * (len(gd.STEPS) - FILL_FROM) + [False]  # len(STEPS): obfuscated
    assert gd.STEPS[FILL_FROM:] == gd.STEPS[:len(gd.STEPS) - FILL_FROM]


# held-out portraits (index, seed) that no step clears with their surroundings at the default
# settings but a filling step does (tools/bench/bench_face_prior.py --privacy balanced: 9 of 100)
FILLED = ((30, 30), (40, 40), (58, 58), (4, 4), (9, 9))


def test_a_face_no_step_clears_with_its_surroundings_is_drawn_without_them(tmp_path):
    from footage import mesh_of
    from ideud.eval.portraits import held_out_names, portraits_dir
    from ideud.models.recognizers import TwoRecognizers
    from ideud.stream.guard_policy import POLICIES
    from ideud.stream.pipeline import Options, deidentify
    from ideud.tools.frontdoor import summary

    names = held_out_names(portraits_dir())
    for index, seed in FILLED:
        src = portraits_dir() / names[index]
        rep = deidentify(str(src), str(tmp_path / f"{index}.png"), Options(seed=seed, force=True))
        pv = rep["tracks"][0]["privacy"]
        if pv["surroundings_filled"]:
            break
    else:
        raise AssertionError("none of the portraits was drawn without its surroundings")
    pol = POLICIES["balanced"]
    assert pv["status"] == "verified" and fills_surroundings(pv["step"])
    assert pv["candidates"] > FILL_FROM * pol.candidates - 1  # every step with the surroundings was tried first
    assert pv["distance"] >= pol.tau + pol.margin and pv["edgeface"] <= pol.edge_max - pol.edge_margin
    assert rep["fallback_face_frames"] == 0 and rep["privacy"]["tracks_surroundings_filled"] == 1
    assert "1 drawn without its surroundings" in summary(rep)
    rgb = cv2.imread(str(src))[:, :, ::-1].copy()
    out = cv2.imread(str(tmp_path / f"{index}.png"))[:, :, ::-1].copy()
    lm = mesh_of(rgb)[:, :2]
    # the hair above the face and the background beside it: one flat colour now
    lo, hi = lm.min(0), lm.max(0)
    w, h = hi - lo
    above = out[int(max(0, lo[1] - 0.4 * h)):int(lo[1] - 0.1 * h), int(lo[0] + 0.2 * w):int(hi[0] - 0.2 * w)]
    beside = out[int(lo[1] + 0.3 * h):int(hi[1] - 0.3 * h), int(max(0, lo[0] - 0.26 * w)):int(lo[0] - 0.14 * w)]
    for part in (above, beside):
        assert part.size and (np.abs(part.astype(int) - part.reshape(-1, 3)[0]).max() <= 1)
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


def test_an_occluder_found_past_the_face_oval_keeps_its_pixels_and_small_faces_are_not_filled():
    from ideud.stream.guard_policy import FILL_MIN_PX, search_end
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
    assert search_end(FILL_MIN_PX) == len(gd.STEPS) and search_end(FILL_MIN_PX - 1) == FILL_FROM
