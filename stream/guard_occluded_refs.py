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
Privacy: the greyed references live in the guard's memory only, with the plain ones, and are
dropped with the track.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ideud.stream.types import Crop


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
