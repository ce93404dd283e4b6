"""When a track's re-check fails, its face in the frame before, if not checked there, is checked now.

Between full checks the privacy guard lets a track's face through while nothing changed enough to
ask again (stream/guard.py, 3.). When a re-check then fails, the output had drifted toward the
person, and the frames since the last passed check were drifting with it: on hard_turns at seed 4
(tools/bench/bench_footage.py) the turned head's check passed at frame 25 (dlib 0.69), frame 26
was not checked, frame 27's check found dlib 0.557, and the judge matched frame 26 (0.598).

A file run still holds the frame before the failed one (its paste-back waits for the look-back and
the restorer: `FaceProcessor.frames_held`; the frames before it are written by then). That track's
face in it, if it was not checked at its own frame, is checked in full now (stream/guard_recheck.py,
~0.1 s, once per failed re-check); it is obfuscated like the one that failed (reason "privacy") unless
it passes. Hiding them unchecked cost 24 rendered face-frames of 1,056 on the footage clips at seeds
1-4 for the one that was matched; checking them first, 14 (docs/measured.md, forty-fourth session).
A live run has written it already; nothing is taken back there.
"""
from __future__ import annotations

from ideud.stream.guard_policy import count_fallback
from ideud.stream.guard_recheck import held_face_passes


class Retraction:
    """The frames reviewed and not yet pasted back, oldest first, and what was taken back from them."""

    def __init__(self, guard=None):
        self.guard = guard  # stream/guard.py PrivacyGuard, or None (nothing is ever taken back)
        self.waiting: list = []  # PendingFrame, `reviewed` set
        self.hidden = 0  # face-frames obfuscated here
        self.rechecked = 0  # unchecked faces checked here in full (and kept where they passed)

    def reviewed(self, p) -> None:
        """Frame `p` has just been reviewed: the tracks whose re-check failed in that review (the guard's
        `failed`) have their unchecked faces in the frames waiting before `p`, newest first up to each
        track's last checked face, checked in full, and taken out of those frames' faces (obfuscated at
        paste-back) where they fail."""
        open_tracks = set(self.guard.failed) if self.guard is not None else set()
        for q in reversed(self.waiting):
            if not open_tracks:
                break
            jobs, restored = q.reviewed
            kept = []
            for job, face in zip(jobs, restored):
                tid = job.track.id
                if tid in open_tracks and not job.checked:
                    self.rechecked += 1
                    try:
                        job.checked = held_face_passes(self.guard, q.frame, job, face)
                    except Exception:  # fail closed: not shown to pass is not shown
                        job.checked = False
                    if not job.checked:
                        job.reason = "privacy"
                        self.hidden += 1
                        st = self.guard._tracks.get(tid)
                        if st is not None:  # the guard's report: the frames obfuscated and why
                            count_fallback(st, "before_failed_check")
                        continue
                if tid in open_tracks:
                    open_tracks.discard(tid)  # checked and passed at its own frame: it and those before stay
                kept.append((job, face))
            q.reviewed = ([j for j, _ in kept], [f for _, f in kept])
        if p.reviewed is not None:
            self.waiting.append(p)

    def pasted(self, p) -> None:
        """Frame `p` is being pasted back: nothing can be taken from it any more."""
        self.waiting = [q for q in self.waiting if q is not p]
