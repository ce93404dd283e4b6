"""The stream processor's front door: decode -> detect -> track -> landmarks -> identity ->
render -> restore -> privacy review -> blend -> encode.

`deidentify(src, dst, options)` runs a whole video or image file; `FaceProcessor` de-identifies
frames in place (every face, fail closed) for callers with frames of their own (live streams,
batch segments). The pieces live in their own files:

    stream/options.py    Options: every setting of a run
    stream/processor.py  FaceProcessor: the per-frame stages, one FaceJob per face (stream/types.py)
    stream/landmarks.py  the FaceMesh stage and the detector/mesh box relation per track
    stream/runner.py     whole files: decode and encode threads, frames kept in order
"""
from __future__ import annotations

from ideud.stream.errors import InputError, OutputError, UsageError
from ideud.stream.options import Options
from ideud.stream.processor import FaceFault, FaceProcessor, PendingFrame
from ideud.stream.stage_timer import StageTimer
from ideud.stream.runner import check_paths, deidentify

__all__ = ["FaceFault", "FaceProcessor", "InputError", "Options", "OutputError", "PendingFrame", "StageTimer",
           "UsageError", "check_paths", "deidentify"]
