"""Look-back: a face found for the first time was often in the frames just before it, unseen.

The detector misses a face in some frames: out of focus or dim, a head entering the picture that
is still mostly outside it, a track lost for a few frames and found again. Frames the tracker
already followed the face in are handled (the track's predicted box is obfuscated); the frames
before a face's *first* find were written as they came: in a 6-frame clip of a heavily blurred
face CenterFace missed the first frame and found the other five (thirty-eighth session), a head
coming into focus was missed for its first frames and a head entering the picture for two or
three (`tools/bench/bench_look_back.py`).

File runs hold frames between Step I and the paste-back anyway (two where the restorer works a
frame ahead); they hold at least `FRAMES` (`FaceProcessor.frames_held`), so when a track is born
in frame t, the frames t-1 and t-2 of the same shot are still open. Where the detector runs only on
every n-th frame (stream/cadence.py), a face is found up to n-1 frames after the detector could
have found it: where the frames just before a first find went without detection, the look-back
reaches that many frames further back, and the run holds n-1 frames more for it. In each open
frame the new face's box is obfuscated as any face the pipeline cannot de-identify is
(`blend.obfuscate`, the run's `--fallback`), grown for the motion a frame allows, unless a face that
frame processed covers the place already (the person was tracked there: a relinked or re-found
track).

Nothing is asked of the pixels: in those frames the detector, which missed the face, is the only
judge there is. What was tried (build portraits, `/tmp` probes): a template match of the new
face's middle against the frame before scored 0.2-0.68 for the same face out of focus and up to
0.61 for a texture where it was, up to 0.86 for a head's last sliver at the picture's edge;
CenterFace re-asked on an enlarged crop scored 0-0.08 for faces blurred with sigma = 1/9 to 1/6 of
their size and 0.03 for a texture. Why two frames are enough where blur hides a face: the frames
further back are the more blurred ones, and those the detector misses (sigma over ~1/11 of the
face) are past recognising: EdgeFace, against the face's own sharp photo, worst of its views,
matched 4 of 30 at sigma 1/11, 0 of 30 from 1/9 on. A head entering the picture shows less of
its face the further back. The price is a face-sized box for a frame or two where a face appears
without having been there (an occluder taken away, a head turning from the back), which the
report counts (`hidden_before_found`).

Not covered: frames already written (a live stream holds one frame while its faces are restored,
`LiveOptions.hold`, so its look-back reaches one frame back, not two: holding one more raised its
p95 latency by ~65 ms on a 2-core machine, and without a restore worker it holds none; a batch segment does not see
the frames after its end, so a face first found just past it is not hidden in the segment's last
two frames), frames more than `FRAMES` before the first find. Scene cuts end the look-back: the frames before are another picture.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ideud.models.geometry import covered_by
from ideud.stream import blend as bl

FRAMES = 2  # frames before a face's first find that are hidden (the runner holds at least these)
# how much a box grows each side per frame back (on top of obfuscate's own 0.25): a face moves by
# a few percent of its size a frame; two frames back it may have moved twice as far
GROW_PER_FRAME = 0.15
# a face the held frame processed counts as the new face's place when it covers this share of the
# box (the same person, followed there by its last track or found by another)
COVERED = 0.5


class LookBack:
    """The frames prepared and not yet finished, in this shot; see the module docstring.

    `opened(p, born, cut)` after each frame's tracking, with the boxes of the tracks born in it;
    `patch(p)` when the frame is finished (after its faces are pasted), which also lets go of it."""

    def __init__(self, fallback: str, frames: int = FRAMES):
        self.fallback = fallback
        self.frames = frames  # FRAMES, and the frames a detection cadence may skip in a row (held)
        self.open: list = []  # PendingFrames of this shot, oldest first (at most `frames`)
        self.hidden = 0  # face-frames obfuscated before their face's first find (the report's count)

    def opened(self, p, born: list, cut: bool) -> None:
        """Frame `p` (a PendingFrame) was tracked: `born`, the boxes of the tracks it starts; `cut`,
        it starts a new shot. The open frames before it get those boxes, nearest first."""
        if cut:
            self.open = []
        # where the frames just before went without detection, a face may be found that much later
        skipped = 0
        for q in reversed(self.open):
            if q.detected:
                break
            skipped += 1
        depth = min(FRAMES + skipped, self.frames)
        for k, q in enumerate(self.open[::-1][:depth], start=1):
            q.look_back.extend((np.asarray(b, float), k) for b in born)
        self.open.append(p)
        del self.open[:-self.frames]

    def patch(self, p) -> Optional[list]:
        """Obfuscate in `p`'s frame the boxes later frames gave it (none covered by a face it
        processed); the boxes obfuscated (frame pixels), or None where there were none."""
        self.open = [q for q in self.open if q is not p]
        if not p.look_back:
            return None
        faces = [j.box for j in p.jobs]
        done = []
        for box, k in p.look_back:
            if covered_by(box, faces, COVERED):
                continue
            bl.obfuscate(p.frame, box, self.fallback, grow=0.25 + GROW_PER_FRAME * k)
            done.append(box)
        self.hidden += len(done)
        return done or None
