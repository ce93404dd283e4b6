"""Output timestamps that never go back, where the source's do (`Continuous`).

Joined recordings (`cat a.ts b.ts`, a recorder's spliced segments) restart their clock at each
join: the video's timestamps jump back, and the audio's with them. An encoder refuses a frame that
is not after the one before ("Invalid argument"), a muxer an audio packet that is not; the whole
run failed, or the audio after the join was lost. Each output stream keeps the source's timestamps
until one goes back, and from there on shifts the rest so that it continues one step after the
last: the spacing within each part stays the source's, and the parts follow each other.
"""
from __future__ import annotations

from typing import Optional


class Continuous:
    """One stream's timestamps (in its time base), made increasing by an offset that only grows;
    `jumps` counts the places the source went back. `strict`: a timestamp equal to the last one is
    a jump too (an encoder takes no two frames at one time; a muxer may take audio packets so)."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.offset = 0
        self.last: Optional[int] = None
        self.jumps = 0

    def __call__(self, ts: Optional[int], step: int) -> Optional[int]:
        """`ts` shifted; `step`: the stream's usual spacing, where a jump back continues."""
        if ts is None:
            return None
        t = ts + self.offset
        if self.last is not None and (t < self.last or (self.strict and t == self.last)):
            shift = self.last + max(int(step), 1) - t
            self.offset += shift
            t += shift
            self.jumps += 1
        self.last = t
        return t
