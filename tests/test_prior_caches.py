"""The prior restorer's per-track caches (stream/restore_prior.py) and MeshWarp's shortcuts
(models/face_bank.py): same output as without them, dropped when the track ends."""
from __future__ import annotations

import numpy as np
import pytest

from ideud.eval.portraits import held_out_names, portraits_dir
from ideud.models import face_bank as fbk
from ideud.models import piecewise_affine as pa
from ideud.stream.types import RestoreItem

PORTRAITS = portraits_dir()


@pytest.fixture(scope="module")
def face():
    """One held-out portrait at 120 px face width-ish, with its FaceMesh landmarks."""
    if PORTRAITS is None:
        pytest.skip("shared portraits not found")
    import cv2

    from test_face_prior import build_script

    name = held_out_names(PORTRAITS)[0]
    marks = build_script().portrait_landmarks([PORTRAITS / name])
    rgb = np.ascontiguousarray(cv2.imread(str(PORTRAITS / name))[:, :, ::-1])
    return rgb, marks[name]


def item(rgb, lm, track=1, seed=7):
    return RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                       track_id=track, seed=seed, level=0)


@pytest.mark.parametrize("glasses", [False, True])
def test_cached_frames_equal_fresh_ones_and_are_forgotten(face, glasses):
    from ideud.stream.restore_prior import PriorRestorer

    rgb, lm = face
    warm = PriorRestorer()
    outs = []
    for track in (1, 2):
        warm._wears_glasses[(track, 7)] = glasses  # whatever the portrait wears: both paths run
        outs.append([warm.restore([item(rgb, lm, track)])[0] for _ in range(2)])
    assert (1, 7, 0) in warm._canvases
    assert (1 in warm._glasses_frames) == glasses
    fresh = PriorRestorer()
    fresh._wears_glasses[(1, 7)] = glasses
    first = fresh.restore([item(rgb, lm, 1)])[0]
    for a, b in outs:  # a track's later frames come from the caches: bit-identical to a fresh start
        assert np.array_equal(a, first) and np.array_equal(b, first)
    warm.forget(1)
    assert not any(k[0] == 1 for k in warm._canvases) and 1 not in warm._glasses_frames
    assert (2, 7, 0) in warm._canvases and (2 in warm._glasses_frames) == glasses


def test_subclass_target_per_frame_is_not_cached(face):
    from ideud.stream.restore_prior import PriorRestorer

    class Fixed(PriorRestorer):
        def target(self, it):
            return np.full(self.prior.k, float(it.seed) * 0.1, np.float32)

    rgb, lm = face
    r = Fixed()
    a = r.restore([item(rgb, lm, 1, seed=3)])[0]
    b = r.restore([item(rgb, lm, 1, seed=3)])[0]
    assert not r._canvases and np.array_equal(a, b)


def test_forget_clears_what_a_subclass_target_left(face):
    """The guard's undo (a PriorRestorer whose target() is its own, fixing no target) forgets its
    track after every face: the relief gain and the glasses decision it fixed
    must go too, else the next face of that track id is drawn with the first one's (a warmed-up run
    and a cold one then differed in their inversion numbers)."""
    from ideud.stream.guard_inversion import _MirroredCode

    rgb, lm = face
    r = _MirroredCode()
    first = r.restore([item(rgb, lm, -7, seed=0)])[0]
    assert any(k[0] == -7 for k in r._relief)
    r.forget(-7)
    assert not any(k[0] == -7 for cache in (r._relief, r._canvases) for k in cache)
    assert not r._wears_glasses
    darker = np.clip(rgb.astype(np.float32) * 0.7, 0, 255).astype(np.uint8)  # another face under that id
    again = r.restore([item(darker, lm, -7, seed=0)])[0]
    r.forget(-7)
    fresh = _MirroredCode().restore([item(darker, lm, -7, seed=0)])[0]
    assert np.array_equal(again, fresh) and not np.array_equal(first, again)


def test_unique_rows_shortcut_matches():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (480, 2))
    assert np.array_equal(fbk._unique_rows(pts), pa.unique_rows(pts))
    dup = np.vstack([pts, pts[[5, 17]] + 1e-5, [[0.0, 0.0], [-0.0, 0.0]]])
    got = fbk._unique_rows(dup)
    assert np.array_equal(got, pa.unique_rows(dup)) and len(got) == len(dup) - 3


def test_mesh_warp_maps_equal_locating_every_triangle(face):
    """MeshWarp leaves triangles of ring and crop corners alone (their points follow the
    similarity directly): the maps are those of locating every triangle."""
    import cv2

    from ideud.models import face_prior as fp

    rgb, lm = face
    lm = np.asarray(lm, np.float64)[:, :2]
    h, w = rgb.shape[:2]
    for step in (1, 2, 3):
        warp = fbk.MeshWarp(lm, (h, w), step=step)
        nodes = np.vstack([warp.target, warp.extra])[warp.keep]
        gx, gy, q = fbk._grid(h, w, step)
        vid, weights = pa.locate_grid(nodes, pa.delaunay(nodes), gx, gy)
        assert (vid[:, 0] >= 0).sum() > warp.inside.sum()  # the outer triangles did hold points
        src = fp.canvas_landmarks()
        m, _ = cv2.estimateAffinePartial2D(warp.target.astype(np.float32), src.astype(np.float32))
        nodes_src = np.vstack([src, warp.extra @ m[:, :2].T + m[:, 2]])[warp.keep]
        every = q @ m[:, :2].T + m[:, 2]
        hit = vid[:, 0] >= 0
        every[hit] = np.einsum("nk,nkd->nd", weights[hit], nodes_src[vid[hit]])
        coarse = warp._compute_maps(src) if step == 1 else None
        if coarse is not None:
            ours = np.stack(coarse, -1).reshape(-1, 2)
            assert np.array_equal(ours, every.astype(np.float32))
        else:
            ours = warp.q @ m[:, :2].T + m[:, 2]
            ours[warp.inside] = np.einsum("nk,nkd->nd", warp.weights, nodes_src[warp.corners])
            np.testing.assert_allclose(ours, every, atol=1e-9)
