"""Is the default obfuscation (the fail-closed mosaic) matchable? Both recognizers, worst view, every size.

    python tools/bench/bench_mosaic.py [--build 40] [--held-out 40] [--sizes 24,32,...] [--json out.json]

Every face that cannot be de-identified (too small, no mesh, lost, an error, occluded) gets the
default mosaic (`blend.obfuscate`, strength 0) without any check, so that mosaic must hold on its
own. Public-domain portraits (`ideud.eval.portraits`: build names and, separately, held-out
names), each scaled so that the face is `size` px, obfuscated as the pipeline draws it (here on
RGB), then compared with the person's own unscaled face by the guard's two recognizers on every
view (models/recognizers.py), aligned on the TRUE FaceMesh points of the face (an attacker who knew
where the eyes were: stronger than finding the face in the mosaic). A case is matched when dlib's
distance is under 0.6 or EdgeFace's cosine over its calibrated balanced threshold.

Prints, per set and size, the matches of each recognizer and the worst numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (puts tests/ on the path)
from portrait_faces import portrait_landmarks, read_rgb  # noqa: E402

from ideud.eval.portraits import build_names, held_out_names, portraits_dir  # noqa: E402
from ideud.models import facemesh as fm  # noqa: E402
from ideud.models.recognizer import THRESHOLD as DLIB_THRESHOLD  # noqa: E402
from ideud.models.recognizers import TwoRecognizers  # noqa: E402

SIZES = (24, 32, 48, 64, 96, 128, 192, 256)


def portrait_faces(names, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rgb, (468, 2) points) of the first n of `names` (spread evenly) where a face is found."""
    from ideud.stream.detect import make_detector

    folder = portraits_dir()
    det, mesh = make_detector("centerface"), fm.FaceMesh()
    stride = max(1, len(names) // max(n, 1))
    spread = list(names[::stride])
    out = []
    for name in spread + [x for x in names if x not in set(spread)]:  # spread first, then any to fill up
        if len(out) == n:
            break
        rgb = read_rgb(folder / name)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is not None:
            out.append((name, rgb, lm[:, :2]))
    mesh.close()
    return out


def scaled(rgb: np.ndarray, pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled so that the face's landmark extent is `size` px, and its points."""
    k = size / float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    img = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    return img, pts * k


def measure(two: TwoRecognizers, faces, sizes, obfuscate, edge_max: float) -> dict:
    """Per size: dlib matches, EdgeFace matches, either, and the worst numbers."""
    res = {}
    for size in sizes:
        dl, ed, either, worst_d, worst_s = 0, 0, 0, 9.0, -1.0
        for _, rgb, lm in faces:
            dref, eref = two.person(rgb, lm)
            img, pts = scaled(rgb, lm, size)
            out = obfuscate(img, np.r_[pts.min(0), pts.max(0)])
            s = float(two.edge_similarity([(out, pts)], eref[None])[0])
            d = two.dlib_distance(out, pts, dref[None])
            dl += d < DLIB_THRESHOLD
            ed += s > edge_max
            either += d < DLIB_THRESHOLD or s > edge_max
            worst_d, worst_s = min(worst_d, d), max(worst_s, s)
        res[size] = {"dlib": int(dl), "edgeface": int(ed), "either": int(either), "n": len(faces),
                     "worst_dlib": round(worst_d, 3), "worst_edgeface": round(worst_s, 3)}
    return res


def main(argv=None) -> int:
    from ideud.stream.guard import POLICIES
    from ideud.stream.guard_views import obfuscated

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", type=int, default=40, help="build portraits (default 40)")
    ap.add_argument("--held-out", type=int, default=40, help="held-out portraits (default 40)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--strength", type=int, default=0, help="mosaic strength (0: the default)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args(argv)
    if portraits_dir() is None:
        print("bench_mosaic: the public-domain portraits were not found", file=sys.stderr)
        return 2
    sizes = [int(s) for s in a.sizes.split(",") if s]
    edge_max = POLICIES["balanced"].edge_max
    two = TwoRecognizers()
    out = {"edge_max": edge_max, "dlib_tau": DLIB_THRESHOLD, "strength": a.strength}
    t0 = time.perf_counter()
    for label, names, n in (("build", build_names(), a.build), ("held_out", held_out_names(), a.held_out)):
        if n <= 0:
            continue
        faces = portrait_faces(names, n)
        res = measure(two, faces, sizes, lambda img, box: obfuscated(img, box, a.strength), edge_max)
        out[label] = res
        total = sum(r["either"] for r in res.values())
        print(f"{label}: {len(faces)} portraits x {len(sizes)} sizes: {total} matched by either recognizer")
        for size, r in res.items():
            print(f"  {size:4d} px  dlib {r['dlib']:2d}  EdgeFace {r['edgeface']:2d}  either {r['either']:2d}"
                  f"   worst dlib {r['worst_dlib']:.3f}  worst EdgeFace {r['worst_edgeface']:.3f}")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
