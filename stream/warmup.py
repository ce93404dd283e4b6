"""What a stream's first faces would otherwise wait for, done before the stream starts.

Most models load lazily: their first call builds sessions, graphs and tables (the restore
process's first face ~0.3 s, where OpenCV's Lab tables and the face prior load; EdgeFace's
session; the false-face verifier's confirmers 2-4 s, at the first weak find). In a file run the
first frame just takes longer. A live stream drops the frames that arrive meanwhile (bench_live.py
at 640x360, 30 fps, 4 faces: 22 of the first second's 30 frames before this warm-up).

`warm_up(processor)` runs the face path once on the portrait the package ships
(models/data/demo_portrait.jpg, public domain, not a restorer donor) under a track id no stream
uses, and forgets that track everywhere it left something: no output and no later face depend on
it (the restorers' picks are per track, and the detector's memory of confirmed finds is cleared).
"""
from __future__ import annotations

import logging
from importlib import resources

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.stream.face_work import render_and_cut, warp_here
from ideud.stream.render import crop_for
from ideud.stream.types import Crop, RenderRequest

log = logging.getLogger("ideud")

WARMUP_TRACK = -9  # the track id of the warm-up face: trackers count from 1, the guard's undo uses -7


def shipped_portrait() -> np.ndarray:
    """The public-domain portrait the package ships (models/data/demo_portrait.jpg), RGB (225x275)."""
    data = resources.files("ideud.models").joinpath("data/demo_portrait.jpg").read_bytes()
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])


def warm_up(proc) -> None:
    """Load and run once every model of `proc`'s face path (a `FaceProcessor`); see the module
    docstring. Never raises: a part that fails only stays cold (it loads at its first face)."""
    warm = getattr(proc.detector, "warmup", None)
    if warm is not None:
        _quietly("the false-face verifier", warm)
    if proc.o.track_only:
        return
    rgb = shipped_portrait()
    det = proc.detector
    dropped = getattr(det, "dropped", None)
    faces = _quietly("the detector", lambda: det.detect(rgb)) or []
    if hasattr(det, "confirmed"):  # the verifier's memory and count: the stream's own from its first frame
        det.confirmed.clear()
        det.dropped = dropped
    if not faces:
        return
    f = max(faces, key=lambda f: f.size)
    lm = _quietly("FaceMesh", lambda: proc.mesh(rgb, fm.roi_from_keypoints(f.box, f.keypoints[0], f.keypoints[1])))
    if lm is None:
        return
    _quietly("the restorer", lambda: _restore_once(proc, rgb, lm))
    if proc.guard is not None:
        _quietly("the privacy guard", lambda: _recognize_once(proc.guard, rgb, lm))


def _restore_once(proc, rgb: np.ndarray, lm: np.ndarray) -> None:
    """Render, cut and restore the face where the pipeline does it, then forget its track. The
    restorer itself, not the restore worker: no stream runs yet, and the worker's numbers stay the
    stream's."""
    h, w = rgb.shape[:2]
    crop: Crop = crop_for(lm, lm[:, :2], w, h)
    req = RenderRequest(original=np.ascontiguousarray(rgb[crop.y0:crop.y1, crop.x0:crop.x1]), crop=crop,
                        landmarks=lm, target=lm[:, :2].copy(), visible=np.ones(len(lm), bool), measured=lm,
                        track_id=WARMUP_TRACK, seed=0)
    if proc.render_in_restorer:  # warped here, cut and restored in the restore process, as the stream's faces
        try:
            proc.restorer.restore([warp_here(req)])
        finally:
            proc.restorer.drop_track(WARMUP_TRACK)  # with the next call to that process
        return
    try:
        _, item, _ = render_and_cut(req, proc.occlusion)
        if item is not None:
            proc.restorer.restore([item])
    finally:
        proc.occlusion.drop(WARMUP_TRACK)
        proc.restorer.forget(WARMUP_TRACK)


def _recognize_once(guard, rgb: np.ndarray, lm: np.ndarray) -> None:
    """Both recognizers on every view, and the known inverses (each forgets its own undo); the
    recognizers' chip counts (the report's) stay the stream's."""
    two, pts = guard.two, lm[:, :2]
    counts = two.dlib_chips, two.edge_chips
    try:
        d, e = two.person(rgb, pts)
        two.measure(rgb, pts, np.asarray([d]), np.asarray([e]), edge_limit=1.0)
        for inverse in guard.inverses:
            inverse.undo(rgb, pts)
    finally:
        two.dlib_chips, two.edge_chips = counts


def _quietly(what: str, fn):
    try:
        return fn()
    except Exception as e:  # a model that cannot load fails again at its first face, and fails closed there
        log.debug("warm-up of %s failed: %s", what, e)
        return None
