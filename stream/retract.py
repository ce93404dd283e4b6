"""A track's faces not checked since its last passed check are hidden when its next re-check fails.

Between full checks the privacy guard lets a track's face through while nothing changed enough to
ask again (stream/guard.py, 3.). When a re-check then fails, the output had drifted toward the
person, and the frames since the last passed check were drifting with it: on hard_turns at seed 4
(tools/bench/bench_footage.py) the turned head's check passed at frame 25 (dlib 0.69), frame 26
was not checked, frame 27's check found dlib 0.557, and the judge matched frame 26 (0.598).

A file run still holds those frames (their paste-back waits for the look-back and the restorer:
`FaceProcessor.frames_held`), so that track's unchecked faces in them are obfuscated like the one
that failed, back to the track's last checked face (fail closed; reason "privacy"). A live run has
written them already; nothing is taken back there.
"""
from __future__ import annotations


class Retraction:
    """The frames reviewed and not yet pasted back, oldest first, and what was taken back from them."""

    def __init__(self):
        self.waiting: list = []  # PendingFrame, `reviewed` set
        self.hidden = 0  # face-frames obfuscated here

    def reviewed(self, p, failed: set) -> None:
        """Frame `p` has just been reviewed; `failed`: the tracks whose re-check failed in that review.
        Their unchecked faces in the frames waiting before `p`, newest first up to each track's last
        checked face, are taken out of those frames' faces (obfuscated at paste-back)."""
        open_tracks = set(failed)
        for q in reversed(self.waiting):
            if not open_tracks:
                break
            jobs, restored = q.reviewed
            kept = []
            for job, face in zip(jobs, restored):
                tid = job.track.id
                if tid in open_tracks and job.checked:
                    open_tracks.discard(tid)  # checked and passed in its own frame: it and those before stay
                elif tid in open_tracks:
                    job.reason = "privacy"
                    self.hidden += 1
                    continue
                kept.append((job, face))
            q.reviewed = ([j for j, _ in kept], [f for _, f in kept])
        if p.reviewed is not None:
            self.waiting.append(p)

    def pasted(self, p) -> None:
        """Frame `p` is being pasted back: nothing can be taken from it any more."""
        self.waiting = [q for q in self.waiting if q is not p]
