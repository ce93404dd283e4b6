"""What the privacy guard looks at besides the rendered face itself: a candidate pasted into the
frame around the face, and the fallback mosaic of a face, verified like a rendered one."""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from fractions import Fraction
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models.recognizer import THRESHOLD as DLIB_THRESHOLD
from ideud.models.recognizers import TwoRecognizers, edge_views
from ideud.stream import blend as bl
from ideud.stream.guard_occluded_refs import clean_references, filled_in, greyed, in_context, shared_region
from ideud.stream.guard_policy import redrawn_small, same_output, surroundings_mode
from ideud.stream.render import crop_for, render, render_mask
from ideud.stream.restore_worker import RestoreWorker
from ideud.stream.types import Crop, Frame, RestoreItem
from ideud.stream.verify_cues import laplacian_contrast

CONTEXT = 0.65  # the checked region: the face box grown by this much each side (FaceMesh needs ~0.6)


def paste_into(ctx_rgb: np.ndarray, ctx: Crop, crop: Crop, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The context with one face crop blended in (RGB, float mask), as the blend stage would."""
    img = ctx_rgb.copy()
    x0, y0 = max(crop.x0, ctx.x0), max(crop.y0, ctx.y0)
    x1, y1 = min(crop.x1, ctx.x1), min(crop.y1, ctx.y1)
    if x1 <= x0 or y1 <= y0:
        return img
    a = img[y0 - ctx.y0:y1 - ctx.y0, x0 - ctx.x0:x1 - ctx.x0].astype(np.float32)
    b = rgb[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0].astype(np.float32)
    m = mask[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0, None]
    img[y0 - ctx.y0:y1 - ctx.y0, x0 - ctx.x0:x1 - ctx.x0] = np.clip(a + m * (b - a) + 0.5, 0, 255).astype(np.uint8)
    return img


def obfuscated(rgb: np.ndarray, box: np.ndarray, strength: int = 0, mode: str = "pixelate",
               keep: Optional[tuple[Crop, np.ndarray]] = None) -> np.ndarray:
    """A copy of an RGB image with the face in `box` obfuscated as `blend.obfuscate` does it."""
    fr = _rgb_frame(rgb)
    bl.obfuscate(fr, np.asarray(box, float), mode, strength=strength, keep=keep)
    return np.dstack(fr.planes)


def _rgb_frame(rgb: np.ndarray) -> Frame:
    """A copy of an RGB image as a frame the blend stage draws on (RGB planes)."""
    planes = [np.ascontiguousarray(rgb[..., i]) for i in range(3)]
    return Frame(index=0, pts=0, time_base=Fraction(1, 25), planes=planes, pix_fmt="rgb", full_range=True, time=0.0)


def kept_occluder_passes(two: TwoRecognizers, frame, job, keep: tuple[Crop, np.ndarray], strength: int, mode: str,
                         refs: Optional[tuple], edge_max: float) -> bool:
    """An obfuscated face that keeps its occluder (stream/obfuscate_keep.py), drawn as the blend
    stage will, is placed among different people by both recognizers, worst view, as the guard's
    own mosaic must be (`verified_mosaic`: dlib >= 0.6, EdgeFace <= edge_max). `refs`: the guard's
    (dlib, EdgeFace) references of the person, those taken behind an occluder with it greyed
    (stream/guard_occluded_refs.py); None: this frame's original face, its kept pixels greyed
    out, is the reference.
    No slack under 0.6: a reference that holds an occluder the occlusion stage did not find shares
    its pixels and pulls dlib closer, and such a face is filled whole rather than judged by a looser rule."""
    r = job.rendering
    ctx = context_crop(frame, r, r.target)
    ctx_rgb = bl.crop_rgb(frame, ctx)
    pts = np.asarray(r.landmarks)[:, :2] - ctx.offset
    kc, k = keep
    box = np.asarray(job.box, float) - np.r_[ctx.offset, ctx.offset]
    shifted = Crop(kc.x0 - ctx.x0, kc.y0 - ctx.y0, kc.x1 - ctx.x0, kc.y1 - ctx.y0)
    if refs is None:
        # this frame's person is the reference, with what is kept greyed out: a reference that
        # holds the very hand the output keeps would match it for the hand, not for the person
        d0, e0 = two.person(greyed(ctx_rgb, in_context(keep, ctx)), pts)
        refs = (np.asarray([d0]), np.asarray([e0]))
    d, s = two.measure(obfuscated(ctx_rgb, box, strength, mode, keep=(shifted, k)), pts, refs[0], refs[1],
                       edge_limit=edge_max, dlib_stop=DLIB_THRESHOLD)
    return d is not None and d >= DLIB_THRESHOLD and s <= edge_max


def verified_mosaic(two: TwoRecognizers, rgb: np.ndarray, pts: np.ndarray, dlib_refs, edge_refs,
                    edge_max: float, start: int = 0) -> tuple[int, tuple]:
    """The weakest obfuscation strength from `start` on whose mosaic of the face (points `pts` in
    `rgb`) both recognizers place among different people, worst view: (strength, (dlib, EdgeFace)).
    The last strength (a grey fill) is returned with its numbers whatever they are (nothing of
    the face is left to remove). dlib's own threshold (0.6) applies in every mode: a face-less
    fill sits only ~0.61-0.74 from anyone, so the strict 0.7 is out of reach for any fill."""
    box = np.r_[pts.min(0), pts.max(0)]
    for strength in range(min(start, bl.OBFUSCATION_LEVELS - 1), bl.OBFUSCATION_LEVELS):
        d, s = two.measure(obfuscated(rgb, box, strength), pts, dlib_refs, edge_refs, edge_limit=edge_max,
                           dlib_stop=DLIB_THRESHOLD)
        if d is not None and d >= DLIB_THRESHOLD and s <= edge_max:
            break
    return strength, (d, s)


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence, stable across runs)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
               .astype(np.uint64) @ np.array([1 << 31, 1], np.uint64)) & ((1 << 63) - 1)


def face_detail(frame, r) -> float:
    """How sharp the face is for its contrast: the mean |Laplacian| of its luma (the landmarks' box
    resized to 48 px) over their standard deviation; motion blur or defocus lowers it (~0.05 ms)."""
    lm = np.asarray(r.landmarks)[:, :2]
    y = frame.planes[0]
    x0, y0 = np.clip(np.floor(lm.min(0)).astype(int), 0, [y.shape[1] - 1, y.shape[0] - 1])
    x1, y1 = np.clip(np.ceil(lm.max(0)).astype(int), [x0 + 1, y0 + 1], [y.shape[1], y.shape[0]])
    return laplacian_contrast(cv2.resize(y[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA))


def context_crop(frame, r, target) -> Crop:
    """The checked region: the face (original and rendered points) grown by CONTEXT each side."""
    pts = np.vstack([r.landmarks[:, :2], target])
    lo, hi = pts.min(0), pts.max(0)
    grow = CONTEXT * (hi - lo)
    x0, y0 = (np.floor(lo - grow).astype(int) // 2) * 2
    x1, y1 = np.ceil(hi + grow).astype(int)
    return Crop(max(0, int(x0)), max(0, int(y0)), min(frame.width, int(x1)), min(frame.height, int(y1)))


def candidate_output(ctx_rgb: np.ndarray, ctx: Crop, rendered, item, face_rgb, surroundings: Optional[str] = None,
                     occluder: Optional[tuple[Crop, np.ndarray]] = None) -> tuple:
    """One candidate output pasted into the context as the blend stage would, and its points.
    `surroundings`: "blur" or "fill" them first (`blend.redraw_surroundings`, keeping this frame's
    `occluder`), as the blend stage draws a track at a step of that `surroundings_mode`."""
    if surroundings:
        ctx_rgb = surroundings_redrawn(ctx_rgb, ctx, rendered.crop, rendered.target, surroundings, occluder)
    img = paste_into(ctx_rgb, ctx, rendered.crop, bl.match_colour(face_rgb, item.image, rendered.mask), rendered.mask)
    return img, rendered.target + rendered.crop.offset - ctx.offset


def surroundings_redrawn(ctx_rgb: np.ndarray, ctx: Crop, crop: Crop, target: np.ndarray, mode: str,
                         occluder: Optional[tuple[Crop, np.ndarray]] = None) -> np.ndarray:
    """A copy of the context (RGB) with a face's surroundings drawn as `blend.redraw_surroundings`
    draws them in the frame (the same box: the context holds it, CONTEXT > blend.SURROUNDINGS)."""
    fr = _rgb_frame(ctx_rgb)
    shift = (lambda c: Crop(c.x0 - ctx.x0, c.y0 - ctx.y0, c.x1 - ctx.x0, c.y1 - ctx.y0))
    bl.redraw_surroundings(fr, shift(crop), target, mode, None if occluder is None else (shift(occluder[0]), occluder[1]))
    return np.dstack(fr.planes)


def seen_face(two: TwoRecognizers, mesh, img: np.ndarray, target: np.ndarray, tolerance: float,
              edge_refs) -> tuple[bool, float, Optional[np.ndarray]]:
    """The output face as anyone holding it finds it: FaceMesh on it (where it was drawn, within
    `tolerance` of its size, or it is no face), and EdgeFace on the chip, its mirror and the +5 % view
    aligned at the points FaceMesh found, not at the ones the face was drawn at -> (a face, that worst similarity to
    `edge_refs`, the points; no mesh: True, -1, None). A few px between the two alignments moved a 720p
    output from 0.18 to 0.26 (tools/bench/bench_speed_privacy.py: the judge landmarks the output itself)."""
    if mesh is None:
        return True, -1.0, None
    lm = _mesh_where_drawn(mesh, img, target, tolerance)
    if lm is None:
        return False, -1.0, None
    seen = np.ascontiguousarray(lm[:, :2], np.float64)
    return True, float(two.edge_similarity([(img, seen)], edge_refs, full="seen")[0]), seen


def seen_then_dlib(two: TwoRecognizers, mesh, policy, img: np.ndarray, pts: np.ndarray, s: float, limit: float,
                   dlib_refs, edge_refs) -> tuple[Optional[bool], float, Optional[float]]:
    """After EdgeFace at the drawn points gave `s`: the cheaper decisive checks in turn, each only while
    the face is still under `limit` (a search's, a re-check's): `seen_face`, then `dlib_both` ->
    (FaceMesh found the face (None: not asked), the worst EdgeFace similarity, dlib's distance or None)."""
    if s > limit:
        return None, s, None
    face, s_seen, seen = seen_face(two, mesh, img, pts, policy.face_tolerance, edge_refs)
    s = max(s, s_seen)
    if not face or s > limit:
        return face, s, None
    return face, s, dlib_both(two, img, pts, seen, dlib_refs, policy.dlib_floor)


def dlib_both(two: TwoRecognizers, img: np.ndarray, pts: np.ndarray, seen: Optional[np.ndarray], refs,
              stop_below: float) -> float:
    """dlib's worst distance over the views at the drawn points and the chip at the points FaceMesh
    found on the output (`seen_face`; not asked once the first is under `stop_below`)."""
    d = two.dlib_distance(img, pts, refs, stop_below=stop_below)
    return d if seen is None or d < stop_below else min(d, two.dlib_distance(img, seen, refs, full=False))


def looks_like_face(mesh, img: np.ndarray, target: np.ndarray, tolerance: float) -> bool:
    """FaceMesh finds a face where it was drawn, within `tolerance` of its size (no mesh: True)."""
    return mesh is None or _mesh_where_drawn(mesh, img, target, tolerance) is not None


def _mesh_where_drawn(mesh, img: np.ndarray, target: np.ndarray, tolerance: float) -> Optional[np.ndarray]:
    """FaceMesh's points on `img` around `target`, or None where it finds no face within `tolerance`
    of the face's size from where it was drawn."""
    lm = mesh(img, fm.roi_from_landmarks(np.c_[target, np.zeros(len(target))]))
    if lm is None:
        return None
    size = float(max(np.ptp(target[:, 0]), np.ptp(target[:, 1])))
    return lm if float(np.median(np.linalg.norm(lm[:, :2] - target, axis=1))) <= tolerance * size else None


def start_candidate(identity, restorer, frame, tid: int, r, level: int, seed: int, provisional: bool = False) -> tuple:
    """Render the track's face with its current noise and hand it to the restorer: on the restore
    worker's thread where there is one, so the next candidate is rendered meanwhile;
    `finish_candidate` collects it. The restorer sees the candidates in the order they were started.
    `provisional`: started ahead of need (stream/guard_ahead.py)."""
    target = identity.target(tid, r)
    crop = crop_for(r.landmarks, target, frame.width, frame.height)
    original = bl.crop_rgb(frame, crop)
    out = render(original, crop, r.landmarks, target, r.visible)
    item = RestoreItem(image=out.image, original=original, mask=out.mask, landmarks=out.target,
                       track_id=tid, seed=seed, level=level, provisional=provisional)
    return out, item, (restorer.submit([item]) if isinstance(restorer, RestoreWorker) else restorer.restore([item]))


def finish_candidate(started: tuple) -> Optional[tuple]:
    """(rendered, item, restored) of a started candidate, or None."""
    out, item, answer = started
    restored = answer.result()[0] if isinstance(answer, Future) else answer
    if len(restored) != 1:
        return None
    return out, item, restored[0]


def render_candidate(identity, restorer, frame, tid: int, r, level: int, seed: int) -> Optional[tuple]:
    """Render and restore the track's face with its current noise: (rendered, item, restored) or None."""
    return finish_candidate(start_candidate(identity, restorer, frame, tid, r, level, seed))


def occluder_keep(frame, r, rendered) -> Optional[tuple[Crop, np.ndarray]]:
    """What the occlusion stage left original in the pipeline's own render of this face, as a
    factor on the face mask in that render's crop: (crop, keep in [0, 1]); None when nothing was
    cut. The occluder (a hand, a microphone) sits in the frame, not in the face, so the factor
    carries over to any other render of the face in the same frame (`with_occluders`); the
    occlusion stage itself is not asked again (its state follows the frames as they come)."""
    if rendered is None or rendered.occluded <= 0.0:
        return None
    crop = rendered.crop
    full = render_mask(crop.shape, r.landmarks[:, :2] - crop.offset, rendered.target)
    keep = np.ones_like(full)
    sel = full > 1e-3
    keep[sel] = np.clip(rendered.mask[sel] / full[sel], 0.0, 1.0)
    return crop, keep


def with_occluders(cand: Optional[tuple], occluders: Optional[tuple[Crop, np.ndarray]],
                   max_share: float) -> Optional[tuple]:
    """A candidate (rendered, item, restored) with the frame's occluders cut out of its paste-back
    mask, as the pipeline's own render was; None where that leaves more than `max_share` of the
    face original (obfuscated instead, as the occlusion stage would)."""
    if cand is None or occluders is None:
        return cand
    rendered, item, restored = cand
    kc, keep = occluders
    c = rendered.crop
    x0, y0, x1, y1 = max(c.x0, kc.x0), max(c.y0, kc.y0), min(c.x1, kc.x1), min(c.y1, kc.y1)
    if x1 <= x0 or y1 <= y0:
        return cand
    mask = rendered.mask.copy()
    mask[y0 - c.y0:y1 - c.y0, x0 - c.x0:x1 - c.x0] *= keep[y0 - kc.y0:y1 - kc.y0, x0 - kc.x0:x1 - kc.x0]
    mask[mask < 1.0 / 255.0] = 0.0
    face = rendered.mask > 0.5
    share = float(1.0 - (mask[face] > 0.5).sum() / max(int(face.sum()), 1))
    if share > max_share:
        return None
    return dataclasses.replace(rendered, mask=mask.astype(np.float32), occluded=share), item, restored


def output_drifted(two: TwoRecognizers, frame, r, current: tuple, st, limit: float, tau: float,
                   dlib_floor: float = 0.0) -> bool:
    """Between full checks the rendered face can drift (Step II follows the face's small motion: a
    repeated frame gives the same output, a slowly turning one does not): on footage its EdgeFace chip
    moved to 0.77 of the checked one within two frames, and its similarity to the person from 0.16 to
    0.28, with no pose change over the re-check's bar. The person's own
    look drifts too (light, expression, a hand: 0.70-0.96 to a kept reference of the same pose), and the
    output came closer to the person of its own frame than to the kept references (0.216 against
    0.187). So the EdgeFace chips of the output and of this frame's person, one batch a face-frame
    (the guard asks until the track's ID code freezes: after that the output held as steadily as its
    input, and looking on cost 5 ms a frame for 4 faces and found nothing the full checks had not):
    a full re-check is due when the output is no longer the face last checked (guard_policy.same_output,
    with that check's dlib distance and `tau`) or its chip alone is over `limit` against the person, now
    or kept (`limit` is the re-check's own, Policy.edge_limit: the chip is the mildest of the re-check's
    views, 0.01-0.02 lower, so an output held near it can pass a look and fail the re-check). A face
    `guard_policy.redrawn_small` is looked at through the check's 0.95-scale view too, and by dlib
    against the kept references: under `dlib_floor` a re-check is due as well. A face that shows what
    is in front of it is looked at as a re-check measures it (guard_occluded_refs.shared_region)."""
    if st.output_edge is None or not st.edge_refs:
        return True  # nothing to compare with: check in full
    ctx = context_crop(frame, r, current[0].target + current[0].crop.offset)
    ctx_rgb = bl.crop_rgb(frame, ctx)
    img, pts = candidate_output(ctx_rgb, ctx, *current, surroundings_mode(st.step), occluder=st.occluder)
    closer = redrawn_small(st, r)
    # what is in front of the face, kept original in the output, painted in in the person (as a re-check does)
    at = np.asarray(r.landmarks)[:, :2] - ctx.offset
    shared = shared_region(occluder_keep(frame, r, current[0]), st.occluder, ctx, at, st.masked_refs, len(st.refs))
    dlib_refs, edge_refs = (st.refs, st.edge_refs) if shared is None else clean_references(st)
    person, *outputs = two.chip_embeddings([edge_views(ctx_rgb if shared is None else filled_in(ctx_rgb, shared),
                                                       at, full=False)[0],
                                            *edge_views(img, pts, full="wide" if closer else False)])
    chip = outputs[0]
    # a re-check of this frame embeds neither again (the person painted in: the plain one is embedded there)
    st.looked, st.since_look = (frame.index, chip, person if shared is None else None), 0
    refs = np.vstack([np.asarray(edge_refs, np.float32).reshape(-1, person.shape[0]), person[None]])
    refs /= np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
    # close to `limit`: looked at again next face-frame (look_due)
    st.look_similarity = float((refs @ np.asarray(outputs).T).max())
    if st.look_similarity > limit or not same_output(float(chip @ st.output_edge), st.distance, tau):
        return True
    return closer and two.dlib_distance(img, pts, dlib_refs, full=False) < dlib_floor
