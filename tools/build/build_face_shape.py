"""Build the 3D face-shape model (models/data/face_shape.npz) from the BUILD portraits only.

Developer tool: `python tools/build/build_face_shape.py [--out OUT.npz] [--limit N] [--cache LM3.npz]
[--basis portraits|ict]`.

1. FaceMesh (with depth) on every build portrait (`ideud.eval.portraits.build_names()`; the held-out
   ones are never read). Portraits without a face or a mesh are left out.
2. Each mesh similarity-aligned to the canonical face (models/meshhead.to_canonical: millimetres,
   pose removed). Faces turned or tilted beyond the identity fit's limits, or with the mouth open,
   are left out: the modes are to hold who a face is, not its pose or expression.
3. PCA of the aligned shapes (models/face_shape.fit): the mean face, the mouth's opening direction
   and the identity modes (shipped).
4. `--basis ict`: the identity modes from ICT-FaceKit's 3D scans instead (tools/build/data/
   ict_identity_468.npz, registered by tools/build/register_ict_facekit.py; models/face_shape.fit_ict):
   faces drawn with ICT's 100 modes around the portraits' mean, aligned like the portraits, then PCA.
   Measured against the shipped modes in docs/measured.md (twenty-fifth session): fewer faces
   obfuscated by the guard, but more face-frames of video matched by recognizers, so not shipped.

Reproducible: same portraits and code -> same arrays -> same content hash (printed, stored in the file).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling build scripts
from build_face_prior import build_portraits, model_main, portrait_landmarks  # noqa: E402
from register_ict_facekit import load_modes  # noqa: E402

from ideud.models import face_shape as fsh  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "models" / "data"
BASES = ("portraits", "ict")  # the first is the default


def build(out: Path, limit: Optional[int] = None, cache: Optional[Path] = None,
          components: int = fsh.COMPONENTS, log=print, basis: str = "portraits") -> tuple[str, dict]:
    from ideud.eval.portraits import SOURCE

    folder, names = build_portraits(limit)
    meshes = portrait_landmarks([folder / n for n in names], cache, dims=3)
    shapes, skipped = [], 0
    for n in names:
        if n not in meshes:
            continue
        shape = fsh.neutral_shape(meshes[n].astype(np.float64))
        if shape is None:
            skipped += 1
            continue
        shapes.append(shape)
    if len(shapes) < components + 2:
        raise RuntimeError(f"only {len(shapes)} usable portraits for {components} components")
    arrays = fsh.fit(np.stack(shapes), components)
    meta = {"source": SOURCE}
    if basis == "ict":
        arrays.update(fsh.fit_ict(arrays["mean"], load_modes(), components))
        meta["modes"] = "ICT-FaceKit (github.com/ICT-VGL/ICT-FaceKit, MIT licence) identity modes"
    stats = {"portraits": len(names), "no_mesh": len(names) - len(meshes), "turned_or_mouth_open": skipped,
             "basis": len(shapes), "modes": basis, "components": int(len(arrays["sd"])),
             "variance_kept": round(float(arrays["variance_kept"]), 4)}
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = fsh.save(arrays, out, meta)
    log(f"face shape: {stats}; content hash {digest[:16]}; {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return digest, stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    return model_main(argv, __doc__, "build_face_shape", build, DATA / "face_shape.npz", fsh.COMPONENTS,
                      {"basis": BASES})


if __name__ == "__main__":
    sys.exit(main())
