"""The guard's softened surroundings (stream/soften.py): the band around the new face is blurred,
the face itself and everything farther out are left alone, the guard checks exactly what the
frame gets, and a track cleared at a softened step is drawn so and reported so."""
from __future__ import annotations

import numpy as np

from clips import astronaut
from footage import mesh_of
from ideud.stream import guard as gd
from ideud.stream import soften as sf
from ideud.stream.pipeline import FaceProcessor, Options
from ideud.stream.types import Crop
from test_guard import frame_of, portrait


def _mesh(rgb: np.ndarray) -> np.ndarray:
    lm = mesh_of(rgb)
    assert lm is not None
    return lm[:, :2]


def _sharpness(gray: np.ndarray, mask: np.ndarray) -> float:
    g = gray.astype(np.float32)
    lap = np.abs(np.diff(g, axis=1))[:-1, :] + np.abs(np.diff(g, axis=0))[:, :-1]
    return float(lap[mask[:-1, :-1]].mean())


def test_band_is_blurred_face_and_far_pixels_untouched():
    img = astronaut()
    pts = _mesh(img)
    fr = frame_of(img)
    sf.soften_frame(fr, pts)
    out = np.dstack(fr.planes)
    h, w = img.shape[:2]
    oval, centre, fw = sf._geometry(pts)
    inner = sf._feathered((h, w), centre + (oval - centre) * 0.8, 0) > 0.5
    band = (sf._feathered((h, w), centre + (oval - centre) * (sf.BAND - 0.1), 0) > 0.5) & ~(
        sf._feathered((h, w), centre + (oval - centre) * (sf.INNER + 0.1), 0) > 0.5)
    region = sf.region(pts, w, h)
    outside = np.ones((h, w), bool)
    outside[region.y0:region.y1, region.x0:region.x1] = False
    assert np.array_equal(out[inner], img[inner])  # the (new) face stays as drawn
    assert np.array_equal(out[outside], img[outside])  # nothing past the band is written
    grey_in, grey_out = img.mean(2), out.mean(2)
    assert _sharpness(grey_out, band) < 0.6 * _sharpness(grey_in, band)  # hair and ears next to it are soft


def test_guard_context_gets_the_pixels_the_frame_gets():
    img = astronaut()
    pts = _mesh(img)
    h, w = img.shape[:2]
    fr = frame_of(img)
    sf.soften_frame(fr, pts)
    lo = pts.min(0) - 0.65 * np.ptp(pts, 0)
    hi = pts.max(0) + 0.65 * np.ptp(pts, 0)
    ctx = Crop(max(0, int(lo[0]) & ~1), max(0, int(lo[1]) & ~1), min(w, int(hi[0])), min(h, int(hi[1])))
    ctx_rgb = img[ctx.y0:ctx.y1, ctx.x0:ctx.x1]
    got = sf.soften_context(ctx_rgb, ctx, pts - ctx.offset, w, h)
    assert np.array_equal(got, np.dstack(fr.planes)[ctx.y0:ctx.y1, ctx.x0:ctx.x1])
    assert np.array_equal(ctx_rgb, img[ctx.y0:ctx.y1, ctx.x0:ctx.x1])  # the guard's own copy is not changed


def test_a_track_cleared_at_a_softened_step_is_drawn_softened_and_reported():
    img = portrait()
    p = FaceProcessor(Options(seed=1, privacy="balanced"))
    try:
        # the choice a batch segment would hand over: the first softened step; checked at the first frame
        p.guard.preset(1, 7, (gd.SOFTENED_FROM, 0))
        fr = frame_of(img)
        p.process(fr)
        rep = p.report()
    finally:
        p.close()
    t = rep["tracks"][0]
    assert t["id"] == 1 and t["privacy"]["status"] == "verified", t["privacy"]
    assert t["privacy"]["step"] >= gd.SOFTENED_FROM and t["privacy"]["softened"] is True
    assert rep["privacy"]["tracks_softened"] == 1 and rep["fallback_face_frames"] == 0
    out = np.dstack(fr.planes)
    pts = _mesh(img)
    h, w = img.shape[:2]
    oval, centre, _ = sf._geometry(pts)
    band = (sf._feathered((h, w), centre + (oval - centre) * (sf.BAND - 0.15), 0) > 0.5) & ~(
        sf._feathered((h, w), centre + (oval - centre) * 1.15, 0) > 0.5)
    assert _sharpness(out.mean(2), band) < 0.6 * _sharpness(img.mean(2), band)


def test_an_occluder_in_the_band_keeps_its_pixels():
    img = astronaut()
    pts = _mesh(img)
    h, w = img.shape[:2]
    oval, centre, _ = sf._geometry(pts)
    band = (sf._feathered((h, w), centre + (oval - centre) * (sf.BAND - 0.1), 0) > 0.5) & ~(
        sf._feathered((h, w), centre + (oval - centre) * (sf.INNER + 0.1), 0) > 0.5)
    # a "hand": the lower half of the band, as the occlusion stage hands it over (its crop, uint8)
    crop = Crop(0, int(centre[1]) & ~1, w, h)
    hand = np.zeros(crop.shape, np.uint8)
    hand[band[crop.y0:crop.y1, crop.x0:crop.x1]] = 255
    fr = frame_of(img)
    sf.soften_frame(fr, pts, (crop, hand))
    out = np.dstack(fr.planes)
    covered = np.zeros((h, w), bool)
    covered[crop.y0:crop.y1, crop.x0:crop.x1] = hand > 0
    assert covered.sum() > 1000 and np.array_equal(out[covered], img[covered])
    upper = band & ~covered
    upper[crop.y0:] = False
    assert _sharpness(out.mean(2), upper) < 0.6 * _sharpness(img.mean(2), upper)  # the rest is still softened
