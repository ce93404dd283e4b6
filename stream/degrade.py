"""Degrade steps for a face stage that falls behind (live streams), before frames are dropped.

Step 1, reuse: a track's last restored face (the one the privacy guard passed and that was pasted)
is pasted again in the next frame, moved and scaled by the similarity from its last box to its new
box, instead of running landmarks, render, restore and guard for it. Fail closed: the new box is
obfuscated first and the moved face pasted over it, so where the moved face does not cover the
face (a turn, a mouth opening) the mosaic shows, never the person. A new track, or one whose face
was obfuscated, always goes the full way.

How many frames in a row a face may be reused grows with how far behind the stage is
(`reuse_limit`: one frame per frame already waiting, at most `MAX_REUSE`), so a stage one frame
behind re-renders every track every other frame and one that is three behind every fourth. Tracks
are staggered (a track may go the full way early, on its own phase of the frame number), so the
full renders spread over frames instead of all landing on one: the frame-to-frame cost, and with it
the latency, stays even.

Steps not built here: re-checking less often in the guard, and a faster restorer for new tracks.
When the reuse is not enough the drop queue (stream/live_io.py) drops the oldest frame, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
import cv2
import numpy as np

from ideud.stream import blend as bl
from ideud.stream.types import Crop, Frame

MAX_REUSE = 3  # frames in a row a track's last face may be reused, at the furthest behind
MAX_SCALE_CHANGE = 1.25  # a box that grew or shrank more than this goes the full way


@dataclass
class _Last:
    rgb: np.ndarray  # the restored, colour-matched face crop that was pasted
    mask: np.ndarray  # its paste mask (float32 0..1)
    crop: Crop
    box: np.ndarray  # the face's box in that frame (x0, y0, x1, y1)
    reused: int = 0  # frames in a row it has been reused since


class ReuseCache:
    """Per track, the last pasted face; `paste_moved` reuses it for a frame."""

    def __init__(self, max_reuse: int = 1):
        self.max_reuse = max_reuse
        self._last: dict[int, _Last] = {}
        self.reused = 0  # face-frames served from here

    def keep(self, track_id: int, rgb: np.ndarray, mask: np.ndarray, crop: Crop, box: np.ndarray) -> None:
        self._last[track_id] = _Last(rgb, mask, crop, np.asarray(box, float).copy())

    def forget(self, track_id: int) -> None:
        """The track's face was not pasted this frame (obfuscated): nothing of it may be reused."""
        self._last.pop(track_id, None)

    drop = forget

    def usable(self, track_id: int, box: np.ndarray, frame_number: int = 0) -> bool:
        """Whether the track's last face may stand in for this frame's (`frame_number`: the
        processor's frame count, for the stagger)."""
        last = self._last.get(track_id)
        if last is None or last.reused >= self.max_reuse:
            return False
        if (frame_number + track_id) % (self.max_reuse + 1) == 0:
            return False  # this track's turn to go the full way early: full renders spread over frames
        scale = _scale(last.box, box)
        return 1.0 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE

    def paste_moved(self, frame: Frame, track_id: int, box: np.ndarray, fallback: str, strength: int = 0) -> None:
        """Obfuscate `box`, then paste the track's last face moved onto it (call `usable` first)."""
        last = self._last[track_id]
        box = np.asarray(box, float)
        bl.obfuscate(frame, box, fallback, strength=strength)
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


def reuse_limit(waiting: int) -> int:
    """Frames in a row a face may be reused when `waiting` frames wait for the face stage."""
    return max(1, min(int(waiting), MAX_REUSE))


def behind(waiting: int, threshold: int = 1) -> bool:
    """Whether the face stage is behind: frames already wait for it while it takes the next."""
    return waiting >= threshold
