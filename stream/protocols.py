"""What the pipeline asks of a face detector and of a restorer: everything it uses, nothing probed.

Implementations: detectors in stream/detect.py (CenterFace, BlazeFace) and the batch runner's
recording/replaying detectors; restorers in stream/restore.py (none, classic),
stream/restore_bank.py, stream/restore_gan.py, and the restore worker (stream/restore_worker.py),
which is itself a restorer around another one.
"""
from __future__ import annotations

from typing import Protocol, Sequence, Union, runtime_checkable

import numpy as np

from ideud.stream.types import Face, RestoreItem

Scale = Union[float, Sequence[float]]


@runtime_checkable
class Detector(Protocol):
    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """Size (w, h) a full frame is scaled to before `detect` (the pipeline's swscale copy)."""
        ...

    def detect(self, image_rgb: np.ndarray, scale: Scale = 1.0) -> list[Face]:
        """Faces in `image_rgb`, coordinates multiplied by `scale` ((sx, sy) or a number) to give
        full-frame pixels; best score first."""
        ...


@runtime_checkable
class Restorer(Protocol):
    name: str  # in the report
    # runs on a GPU: the pipeline then runs it on its own thread, overlapped with Step I
    on_gpu: bool
    max_batch: int  # most faces worth handing over in one `restore` call

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        """One RGB crop per item, each the size of `item.image` (pasted back through `item.mask`)."""
        ...

    def warmup(self) -> None:
        """Prepare what would otherwise stall the first faces (a GPU engine's graphs); may do nothing."""
        ...

    def forget(self, track_id: int) -> None:
        """A track ended: whatever the restorer keeps for it goes (a long stream meets tracks
        without end); may do nothing."""
        ...
