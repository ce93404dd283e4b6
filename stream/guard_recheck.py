"""A held frame's face checked in full after the fact (stream/retract.py): the track's next re-check
failed, and this face, passed at its own frame without a full check, may have drifted too. It is
measured as a re-check measures (both recognizers, every view, FaceMesh on the output) against the
person at its own frame and the track's kept references, and changes nothing in the guard's state.
"""
from __future__ import annotations

import numpy as np

from ideud.stream import blend as bl
from ideud.stream.guard_views import candidate_output, context_crop, seen_then_dlib


def held_face_passes(guard, frame, job, face_rgb) -> bool:
    """True when `job`'s face (restored `face_rgb`, in `frame` as yet unpasted) is among different
    people for both recognizers, as a re-check of its own frame would find; False where it is not,
    or the track's references are gone."""
    st = guard._tracks.get(job.track.id)
    if st is None or job.rendering is None:
        return False
    r, p = job.rendering, guard.policy
    ctx = context_crop(frame, r, job.rendered.target + job.rendered.crop.offset)
    ctx_rgb = bl.crop_rgb(frame, ctx)
    img, pts = candidate_output(ctx_rgb, ctx, job.rendered, job.item, face_rgb, job.surroundings, occluder=job.occluder)
    dref, eref = guard._refs(st)
    person = guard.two.person(ctx_rgb, r.landmarks[:, :2] - ctx.offset)  # at this frame: the look drifts
    dref, eref = np.vstack([dref.reshape(-1, person[0].size), person[0]]), np.vstack([eref.reshape(-1, person[1].size), person[1]])
    s = float(guard.two.edge_similarity([(img, pts)], eref)[0])
    _, s, d = seen_then_dlib(guard.two, guard.mesh, p, img, pts, s, p.edge_limit(search=False), dref, eref)
    return p.passes(d, s, search=False)
