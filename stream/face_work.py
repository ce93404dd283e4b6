"""Render a face, cut its occluders out and hand it to the restorer: the part of the face path that
runs where the restorer runs (in this process, or in a restore process: stream/restore_processes.py).

One implementation for both places, so a track's warp, occluder cut and new face are computed by
the same code on the same inputs in the same order, and the output is the same bit for bit.
The warp itself is made by the pipeline before it sends a request (`warp_here`): the restore process
bounded a default run, and this process had time while it waited for its answers (fifty-first session:
the 4-face 360p clip ~4 % faster, this process's main thread now the bound; moving the occluder cut or
the restorer's canvas maps here as well made it slower, docs/measured.md).
`take_answers` is the pipeline's side: a restore process's answers back into the face jobs.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ideud.stream.occlusion import OcclusionStage
from ideud.stream.render import render
from ideud.stream.types import RenderAnswer, Rendered, RenderRequest, RestoreItem


def render_and_cut(req: RenderRequest, occlusion: OcclusionStage
                   ) -> tuple[Optional[Rendered], Optional[RestoreItem], Optional[np.ndarray]]:
    """The warped face with occluders (hands, microphones) cut out of its mask, the restorer's
    item, and the occluder the cut found (kept original if the face is obfuscated:
    `OcclusionStage.take_occluder`); rendered and item None when the face is too covered and must
    be obfuscated ("occluded")."""
    out = req.rendered if req.rendered is not None else warp_here(req).rendered
    visible = occlusion.cut(req.track_id, req.original, req.measured, req.crop, out.mask)
    occluder = occlusion.take_occluder(req.track_id)
    if visible is None:
        return None, None, occluder
    out.mask, out.occluded = visible
    return out, RestoreItem(image=out.image, original=req.original, mask=out.mask, landmarks=out.target,
                            track_id=req.track_id, seed=req.seed, level=req.level), occluder


def warp_here(req: RenderRequest) -> RenderRequest:
    """The request with its warp (and face mask) made in this process."""
    req.rendered = render(req.original, req.crop, req.landmarks, req.target, req.visible, warp=req.restore)
    return req


def run_entries(entries: Sequence, restorer, occlusion: OcclusionStage) -> list:
    """Restore items and render requests in the order given: a `RestoreItem` -> its restored crop,
    a `RenderRequest` -> a `RenderAnswer`. One restorer call for all of them (a track's faces reach
    it in the order they came); a request that fails only fails its own face."""
    items, where, out = [], [], [None] * len(entries)
    for k, e in enumerate(entries):
        if isinstance(e, RenderRequest):
            try:
                rendered, item, occluder = render_and_cut(e, occlusion)
            except Exception as ex:
                out[k] = RenderAnswer(reason=f"error:{type(ex).__name__}")
                continue
            if item is None or not e.restore:  # (not restore: obfuscated anyway, only its occluder asked)
                out[k] = RenderAnswer(reason="occluded" if item is None else "obfuscated", occluder=occluder)
                continue
            out[k] = RenderAnswer(image=rendered.image, mask=rendered.mask, target=rendered.target,
                                  occluded=rendered.occluded, occluder=occluder)
            e = item
        items.append(e)
        where.append(k)
    faces = restorer.restore(items) if items else []
    if len(faces) != len(items):
        raise RuntimeError("restorer returned a different number of faces")
    for k, face in zip(where, faces):
        if isinstance(out[k], RenderAnswer):
            out[k].face = face
        else:
            out[k] = face
    return out


def take_answers(jobs: list, restored: list) -> tuple[list, list]:
    """The pipeline's side (stream/processor.py): jobs whose faces were rendered in a restore process
    take that render and the occluder it found (kept original if the face is obfuscated,
    stream/obfuscate_keep.py), or its reason to be obfuscated; a job obfuscated already (only cut)
    keeps its own reason. The jobs and faces left to review, in order."""
    kept_jobs, kept = [], []
    for job, res in zip(jobs, restored):
        req = job.request
        if req is not None:
            job.request = None
            job.occluder = None if res.occluder is None else (req.crop, res.occluder)
            if res.reason is not None:
                job.reason = job.reason or res.reason
                continue
            job.rendered = Rendered(req.crop, res.image, res.mask, res.target, res.occluded)
            job.item = RestoreItem(image=res.image, original=req.original, mask=res.mask, landmarks=res.target,
                                   track_id=req.track_id, seed=req.seed, level=req.level)
            res = res.face
        kept_jobs.append(job)
        kept.append(res)
    return kept_jobs, kept
