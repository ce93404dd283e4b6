"""Degrade steps for a face stage that falls behind (live streams), before frames are dropped.

How far behind the stage is, is the number of frames waiting for it when it takes a frame: the
drop queue's, plus, with detection ahead, the one frame the detection thread holds
(stream/live_detect.py); at most `capacity` (the queue's size - 1, + 1 with detection ahead: 2 by
default) before the next arrival drops a frame. `DegradeControl` turns that into a level, 0 to
`LAST_STEP` (`level_for`: a third of the capacity or less asks for level 2, two thirds for 3, more
for 4): up at once to what the backlog asks for, down one level only after `CALM_FRAMES` frames in
a row that ask for less (hysteresis: a stage that just caught up does not fall straight back).
Each level adds one step to the ones below it (level 0's pacing of new tracks is on whenever
degrading is). Only past the last step does the drop queue (stream/live_io.py) drop the oldest
unprocessed frame, as before. The live report counts the frames processed at each level and the
face-frames each step served (`live.degrade`: frames_at_level, reused_face_frames,
reused_still_face_frames, new_track_obfuscated_face_frames); the processor's report counts the
last as fallback "degrade".

    level  engages at      step                                  costs in quality
           (default queue)
    0      not behind      new tracks paced: of the tracks the   a second new face waits a few frames
                           guard has not verified, one a frame   as a mosaic (a search candidate takes
                           goes the full way, the others are     0.1-0.3 s: four in one frame stalled
                           obfuscated outright                   the stage for a second)
    1      (going down)    reuse a track's last face: 1 frame    motion inside the face held 1 frame
    2      (ahead: 1       reuse 2 frames; a still face (box     expression held up to 4 frames (160 ms
           waiting)        moved < STILL_MOVE) twice that        at 25 fps) on a face that does not move
    3      1 (ahead: 2)    reuse 3 frames (6 still); the one     a new face stays a mosaic longer (its
                           new track of level 0 goes the full    verification waits for a quiet
                           way only in a frame nothing waits     frame); held up to 6 frames (240 ms)
                           behind
    4      2 (ahead: 3)    as 3, and every unverified track      new faces stay mosaics until the stage
                           obfuscated, its search paused         catches up

Step "reuse" (levels 1-4): a track's last restored face (the one the privacy guard passed and that
was pasted) is pasted again in the next frame, moved and scaled by the similarity from its last box
to its new box, instead of running landmarks, render, restore and guard for it. Fail closed: the
new box is obfuscated first and the moved face pasted over it, so where the moved face does not
cover the face (a turn, a mouth opening) the mosaic shows, never the person. A new track, or one
whose face was obfuscated, always goes the full way (or is obfuscated: levels 0, 3, 4). A face is
reused at most `reuse_limit(level)` frames in a row (a still one twice that from level 2), and
tracks are staggered (a track may go the full way early, on its own phase of the frame number), so
the full renders spread over frames instead of all landing on one: the frame-to-frame cost, and
with it the latency, stays even.

Steps "new tracks" (levels 0, 3, 4; none with degrading off): a track that the guard has not
verified yet costs a full render and one guard candidate per frame (~0.1-0.3 s with dlib on 2
cores) while its face is obfuscated anyway; four people entering at once stalled the stage for a
second or more. At level 3 a candidate starts only in a frame with an empty backlog, so the stall
it causes starts from an empty queue (the drop queue absorbs ~120 ms of it).
Obfuscation is always safe: these faces are written as the guard's mosaic (reason "degrade" in
the report). A track the guard gave up on is obfuscated by the guard anyway and does not take a new
track's turn; at level 4 its occasional retry search waits too. Not paced: a verified track's
search after a failed re-check (its status stays verified).

Not built: a lower re-check rate in the guard. Re-checks run on change, not on the clock, and cost
~0.2 ms a frame on the 4-face bench clip once the tracks are verified (the guard's time is in the
first searches, which level 0 paces and levels 3-4 hold back); reused faces (step 1) already skip the guard, having been
verified when rendered. A faster restorer for new tracks needs the guard to verify that restorer's
output (its candidates render with the pipeline's restorer), which is a hook in stream/guard.py.
Detecting on every other frame is not done either. With the held frame (`LiveOptions.hold`) a face
entering on a skipped frame would be hidden there by the look-back, but a frame without detection
has no box to move a track's last face to, so every face in it goes the full way: on the 4-face
feed 82.5-87.3 % of frames written against 93.6-95.5 % (forty-third session, docs/measured.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.stream import blend as bl
from ideud.stream.types import Crop, Frame

MAX_REUSE = 3  # frames in a row a track's last face may be reused, at the furthest behind
MAX_SCALE_CHANGE = 1.25  # a box that grew or shrank more than this goes the full way
STILL_MOVE = 0.05  # "still": the box's centre moved less than this share of its size, and its size as little
LAST_STEP = 4
STEP_STILL, STEP_NEW_WHEN_QUIET, STEP_NEW_OBFUSCATED = 2, 3, 4
CALM_FRAMES = 8  # frames in a row with a smaller backlog before the level goes down one
FULL, REUSE, OBFUSCATE = "full", "reuse", "obfuscate"


# a reused face whose surroundings the guard's step blurs or fills: its box obfuscated this much each
# side (blend.SURROUNDINGS reaches 0.5 of the face above it and 0.3 beside and below)
REUSE_SURROUNDINGS_GROW = 0.5


@dataclass
class _Last:
    rgb: np.ndarray  # the restored, colour-matched face crop that was pasted
    mask: np.ndarray  # its paste mask (float32 0..1)
    crop: Crop
    box: np.ndarray  # the face's box in that frame (x0, y0, x1, y1)
    reused: int = 0  # frames in a row it has been reused since
    hid_surroundings: bool = False  # the guard checked it with its surroundings blurred or filled


class ReuseCache:
    """Per track, the last pasted face; `paste_moved` reuses it for a frame."""

    def __init__(self, max_reuse: int = 1):
        self.max_reuse = max_reuse
        self.level = 1  # the degrade level (DegradeControl) while the processor's reuse_faces is set
        self._last: dict[int, _Last] = {}
        self.reused = 0  # face-frames served from here
        self.reused_still = 0  # of those, beyond `max_reuse` because the face is still (level 2)
        self.new_obfuscated = 0  # face-frames of unverified tracks obfuscated outright (levels 3-4)
        self._full_new_frame = -1  # the frame an unverified track last went the full way in (level 3)
        self.waiting = 0  # frames waiting behind this one (DegradeControl.apply)

    def keep(self, track_id: int, rgb: np.ndarray, mask: np.ndarray, crop: Crop, box: np.ndarray,
             hid_surroundings: bool = False) -> None:
        self._last[track_id] = _Last(rgb, mask, crop, np.asarray(box, float).copy(), hid_surroundings=hid_surroundings)

    def hid_surroundings(self, track_id: int) -> bool:
        """The track's kept face was checked with its surroundings blurred or filled."""
        last = self._last.get(track_id)
        return last is not None and last.hid_surroundings

    def forget(self, track_id: int) -> None:
        """The track's face was not pasted this frame (obfuscated): nothing of it may be reused."""
        self._last.pop(track_id, None)

    drop = forget

    def route(self, track_id: int, box: np.ndarray, frame_number: int, status: Optional[str]) -> str:
        """FULL, REUSE or OBFUSCATE for this track's face in this frame. `status`: the privacy guard's
        for the track ("verified", also without a guard; "pending" or None: new; "obfuscated": the
        guard gave up, its face obfuscated but for a retry now and then). Call once per track and frame."""
        if status == "obfuscated":  # cheap (the guard obfuscates it) but for a rare retry search
            if self.level >= STEP_NEW_OBFUSCATED:
                self.new_obfuscated += 1
                return OBFUSCATE
            return FULL
        if status != "verified":
            # a search candidate stalls the stage ~0.1-0.3 s: one a frame, from level 3 only in a
            # frame nothing waits behind, none at level 4
            if (self.level >= STEP_NEW_OBFUSCATED or self._full_new_frame == frame_number
                    or (self.level >= STEP_NEW_WHEN_QUIET and self.waiting > 0)):
                self.new_obfuscated += 1
                return OBFUSCATE
            self._full_new_frame = frame_number  # this one's turn; the others wait
            return FULL
        return REUSE if self.usable(track_id, box, frame_number) else FULL

    def usable(self, track_id: int, box: np.ndarray, frame_number: int = 0) -> bool:
        """Whether the track's last face may stand in for this frame's (`frame_number`: the
        processor's frame count, for the stagger)."""
        last = self._last.get(track_id)
        if last is None or self.level < 1:
            return False
        scale = _scale(last.box, box)
        if not 1.0 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE:
            return False
        limit = self.max_reuse
        if self.level >= STEP_STILL and _still(last.box, box):
            limit = 2 * self.max_reuse
        if last.reused >= limit:
            return False
        if (frame_number + track_id) % (limit + 1) == 0:
            return False  # this track's turn to go the full way early: full renders spread over frames
        if last.reused >= self.max_reuse:
            self.reused_still += 1
        return True

    def paste_moved(self, frame: Frame, track_id: int, box: np.ndarray, fallback: str, strength: int = 0,
                    hide_surroundings: bool = False) -> None:
        """Obfuscate `box`, then paste the track's last face moved onto it (call `usable` first).
        `hide_surroundings` (a face the guard cleared only with its surroundings blurred or filled): the
        box is obfuscated as far as the blend stage changes them (REUSE_SURROUNDINGS_GROW)."""
        last = self._last[track_id]
        box = np.asarray(box, float)
        grow = {"grow": REUSE_SURROUNDINGS_GROW} if hide_surroundings else {}
        bl.obfuscate(frame, box, fallback, strength=strength, **grow)
        s = _scale(last.box, box)
        # old frame point p -> box[:2] + (p - last.box[:2]) * s
        x0, y0 = box[:2] + (last.crop.offset - last.box[:2]) * s
        h, w = last.crop.shape
        cx0, cy0 = max(0, int(np.floor(x0)) & ~1), max(0, int(np.floor(y0)) & ~1)
        cx1 = min(frame.width, int(np.ceil(x0 + w * s)))
        cy1 = min(frame.height, int(np.ceil(y0 + h * s)))
        last.reused += 1
        self.reused += 1
        if cx1 - cx0 < 2 or cy1 - cy0 < 2:
            return  # moved off the frame: the mosaic stays
        crop = Crop(cx0, cy0, cx1, cy1)
        # old crop pixel (u, v) -> new crop pixel
        m = np.array([[s, 0.0, x0 - cx0], [0.0, s, y0 - cy0]], np.float64)
        size = (cx1 - cx0, cy1 - cy0)
        rgb = cv2.warpAffine(last.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(last.mask, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        bl.paste_rgb(frame, crop, rgb, mask)


def _scale(old: np.ndarray, new: np.ndarray) -> float:
    ow, oh = max(old[2] - old[0], 1e-6), max(old[3] - old[1], 1e-6)
    nw, nh = max(new[2] - new[0], 1e-6), max(new[3] - new[1], 1e-6)
    return float(np.sqrt((nw * nh) / (ow * oh)))


def _still(old: np.ndarray, new: np.ndarray) -> bool:
    size = max(old[2] - old[0], old[3] - old[1], 1e-6)
    moved = np.hypot((new[0] + new[2] - old[0] - old[2]) / 2, (new[1] + new[3] - old[1] - old[3]) / 2)
    return moved < STILL_MOVE * size and abs(_scale(old, new) - 1.0) < STILL_MOVE


def reuse_limit(level: int) -> int:
    """Frames in a row a (moving) face may be reused at this degrade level (or backlog)."""
    return max(1, min(int(level), MAX_REUSE))


def level_for(waiting: int, capacity: int) -> int:
    """The level a backlog asks for: 0 with nothing waiting, else 2, 3 or 4 as it fills `capacity`."""
    if waiting <= 0:
        return 0
    return min(LAST_STEP, 1 + -(-3 * int(waiting) // max(1, int(capacity))))


class DegradeControl:
    """The degrade level from the backlog, frame by frame (module docstring): up at once, down one
    level after `calm` frames in a row below it. `frames_at[level]`: frames processed at each level."""

    def __init__(self, max_level: int = LAST_STEP, capacity: int = 2, calm: int = CALM_FRAMES):
        self.max_level, self.calm = max(0, min(int(max_level), LAST_STEP)), calm
        self.capacity = max(1, int(capacity))  # frames that may wait before the next arrival drops one
        self.level = 0
        self.waiting = 0
        self._below = 0
        self.frames_at = [0] * (LAST_STEP + 1)

    def update(self, waiting: int) -> int:
        self.waiting = int(waiting)
        target = min(level_for(self.waiting, self.capacity), self.max_level)
        if target >= self.level:
            self.level, self._below = target, 0
        else:
            self._below += 1
            if self._below >= self.calm:
                self.level, self._below = self.level - 1, 0
        self.frames_at[self.level] += 1
        return self.level

    def apply(self, processor) -> None:
        """Set the processor's reuse (stream/processor.py's hooks) for the current level."""
        processor.reuse_faces = self.max_level >= 1  # level 0 too: new tracks paced (route)
        processor.reuse.level = self.level
        processor.reuse.waiting = self.waiting
        processor.reuse.max_reuse = reuse_limit(self.level)
