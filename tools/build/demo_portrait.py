"""Pick the portrait `ideud-video demo` animates and copy it to models/data/demo_portrait.jpg.

    python tools/build/demo_portrait.py [--out models/data/demo_portrait.jpg]

The demo must show the product at its default settings on a face that is nobody's donor, so the
portrait comes from the held-out part of the public-domain portraits
(`ideud.eval.portraits.held_out_names()`, never used to build anything): the first one, in name
order, in which the detector finds exactly one face and whose file is small enough to ship. The
choice does not look at how well de-identification works on it. Record the name in
models/data/NOTICE.md.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

from ideud.eval.portraits import held_out_names, portraits_dir
from ideud.stream.detect import make_detector

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 50_000


def pick(folder: Path) -> Path:
    det = make_detector("auto")
    for name in held_out_names(folder):
        path = folder / name
        if path.stat().st_size > MAX_BYTES:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if len([f for f in det.detect(rgb) if not f.soft]) == 1:
            return path
    raise SystemExit("no held-out portrait with exactly one detected face")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "models" / "data" / "demo_portrait.jpg")
    a = ap.parse_args(argv)
    folder = portraits_dir()
    if folder is None:
        raise SystemExit("the public-domain portraits are not here (../shared/data/pd-portraits or $IDEUD_PORTRAITS)")
    src = pick(folder)
    shutil.copyfile(src, a.out)
    print(f"{src.name} -> {a.out} ({src.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
