"""Test media, made at test time from the public-domain astronaut portrait."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ideud.tools.demo import astronaut, background, moving_faces, portrait, write_clip  # noqa: F401

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACES_DIR = SHARED / "testdata" / "faces"


def read_frames(path, fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(video=0)]


def read_planes(path) -> list[list[np.ndarray]]:
    """Every frame's raw planes (no colour conversion)."""
    from ideud.stream.decode import planes_of

    with av.open(str(path)) as c:
        return [planes_of(f) for f in c.decode(video=0)]


def frame_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]
