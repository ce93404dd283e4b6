"""The guard's search restores its next batch of candidates while it checks this one.

A search (stream/guard.py, point 2) renders a batch of candidates, waits for the restorer, then
checks them on this thread (EdgeFace, FaceMesh, the inverses, dlib: ~50-150 ms a batch) while the
restorer, in its own process, has nothing to do. Here the next batch is started before this one
is checked, so the restorer works on it meanwhile; when this batch has a face that passes, the next
one was never needed.

A candidate is not free of consequences: its first render fixes, for its noise and appearance seed,
the shape pick of Step I (`IdentityStage` picks, per noise key) and the restorer's new face (per
track, seed and level), from the frame it is first drawn in. Drawn ahead and not used, those picks
would be fixed from this frame where a later search would have fixed them from its own: the output
would depend on having looked ahead. So batches started ahead are provisional: the identity picks
they fixed are noted and dropped again, and the restorer takes back what its provisional items
fixed (`settle`, in order with its calls), unless the batch is used. The output is then the same
bit for bit as without looking ahead (tests/test_guard_ahead.py), except where a provisional
item pushed another key out of the restorer's caches (over 512 kept keys).

Only where the restorer runs in restore processes behind its worker thread (the default on a
machine with two cores or more; not in batch tasks, which start none) and can take back
(`settles`); never across frames (a per-frame budget ends the look ahead with the frame's last batch).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from ideud.stream.guard_policy import STEPS, step_candidates
from ideud.stream.guard_views import start_candidate
from ideud.stream.restore_processes import RestoreProcesses
from ideud.stream.restore_worker import RestoreWorker


@dataclasses.dataclass
class Batch:
    step: int
    k: int  # its first candidate
    n: int
    started: list  # (candidate j, start_candidate's handle; None: the pipeline's own render)
    provisional: bool = False
    picks: set = dataclasses.field(default_factory=set)  # identity noise keys its renders fixed


def can_look_ahead(guard) -> bool:
    """Where the restorer works in processes of its own: on a thread of this process it would take
    the interpreter from the checks it should run beside (multi_person: guard 80 -> 90 ms a frame)."""
    r = guard.restorer
    return bool(guard.policy.ahead and isinstance(r, RestoreWorker) and isinstance(r.restorer, RestoreProcesses)
                and r.settles)


def batch_size(p, step: int, k: int, first, budget: int) -> int:
    """Candidates in the batch starting at (step, k): the pipeline's own render is checked alone first
    (it costs no render, and when it passes, the common case, nothing else is drawn)."""
    return 1 if first is not None and step == 0 and k == 0 else min(p.batch, step_candidates(p, step) - k, budget)


def next_batch(p, step: int, k: int, n: int, budget: int) -> Optional[tuple[int, int, int]]:
    """(step, first candidate, size) of the batch after this one, within what is left of the frame's budget."""
    k += n
    if k >= step_candidates(p, step):
        step, k = step + 1, 0
    if step >= len(STEPS) or budget <= 0:
        return None
    return step, k, min(p.batch, step_candidates(p, step) - k, budget)


def start_batch(guard, st, tid: int, frame, r, step: int, k: int, n: int, first,
                provisional: bool = False) -> Batch:
    """Render candidates k..k+n-1 of a step and hand them to the restorer (noise set per candidate)."""
    before = guard.identity.pick_keys(tid) if provisional else set()
    started = []
    try:
        for j in range(k, k + n):
            noise, level, seed, _ = guard._candidate(st, step, j)
            if first is not None and step == 0 and j == 0:
                started.append((j, None))  # already rendered by the pipeline with the track's own noise and seed
            else:
                guard.identity.set_noise(tid, noise)
                started.append((j, start_candidate(guard.identity, guard.restorer, frame, tid, r, level, seed,
                                                   provisional)))
    except BaseException:
        if provisional:  # what the candidates started so far fixed is taken back before the error goes on
            settle(guard, tid, Batch(step, k, n, started, True, guard.identity.pick_keys(tid) - before), keep=False)
        raise
    picks = guard.identity.pick_keys(tid) - before if provisional else set()
    return Batch(step, k, n, started, provisional, picks)


def settle(guard, tid: int, batch: Optional[Batch], keep: bool) -> None:
    """A provisional batch used (what it fixed stays) or not (taken back, here and in the restorer)."""
    if batch is None or not batch.provisional:
        return
    if not keep:
        guard.identity.drop_picks(tid, batch.picks)
    guard.restorer.settle(tid, keep)
