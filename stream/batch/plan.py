"""Probe a file's packets (no decoding) and cut it into segments at keyframes, each with a pre-roll."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import numpy as np

from ideud.stream.decode import VideoSource, is_image
from ideud.stream.errors import InputError


class SegmentError(RuntimeError):
    """The file cannot be processed in segments (frames do not map to pts); it is redone whole."""



@dataclass
class Segment:
    index: int
    pre: int  # first frame decoded and analysed (a keyframe; the pre-roll starts here)
    start: int  # first frame written by this segment (a keyframe)
    end: int  # one past the last frame written
    pts: list  # pts of frames pre..end-1, presentation order
    next_pre: Optional[int] = None  # where the next segment's pre-roll starts (tail zone for stitching)

    @property
    def written(self) -> int:
        return self.end - self.start

    @property
    def window(self) -> int:
        return self.end - self.pre


@dataclass
class Plan:
    frames: int
    image: bool = False
    segments: list = field(default_factory=list)  # empty: one whole-file task
    reason: str = ""  # why the file is not split

    @property
    def work_frames(self) -> int:
        """Frames analysed over all passes (what the progress bar counts)."""
        if not self.segments:
            return self.frames
        return sum(2 * s.window for s in self.segments)


def probe(src: str) -> tuple[list[int], list[int], Optional[Fraction]]:
    """Sorted frame pts and keyframe pts of the first video stream, from the packets alone."""
    source = VideoSource(src, audio=False)
    pts, keys = [], []
    ok = True
    try:
        for packet in source.container.demux(source.stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue  # (an edit list's discarded packets are never shown)
            if packet.pts is None:
                ok = False
                continue
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                keys.append(int(packet.pts))
        tb = source.stream.time_base
    except Exception:  # a broken container: the whole-file path copes with what is decodable
        ok = False
        tb = None
    finally:
        source.close()
    if not ok or len(set(pts)) != len(pts):
        return [], [], None
    return sorted(pts), sorted(keys), tb


def plan_segments(pts: list[int], keyframes: list[int], time_base: Fraction, segment_seconds: float,
                  overlap_seconds: float) -> list[Segment]:
    """Cut at keyframes every `segment_seconds` or more; each segment but the first gets a pre-roll.

    A tail shorter than half a segment stays with the segment before it. Returns [] when the file
    is one segment.
    """
    n = len(pts)
    if n < 2 or not keyframes or segment_seconds <= 0:
        return []
    t = np.asarray(pts, float) * float(time_base)
    index = {p: i for i, p in enumerate(pts)}
    kf = sorted(index[p] for p in keyframes if p in index)
    if not kf or kf[0] != 0:
        return []
    end_t = t[-1] + (t[-1] - t[-2])
    bounds = [0]
    for k in kf[1:]:
        if t[k] - t[bounds[-1]] >= segment_seconds - 1e-9 and end_t - t[k] >= segment_seconds / 2 - 1e-9:
            bounds.append(k)
    if len(bounds) < 2:
        return []
    segs = []
    for j, b in enumerate(bounds):
        end = bounds[j + 1] if j + 1 < len(bounds) else n
        if j == 0:
            pre = 0
        else:
            earlier = [k for k in kf if k < b and t[k] <= t[b] - overlap_seconds + 1e-9]
            pre = max(bounds[j - 1], earlier[-1] if earlier else bounds[j - 1])
            if overlap_seconds <= 0:
                pre = b
        segs.append(Segment(index=j, pre=pre, start=b, end=end, pts=list(pts[pre:end])))
    for j in range(len(segs) - 1):
        segs[j].next_pre = segs[j + 1].pre
    return segs


def make_plan(src: str, segment_seconds: float, overlap_seconds: float) -> Plan:
    if is_image(src):
        if not os.path.exists(src):
            raise InputError(f"{src}: no such file")
        return Plan(frames=1, image=True, reason="image")
    pts, keys, tb = probe(src)
    if not pts:
        # frames without pts or a broken container: count by the stream header, process whole
        with VideoSource(src, audio=False) as s:
            return Plan(frames=s.info.frames, reason="no usable packet timestamps")
    segs = plan_segments(pts, keys, tb, segment_seconds, overlap_seconds)
    return Plan(frames=len(pts), segments=segs, reason="" if segs else "short")

