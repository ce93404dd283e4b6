"""The privacy guard's references of a person taken behind an occluder (issue 13).

A face first seen behind a hand or a microphone gives the guard references that hold that
occluder. An obfuscated face that keeps its occluder (stream/obfuscate_keep.py) shares it with
them, and the shared occluder alone pulls dlib under 0.6 (tools/bench/bench_occluder_keep.py: even
the plain fill is "matched" against such a reference), so every such face was filled whole.

So where the occlusion stage found the occluder in the frame a reference is taken in
(`OcclusionStage.take_occluder`, on the face job), the guard also keeps the person with that
occluder greyed (128), and checks a kept occluder against that one instead (`kept_references`);
the plain reference stays what rendered faces are checked against. What is greyed is exactly what
an obfuscated face keeps (the stage's occluder with its thin rim, stream/occlusion.py KEEP_MARGIN).
The thresholds are the guard's absolute ones (dlib >= 0.6, EdgeFace <= edge_max, worst view,
every reference).

Why not the same region greyed in the output too: the same grey on both sides is shared content
that dlib reads as the same person: every kept face of tools/bench/bench_footage.py's
microphone_from_start clip sat at 0.49-0.52 from it (1 of 28 kept), against 0.57-0.62 from the
reference greyed alone (12 kept) and, for those 12, 0.61-0.65 from the person without the
microphone (tests/test_occlusion_obfuscated.py); on 20 build portraits the plain fill, nothing
kept, was "matched" 3-5 times (tools/bench/bench_occluder_keep.py).

Limits: what lies under the reference's occluder is in no reference, so pixels an output keeps
there are not measured against the person (the occluder; or face that the stage took for an
occluder in both frames): `obfuscate_keep.trusted` bounds that (never the eyes, at most
MAX_KEPT_CHECKED of the face). The greyed reference stands for the person without the occluder:
on 20 build portraits it placed 1 of 20 microphone faces (kept with the stage's margin) among
different people that the person without it matched (dlib 0.59; bench_occluder_keep.py,
missed_vs_clean). On the microphone_from_start clip with every found occluder kept unchecked, the
person without it matched 2 of 28 kept faces (dlib 0.59, 0.60): this check refused both.
A reference whose occluder the stage did not find keeps it: compared as it is, and a kept face is
then usually refused (filled whole: fail closed).
Rendered faces (`shared_region`, `references`): a rendered face shows what is in front of
it original too, and this frame's person, always among its references, holds the same pixels: a
hand over the mouth alone kept every candidate of bench_footage.py's multi_person near face "one
person" (EdgeFace 0.29 against this frame, 0.149 against the person before the hand came), and the
face was obfuscated for the rest of the shot. Where the track has a reference taken with nothing in
front, a face the stage found an occluder in front of is measured against those references and this
frame's person with the occluder (and the render's cut margin next to it) painted in from around it
(cv2.inpaint; greyed, the grey still held every candidate of that frame); the references taken
behind an occluder are left out. What the render left original elsewhere, the eyes and brows, and
a region over MAX_KEPT_CHECKED of the face are never painted in; a track seen only behind its
occluder, or a frame where the stage found none, keeps the plain references (fail closed). The look
between checks does the same (guard_views.output_drifted). Such a face's candidates are drawn at the
restorer's level 3 at least (`BEHIND_MIN_LEVEL`: the prior redraws a glasses wearer's eye band there), and
a face checked so is checked again once no occluder is found in front of it (guard.py `_due`). The
footage judge compares such outputs with the frame drawn without its occluder (tests/footage.py
`FootageFrame.clean`), as a photo of the person would show them.

Privacy: the greyed and painted-in references live in the guard's memory only, with the plain ones,
and are dropped with the track.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ideud.stream.obfuscate_keep import MAX_KEPT_CHECKED, trusted
from ideud.stream.restore_prior import GLASSES_BELOW_LEVEL
from ideud.stream.types import Crop

# share of the face size around the stage's occluder within which what the render left original is the
# cut's margin (stream/occlusion.py grows a rendered face's cut by 0.05 of it), painted in with it
NEAR_OCCLUDER = 0.06
# the restorer level a candidate measured against the person behind the occluder is drawn at, at least:
# below it the prior keeps a glasses wearer's own eye band (restore_prior.GLASSES_BELOW_LEVEL), and with
# a hand over the mouth that band is most of the face shown; the painted-in blob under it made the
# reference read farther from it than the person is (bench_footage.py multi_person, seeds 1, 5, 6: 5
# face-frames drawn at level 1 passed here and matched the person without the hand, EdgeFace 0.25-0.26)
BEHIND_MIN_LEVEL = GLASSES_BELOW_LEVEL


def greyed(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of `rgb` with the pixels of `mask` (bool, or uint8 >= 128) grey (128)."""
    out = rgb.copy()
    out[mask >= 128 if mask.dtype == np.uint8 else mask.astype(bool)] = 128
    return out


def in_context(occluder: tuple[Crop, np.ndarray], ctx: Crop) -> np.ndarray:
    """The kept pixels of an occluder (crop, uint8 keep: 255 the occluder and its margin) on the
    context crop `ctx`: bool, all False where they do not meet."""
    crop, keep = occluder
    out = np.zeros((ctx.y1 - ctx.y0, ctx.x1 - ctx.x0), bool)
    x0, y0, x1, y1 = max(crop.x0, ctx.x0), max(crop.y0, ctx.y0), min(crop.x1, ctx.x1), min(crop.y1, ctx.y1)
    if x1 > x0 and y1 > y0:
        out[y0 - ctx.y0:y1 - ctx.y0, x0 - ctx.x0:x1 - ctx.x0] = \
            keep[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0] >= 128
    return out


def occluder_core(occluder: tuple[Crop, np.ndarray], ctx: Crop) -> Optional[np.ndarray]:
    """The occluder a face job carries (crop, uint8 keep: 255 the occluder) in the context crop
    `ctx`: bool, or None where nothing of it is there."""
    crop, keep = occluder
    if keep.shape != crop.shape:
        return None
    out = in_context(occluder, ctx)
    return out if out.any() else None


def masked_reference(two, ctx_rgb: np.ndarray, ctx: Crop, pts: np.ndarray,
                     occluder: Optional[tuple[Crop, np.ndarray]]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The person in `ctx_rgb` (points `pts` in it) with this frame's occluder greyed: (dlib,
    EdgeFace) embeddings, memory only; None where the frame has no occluder."""
    core = None if occluder is None else occluder_core(occluder, ctx)
    return None if core is None else two.person(greyed(ctx_rgb, core), pts)


def kept_references(dlib_refs: list, edge_refs: list, masked: Optional[list]) -> Optional[tuple]:
    """The (dlib, EdgeFace) references a kept occluder is checked against: each of the guard's,
    the one with its occluder greyed where it has one. None without references (this frame's own
    face is then the reference); greyed ones out of step with the references (a failed
    embedding): the references as they are (fail closed)."""
    if not dlib_refs:
        return None
    if masked is None or len(masked) != len(dlib_refs):
        masked = [None] * len(dlib_refs)
    return (np.array([d if m is None else m[0] for d, m in zip(dlib_refs, masked)]),
            np.array([e if m is None else m[1] for e, m in zip(edge_refs, masked)]))


def shared_region(left: Optional[tuple[Crop, np.ndarray]], occluder: Optional[tuple[Crop, np.ndarray]],
                  ctx: Crop, pts: np.ndarray, masked: list, kept: int) -> Optional[np.ndarray]:
    """What a rendered face's output shares with its own frame because something is in front of it,
    on the context crop (bool): the occluder the stage found (`occluder`: (crop, uint8 keep)) and,
    within NEAR_OCCLUDER of it, what the render left original of the face (`left`: guard_views.
    occluder_keep's (crop, keep factor on the face mask): the cut's margin around a hand). None, and
    the person is compared as they are (fail closed), where the stage found nothing in front (what a
    render leaves original then is the face misread as an occluder: a face walking nearer its camera
    left 90-1,500 px so, and with them painted in one output read 0.225 to the person); where the
    track has no kept reference taken with nothing in front (`masked`: each of the `kept` ones'
    greyed twin or None), as nothing else would see the face under it; or where it covers over
    MAX_KEPT_CHECKED of the face. Never the eyes and brows (obfuscate_keep.trusted): what the output
    shows original there stays in the reference, measured as it is."""
    core = None if occluder is None or not clean_kept(masked, kept) else occluder_core(occluder, ctx)
    if core is None:
        return None
    region = core.copy()
    cut = None if left is None else occluder_core((left[0], np.where(left[1] < 0.5, 255, 0).astype(np.uint8)), ctx)
    if cut is not None:
        r = max(1, int(round(NEAR_OCCLUDER * float(np.ptp(pts, 0).max()))))
        near = cv2.dilate(core.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
        region |= cut & near
    allowed, _ = trusted(np.where(region, 255, 0).astype(np.uint8), pts, MAX_KEPT_CHECKED)
    return None if allowed is None else allowed >= 128


def clean_kept(masked: list, kept: int) -> list:
    """Indices of the `kept` references taken with no occluder found in front (`masked` None there);
    none where the greyed twins are out of step with them (a failed embedding: fail closed)."""
    return [i for i, m in enumerate(masked) if m is None] if len(masked) == kept else []


def behind_level(st, level: int) -> int:
    """The restorer level of a candidate of a track at `level` in `STEPS`: at least BEHIND_MIN_LEVEL
    while it is measured against the person behind an occluder (`st.now_behind` set)."""
    return level if st.now_behind is None else max(level, BEHIND_MIN_LEVEL)


def note_behind(st) -> bool:
    """After `person_behind` at a full check: counts it (the report's `checks_behind_occluder`) and
    keeps whether it measured against the person behind an occluder (`st.checked_behind`: checked again
    once the occluder has gone) and whether one was in front (`st.checked_occluder`; both read by
    guard_policy.occluder_changed_since_check). True where this check or the last one measured behind
    an occluder: a dlib distance measured against one kind of references does not stand for the other."""
    now = st.now_behind is not None
    was, st.checked_behind, st.checked_occluder = st.checked_behind, now, st.occluder is not None
    st.checks_behind += now
    return was or now


def references(st, plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (dlib, EdgeFace) references a track's output is measured against: the kept ones and this
    frame's person (`st.now`, where not among them). For an output that shows what is in front of the
    face this frame (`st.now_behind` set) and not `plain`: the kept references taken with nothing in
    front, and this frame's person with what the output shares painted in."""
    if plain or st.now_behind is None:
        now = [] if st.now is None else [st.now]
        return (np.array(st.refs + [n[0] for n in now]), np.array(st.edge_refs + [n[1] for n in now]))
    dlib, edge = clean_references(st)
    return np.array(dlib + [st.now_behind[0]]), np.array(edge + [st.now_behind[1]])


def clean_references(st) -> tuple[list, list]:
    """(dlib, EdgeFace) of the kept references taken with nothing in front (`clean_kept`)."""
    clean = clean_kept(st.masked_refs, len(st.refs))
    return [st.refs[i] for i in clean], [st.edge_refs[i] for i in clean]


def person_behind(two, st, ctx_rgb: np.ndarray, ctx: Crop, pts: np.ndarray, left: Optional[tuple[Crop, np.ndarray]],
                  occluder: Optional[tuple[Crop, np.ndarray]]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """This frame's person (in `ctx_rgb`, points `pts` in it) with what its output shares because
    something is in front of the face (`shared_region`) painted in from around it: (dlib, EdgeFace),
    memory only; None where the plain references stand. Painted in, not greyed: on bench_footage.py's
    multi_person near face (seed 1, frame 18, a hand over the mouth) the grey still held all 24
    candidates of the frame's search over the limits (painted in: one passed)."""
    region = shared_region(left, occluder, ctx, pts, st.masked_refs, len(st.refs))
    return None if region is None else two.person(filled_in(ctx_rgb, region), pts)


def filled_in(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of `rgb` with the pixels of `mask` (bool) painted in from around them (cv2.inpaint)."""
    return cv2.inpaint(np.ascontiguousarray(rgb), mask.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
