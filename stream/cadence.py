"""Detection cadence: in a file run the detector runs on every `every`-th frame; between, the
tracker and FaceMesh follow the faces it found.

CenterFace is the largest single cost of a default run on a CPU (about 60 ms a frame on the 2-core
machine at its 448x256 input, which 640x360 and 1280x720 frames both get), and between two finds every
tracked face is found again by FaceMesh anyway: its window is seeded from the track's mesh of the
frame before, and its box is handed back to the tracker as a measurement (stream/landmarks.py). A
frame without detection is handled as one where the detector missed every face: a face FaceMesh
loses there is obfuscated at the track's predicted box ("lost"), as before.

What a frame without detection cannot do is find a face for the first time. A face that appears on
such a frame is found on the next detected frame, at most `every - 1` frames later, and the
look-back (stream/look_back.py) hides it in the held frames before that find: its own
`look_back.FRAMES` for a detector that finds a face late (out of focus, entering the picture), and
`every - 1` more, so that the cadence leaves no more of those frames raw than detection on every
frame did. Only runs that hold frames (`FaceProcessor.frames_held`) may skip: a live stream holds at
most the one frame being restored, and detects every frame (why: stream/degrade.py). `every` is at most MAX_EVERY: each
skipped frame is a frame more held, and a box grown further for the motion it allows.

The detector still runs on every frame with no live track: nothing to follow there, and a face
entering an empty picture is found at once. That includes every scene cut, where the tracks end.
The schedule is the frame's index (`index % every`), so the segments of a batch run detect on the
same frames as a whole run of the file does. Soft finds (heavily blurred faces, stream/soften.py)
of the last detected frame are blurred again in the frames that follow it without detection.
"""
from __future__ import annotations

MAX_EVERY = 3


class DetectCadence:
    """Which frames the detector runs on; see the module docstring."""

    def __init__(self, every: int):
        if not 1 <= int(every) <= MAX_EVERY:
            raise ValueError(f"detect_every must be between 1 and {MAX_EVERY}")
        self.every = int(every)
        self.soft: list = []  # the last detected frame's soft finds, blurred again until the next
        self.skipped = 0  # frames the detector did not run on

    def scheduled(self, index: int) -> bool:
        """Detected whatever the tracks: every frame at 1, else every `every`-th."""
        return index % self.every == 0

    def due(self, index: int, tracking: bool) -> bool:
        if not tracking or self.scheduled(index):
            return True
        self.skipped += 1
        return False
