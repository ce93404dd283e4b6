"""Build the face-appearance prior (models/data/face_prior.npz) from the BUILD portraits only.

Developer tool: `python tools/build/build_face_prior.py [--out OUT.npz] [--limit N] [--cache LM.npz]`.

Steps (models/face_prior.py says what each array is):
1. FaceMesh on every build portrait (`ideud.eval.portraits.build_names()`; the held-out ones are
   never read). Portraits where no face or no mesh is found are left out.
2. Each face onto the shape-free canvas; its glasses score. Glasses wearers (score above
   face_prior.GLASSES_SCORE) are left out of the basis: a basis that has seen frames draws ghost ones.
3. log reflectance (shading removed), PCA of K components, whitened; the first DONORS
   portraits (in name-hash order) give the fine-detail residual bank.

Reproducible: same portraits and code -> same arrays -> same content hash (printed and stored
in the file; the zip entries carry fixed dates, so the file's own bytes repeat too).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models import face_prior as fp

DATA = Path(__file__).resolve().parents[2] / "models" / "data"
COMPONENTS = 120
DONORS = 48


class Landmarker:
    """468 FaceMesh landmarks of the biggest face of an RGB image (detector box, ROI refined twice).

    `dims` 2 gives (x, y) pixels; 3 adds FaceMesh's depth (same pixel scale) for the shape model.
    """

    def __init__(self, dims: int = 2):
        self.dims = dims
        from ideud.models import facemesh as fm
        from ideud.stream.detect import make_detector

        self.fm = fm
        self.detector = make_detector("auto")
        self.mesh = fm.FaceMesh()

    def __call__(self, rgb: np.ndarray) -> Optional[np.ndarray]:
        fm = self.fm
        faces = [f for f in self.detector.detect(rgb, 1.0) if not f.soft]
        if not faces:
            return None
        f = max(faces, key=lambda f: f.size)
        kp = f.keypoints if f.keypoints is not None and len(f.keypoints) >= 2 else (None, None)
        lm = self.mesh(rgb, fm.roi_from_keypoints(f.box, kp[0], kp[1]))
        for _ in range(2):
            if lm is None:
                return None
            lm = self.mesh(rgb, fm.roi_from_landmarks(lm))
        return None if lm is None else lm[:, : self.dims].astype(np.float32)

    def close(self) -> None:
        self.mesh.close()


def portrait_landmarks(paths: Sequence[Path], cache: Optional[Path] = None, dims: int = 2) -> dict:
    """name -> (468, dims) landmarks of the biggest face (dims 3: depth in the same scale), for the
    portraits where FaceMesh finds one."""
    known: dict = {}
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            known = {k: z[k] for k in z.files}
    todo = [p for p in paths if p.name not in known]
    if todo:
        marker = Landmarker(dims=dims)
        try:
            for p in todo:
                img = cv2.imread(str(p))
                lm = None if img is None else marker(np.ascontiguousarray(img[:, :, ::-1]))
                # an empty array marks "no face": the portrait is left out, and not retried
                known[p.name] = np.zeros((0, dims), np.float32) if lm is None else lm
        finally:
            marker.close()
        if cache is not None:
            np.savez(cache, **known)
    return {p.name: known[p.name] for p in paths if len(known[p.name])}


def _order(name: str) -> bytes:
    """A fixed order that does not follow the alphabet (the donors are a spread of people)."""
    return hashlib.sha256(name.encode()).digest()


def build_portraits(limit: Optional[int] = None) -> tuple[Path, list[str]]:
    """The portraits' folder and the build split's names in the builds' fixed order (first `limit`)."""
    from ideud.eval.portraits import build_names, portraits_dir

    folder = portraits_dir()
    if folder is None:
        raise FileNotFoundError("portraits not found (set IDEUD_PORTRAITS)")
    names = sorted(build_names(folder), key=_order)
    return folder, names[:limit] if limit else names


def build(out: Path, limit: Optional[int] = None, cache: Optional[Path] = None,
          components: int = COMPONENTS, donors: int = DONORS, log=print) -> tuple[str, dict]:
    from ideud.eval.portraits import SOURCE

    folder, names = build_portraits(limit)
    marks = portrait_landmarks([folder / n for n in names], cache)
    rows, kept, glasses = [], [], 0
    for n in names:
        if n not in marks:
            continue
        rgb = np.ascontiguousarray(cv2.imread(str(folder / n))[:, :, ::-1])
        if fp.glasses_score(rgb, marks[n]) > fp.GLASSES_SCORE:
            glasses += 1
            continue
        rows.append(fp.canvas_reflectance(rgb, marks[n]))
        kept.append(n)
    if len(rows) < fp.MIN_DONORS + 2:
        raise RuntimeError(f"only {len(rows)} usable portraits")
    arrays = fp.fit(np.stack(rows), components, donors)
    stats = {"portraits": len(names), "no_mesh": len(names) - len(marks), "glasses": glasses,
             "basis": len(kept), "components": int(len(arrays["sd"])), "donors": int(len(arrays["donor_codes"]))}
    meta = {"source": SOURCE,
            "canvas": np.array(fp.CANVAS), "sigma_low": fp.SIGMA_LOW, "sigma_fine": fp.SIGMA_FINE}
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = fp.save(arrays, out, meta)
    log(f"face prior: {stats}; content hash {digest[:16]}; {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return digest, stats


def model_main(argv, doc: str, prog: str, build_fn, out: Path, components: int,
               choices: Optional[dict] = None) -> int:
    """The command line of a model built from the build portraits (this one and build_face_shape.py);
    `choices`: {option: (default, other, ...)}, each passed to `build_fn` by name."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--limit", type=int, default=None, help="only the first N build portraits (tests)")
    ap.add_argument("--cache", type=Path, default=None, help="landmark cache (.npz) to reuse between runs")
    ap.add_argument("--components", type=int, default=components)
    for name, values in (choices or {}).items():
        ap.add_argument(f"--{name}", choices=values, default=values[0])
    args = ap.parse_args(argv)
    try:
        build_fn(args.out, args.limit, args.cache, args.components,
                 **{name: getattr(args, name) for name in (choices or {})})
    except (FileNotFoundError, RuntimeError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return model_main(argv, __doc__, "build_face_prior", build, DATA / "face_prior.npz", COMPONENTS)


if __name__ == "__main__":
    sys.exit(main())
