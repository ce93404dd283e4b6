"""How much of a person the surroundings of the face give away, and what blurring them takes away.

    python tools/bench/bench_surroundings.py [--split build|held-out] [--limit 100] [--blur 0.05,0.1,0.2]

The best any Step I that keeps the surroundings (hair, ears, jaw line, background: the method's
visual-similarity masks) can do is a real other person's face inside the face oval. So each portrait
gets the face of another portrait of the split (index + 7) warped onto its FaceMesh points, its
colour matched to the oval's, feathered into the oval, and then its surroundings drawn as the guard's
steps draw them (`blend.redraw_surroundings`): as they are, blurred at each `--blur` sigma (share of
the face's size, `blend.SURROUNDINGS_BLUR`), filled flat. Per variant: how many of these swaps dlib
(under 0.6), EdgeFace-xs (over its balanced limit) and EdgeFace-xxs (over its build p99; torch, never
run by the guard) still place with the portrait's own person, and how many EdgeFace-xs places with
the donor (the swap works). Outputs are measured as the face-prior bench measures them
(bench_face_prior.py: dlib on the biggest face, EdgeFace on the output landmarked on its own).
Tune on --split build; held-out is for measuring.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from bench_face_prior import Embedder, SecondOpinion, read_rgb

DONOR_STEP = 7  # the donor of portrait i is portrait i + DONOR_STEP of the same split (mod the count)


def swapped(person: np.ndarray, person_lm: np.ndarray, donor: np.ndarray, donor_lm: np.ndarray) -> np.ndarray:
    """The donor's face inside the person's face oval, at the person's points, in the oval's colours."""
    from ideud.models import face_bank as fbk
    from ideud.models import face_prior as fp

    fw = fp.face_width(person_lm)
    oval = fp.face_region(person_lm, person.shape[:2], fw)
    inside = oval > 0.5
    face = fbk.MeshWarp(person_lm, person.shape[:2], step=1).sample(donor.astype(np.float32), donor_lm)
    own = person.astype(np.float32)
    face = (face - face[inside].mean(0)) / (face[inside].std(0) + 1e-3) * own[inside].std(0) + own[inside].mean(0)
    a = cv2.GaussianBlur(oval.astype(np.float32), (0, 0), max(1.0, 0.02 * fw))[..., None]
    return np.clip(own * (1 - a) + face * a + 0.5, 0, 255).astype(np.uint8)


def redrawn(rgb: np.ndarray, lm: np.ndarray, mode: Optional[str], blur: float) -> np.ndarray:
    """`rgb` with the surroundings of the face at `lm` drawn as a guard step draws them (the guard's own copy)."""
    from ideud.stream import blend as bl
    from ideud.stream.guard_views import surroundings_redrawn
    from ideud.stream.types import Crop

    if not mode:
        return rgb
    whole = Crop(0, 0, rgb.shape[1], rgb.shape[0])
    old, bl.SURROUNDINGS_BLUR = bl.SURROUNDINGS_BLUR, blur
    try:
        return surroundings_redrawn(rgb, whole, whole, lm, mode)
    finally:
        bl.SURROUNDINGS_BLUR = old


def _count(values: list, over: Optional[float] = None, under: Optional[float] = None) -> dict:
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    hit = (v > over) if over is not None else (v < under)
    return {"measured": int(np.isfinite(v).sum()), "mean": round(float(np.nanmean(v)), 3) if np.isfinite(v).any() else None,
            "same_person": int(np.nansum(hit))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ideud.eval.portraits import build_names, held_out_names, portraits_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["build", "held-out"], default="build")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--blur", default="0.05,0.1,0.2", help="blur sigmas to try (share of the face's size)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None, help="PNG: the first 4 portraits, every variant")
    a = ap.parse_args(argv)
    folder = portraits_dir()
    names = (build_names(folder) if a.split == "build" else held_out_names(folder))[:a.limit]
    emb = Embedder()
    xxs = SecondOpinion(emb.marker, folder)
    variants = [("as they are", None, 0.0)] + [(f"blurred {b}", "blur", float(b)) for b in a.blur.split(",")] \
        + [("filled flat", "fill", 0.0)]
    rows = {v[0]: {"dlib": [], "edgeface": [], "xxs": [], "edgeface_to_donor": []} for v in variants}
    images = [read_rgb(folder / n) for n in names]
    marks = [emb.marker(im) for im in images]
    sheet = []
    for i, (person, lm) in enumerate(zip(images, marks)):
        j = (i + DONOR_STEP) % len(images)
        if lm is None or marks[j] is None:
            continue
        swap = swapped(person, lm[:, :2], images[j], marks[j][:, :2])
        e0, _ = emb.dlib(person)
        x0 = xxs.embed_at(person, lm)
        tiles = [person]
        for label, mode, blur in variants:
            out = redrawn(swap, lm[:, :2], mode, blur)
            e1, _ = emb.dlib(out, emb.box(person))
            olm = emb.marker(out)
            r = rows[label]
            r["dlib"].append(None if e0 is None or e1 is None else float(np.linalg.norm(e0 - e1)))
            r["edgeface"].append(emb.edge_cos(person, out))
            r["xxs"].append(None if olm is None else float(xxs.embed_at(out, olm) @ x0))
            r["edgeface_to_donor"].append(emb.edge_cos(images[j], out))
            tiles.append(out)
        if len(sheet) < 4:
            sheet.append(np.hstack([cv2.resize(t, (200, int(200 * t.shape[0] / t.shape[1]))) for t in tiles]))
    edge_max = emb.edge_threshold
    result = {"split": a.split, "portraits": len(names), "donor": f"portrait i + {DONOR_STEP} of the split",
              "edgeface_limit": edge_max, "xxs_limit": xxs.threshold, "variants": {
                  label: {"dlib_under_0.6": _count(r["dlib"], under=0.6),
                          "edgeface_over_limit": _count(r["edgeface"], over=edge_max),
                          "xxs_over_limit": _count(r["xxs"], over=xxs.threshold),
                          "donor_edgeface_over_limit": _count(r["edgeface_to_donor"], over=edge_max)}
                  for label, r in rows.items()}}
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    if a.sheet and sheet:
        h = min(s.shape[0] for s in sheet)
        cv2.imwrite(str(a.sheet), np.vstack([s[:h] for s in sheet])[:, :, ::-1])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
