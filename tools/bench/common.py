"""What the benchmarks share with the tests: the synthetic astronaut clips (tests/clips.py) and the
annotated face images with their detector scoring (tests/face_dataset.py).

The benchmarks run from a checkout (`python tools/bench/NAME.py`), never from the wheel, so the
test helpers are read from the checkout's tests/ folder rather than copied here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

__all__ = ["REPO", "astronaut", "background", "moving_faces", "portrait", "write_clip", "IOU", "Annotated",
           "annotated_boxes", "apply_box_correction", "detect_dataset", "load_imglab", "match", "paste_on_canvas",
           "read_rgb", "run_detector", "score", "emit_json", "save_json", "use_shape_model"]

from clips import astronaut, background, moving_faces, portrait, write_clip  # noqa: E402,F401
from face_dataset import (  # noqa: E402,F401
    IOU, Annotated, annotated_boxes, apply_box_correction, detect_dataset, load_imglab, match, paste_on_canvas,
    read_rgb, run_detector, score,
)


def save_json(result: dict, path=None) -> int:
    """Write a benchmark's result as JSON to `path` if given; the exit status 0."""
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def emit_json(result: dict, path=None) -> int:
    """Print a benchmark's result as JSON and write it to `path` if given; the exit status 0."""
    print(json.dumps(result, indent=2))
    return save_json(result, path)


def use_shape_model(path) -> None:
    """Run the identity stage of this process on another face-shape model (an .npz written by
    tools/build/build_face_shape.py, e.g. `--basis ict`): a benchmark's way to measure an alternative
    on the product path without shipping it (the pipeline in this process; --processes 1)."""
    from ideud.models import face_shape as fsh

    model = fsh.load(path)
    fsh.default_shape.cache_clear()
    fsh.default_shape = lambda: model
