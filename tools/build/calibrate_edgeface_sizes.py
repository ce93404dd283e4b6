"""EdgeFace's "same person" threshold as a function of the face's size in the frame (a measurement).

    python tools/build/calibrate_edgeface_sizes.py [--limit N] [--dlib] [--cache NPZ] [--json OUT]

The question: the calibrated thresholds (models/data/edgeface_calibration.json) are percentiles of
different-person pairs among full-resolution portraits. The privacy guard compares the output face
with the person at the size both have in the frame; when both are small and equally blurry, do
different people look more alike to EdgeFace, so that a full-resolution percentile asks a small
face for more than the recognizer can tell?

What it measures (build portraits only, `ideud.eval.portraits.build_names`; never the held-out):
each portrait is downscaled (INTER_AREA, as a camera or a scaler would) so that its face is W px
(the guard's `_size`: the larger side of the FaceMesh points' extent), its FaceMesh points (found
once at full resolution) scaled with it, and embedded as the guard embeds a face of that size
(models/recognizers.edge_views: the 112x112 ArcFace chip warped from the small image).

    impostor          W vs W, different people (every pair)
    impostor_cross    W vs full resolution, different people
    genuine_cross     W vs the same photo at full resolution
    genuine_same      W vs W of the same photo, another resampling phase (0.5 px) and crop jitter
                      (template -5 % and shifted 2 px, the guard's own jitter view)

and the size-aware thresholds such a measurement would give: edge_max(W) = max(full-resolution
threshold, impostor percentile at W) (balanced p99, strict p95), non-increasing in W (a running
minimum from the small end). Same inputs, same output: no randomness, onnxruntime single-threaded.

Measured 2026-12-02 (699 build portraits, EdgeFace-xs; balanced p99 / strict p95):

    W px                16     20     24     32     40     48+    full
    impostor W vs W     .277   .252   .236   .221   .215   .213   .214  (p99)
    impostor W vs full  .201   .205   .206   .210   .211   .213   .214  (p99)
    genuine W vs full   .322   .482   .594   .804   .900   .947   1     (p1)
    genuine W vs W      .300   .392   .460   .674   .794   .846   .892  (p1)

The same-size impostor percentile does rise under ~40 px (the hypothesis holds), but the
cross-size one (a small output against a good photo of the person) falls, and a guard using
edge_max(W) let outputs through that a recognizer it never runs (EdgeFace-xxs, held-out
portraits, tools/bench/bench_small_faces.py) matched more often, mostly against the
full-resolution photo. So the guard does not use these thresholds; this stays a measurement.
dlib (--dlib, reported only): at 16-24 px its genuine and impostor distances overlap (genuine W vs
W p95 0.60 at 16 px, impostor p1 0.48): tau 0.6 cannot tell people apart there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ideud.models import edgeface as ef
from ideud.models.recognizers import edge_views

SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 96, 112)  # face px (the guard's _size); "full" is added
PERCENTILES = {"balanced": 99.0, "strict": 95.0}
PAD = 1.0  # the region kept around the face before downscaling (face extents each side)
RULE = ("per face size W (px, the larger side of the FaceMesh points' extent): max(full-resolution threshold, "
        "impostor percentile of W-vs-W pairs) (balanced p99, strict p95), non-increasing in W")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from portrait_faces import portrait_landmarks, read_rgb  # noqa: E402


def face_size(lm: np.ndarray) -> float:
    """The guard's face size (stream/guard_policy.face_size): the larger side of the points' extent."""
    return float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]), 1.0))


def portraits(limit: int | None, cache: Path | None) -> list[tuple[str, np.ndarray]]:
    """(name, 468x2 FaceMesh points at full resolution) of the build portraits with a face."""
    from ideud.eval.portraits import build_names, portraits_dir
    from ideud.models import facemesh as fm
    from ideud.stream.detect import make_detector

    folder = portraits_dir()
    if folder is None:
        raise SystemExit("portraits not found (set IDEUD_PORTRAITS)")
    names = build_names(folder)[:limit] if limit else build_names(folder)
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        have = dict(zip(z["names"].tolist(), z["points"]))
        if all(n in have or n in set(z["missing"].tolist()) for n in names):
            return [(n, have[n]) for n in names if n in have]
    det, mesh = make_detector("centerface"), fm.FaceMesh()
    out, missing = [], []
    for n in names:
        rgb = read_rgb(folder / n)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is None:
            missing.append(n)
        else:
            out.append((n, lm[:, :2].astype(np.float64)))
    mesh.close()
    if cache is not None:
        np.savez(cache, names=np.array([n for n, _ in out]), points=np.stack([p for _, p in out]),
                 missing=np.array(missing, dtype=str))
    return out


def shrink(rgb: np.ndarray, lm: np.ndarray, w: float | None, phase: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The face region downscaled so the face is `w` px (None: as it is), and its points.
    `phase`: the region's origin moved by that many output pixels before resampling (another
    sampling grid, as the same face one frame later)."""
    size = face_size(lm)
    lo, hi = lm.min(0) - PAD * size, lm.max(0) + PAD * size
    x0, y0 = np.maximum(np.floor(lo).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hi).astype(int), [rgb.shape[1], rgb.shape[0]])
    region, pts = rgb[y0:y1, x0:x1], lm - [x0, y0]
    if w is None or w >= size:
        return np.ascontiguousarray(region), pts
    f = w / size
    if phase:
        shift = phase / f  # in input pixels
        m = np.float64([[1, 0, -shift], [0, 1, -shift]])
        region = cv2.warpAffine(region, m, (region.shape[1], region.shape[0]), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)
        pts = pts + shift
    out_w, out_h = max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f))
    small = cv2.resize(region, (out_w, out_h), interpolation=cv2.INTER_AREA)
    sx, sy = out_w / region.shape[1], out_h / region.shape[0]
    return small, (pts + 0.5) * [sx, sy] - 0.5


def jitter_chip(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The guard's crop-jitter view (template -5 %, shifted 2 px)."""
    from ideud.models.face_align import five_points_from_facemesh

    return ef.align(rgb, five_points_from_facemesh(lm), scale=0.95, shift=(2.0, -2.0))


def stats(values, higher_is_same: bool = True) -> dict:
    v = np.asarray(values, np.float64)
    q = (lambda p: round(float(np.percentile(v, p)), 4))
    if higher_is_same:
        return {"n": int(v.size), "mean": round(float(v.mean()), 4), "p1": q(1), "p5": q(5), "p50": q(50),
                "p95": q(95), "p99": q(99), "max": round(float(v.max()), 4)}
    return {"n": int(v.size), "mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
            "p1": q(1), "p5": q(5), "p50": q(50), "p95": q(95), "p99": q(99)}


def embed_all(model, chips: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([model.embed_chips(np.stack(chips[i:i + 64])) for i in range(0, len(chips), 64)])


def measure(faces, sizes, with_dlib: bool, model_path: Path | None = None) -> dict:
    """Per W (and "full"): EdgeFace (and dlib) statistics of the four pair kinds."""
    from ideud.eval.portraits import portraits_dir

    folder = portraits_dir()
    model = ef.EdgeFace(model_path)
    rec = dlib_embed = None
    if with_dlib:
        from ideud.models.dlib_resnet_onnx import dlib_embedder
        from ideud.models.recognizer import default_recognizer
        from ideud.models.recognizers import dlib_views
        rec = default_recognizer()
        dlib_embed = dlib_embedder(rec)
    keys = [None, *sizes]
    chips = {k: [] for k in keys}
    jit = {k: [] for k in keys}
    dchips = {k: [] for k in keys}
    djit = {k: [] for k in keys}
    for name, lm in faces:
        rgb = read_rgb(folder / name)
        for k in keys:
            img, pts = shrink(rgb, lm, k)
            chips[k].append(edge_views(img, pts, full=False)[0])
            img2, pts2 = shrink(rgb, lm, k, phase=0.5)
            jit[k].append(jitter_chip(img2, pts2))
            if with_dlib:
                dchips[k].append(dlib_views(rec, img, pts, full=False)[0])
                djit[k].append(dlib_views(rec, img2, pts2, full=False)[0])  # another phase, same template
    n = len(faces)
    iu = np.triu_indices(n, 1)
    off = ~np.eye(n, dtype=bool)
    e = {k: embed_all(model, chips[k]) for k in keys}
    ej = {k: embed_all(model, jit[k]) for k in keys}
    d = dj = None
    if with_dlib:
        d = {k: np.concatenate([dlib_embed(dchips[k][i:i + 32]) for i in range(0, n, 32)]).astype(np.float64)
             for k in keys}
        dj = {k: np.concatenate([dlib_embed(djit[k][i:i + 32]) for i in range(0, n, 32)]).astype(np.float64)
              for k in keys}

    def dist(a, b):
        return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0))

    out = {}
    full = e[None]
    for k in keys:
        row = {"edgeface": {"impostor": stats((e[k] @ e[k].T)[iu]),
                            "impostor_cross": stats((e[k] @ full.T)[off]),
                            "genuine_cross": stats(np.einsum("nd,nd->n", e[k], full)),
                            "genuine_same": stats(np.einsum("nd,nd->n", e[k], ej[k]))}}
        if with_dlib:
            row["dlib"] = {"impostor": stats(dist(d[k], d[k])[iu], False),
                           "impostor_cross": stats(dist(d[k], d[None])[off], False),
                           "genuine_cross": stats(np.linalg.norm(d[k] - d[None], axis=1), False),
                           "genuine_same": stats(np.linalg.norm(d[k] - dj[k], axis=1), False)}
        out["full" if k is None else str(k)] = row
    return out


def thresholds_by_size(table: dict, sizes, full_thresholds: dict) -> dict:
    """Per W: max(full-resolution threshold, impostor percentile at W), non-increasing in W (running
    minimum from the smallest W: a bigger face is never allowed more than a smaller one)."""
    out = {str(w): {} for w in sizes}
    for level, p in PERCENTILES.items():
        key = "p99" if p == 99.0 else "p95"
        run = np.inf
        for w in sorted(sizes):
            run = min(run, table[str(w)]["edgeface"]["impostor"][key])
            out[str(w)][level] = round(max(float(full_thresholds[level]), float(run)), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="the first N build portraits (quick runs)")
    ap.add_argument("--dlib", action="store_true", help="also dlib's distances (reported, not used)")
    ap.add_argument("--cache", type=Path, default=None, help="keep the portraits' FaceMesh points here")
    ap.add_argument("--model", type=Path, default=ef.ONNX_PATH, help="the EdgeFace ONNX to measure")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the table (the size-aware thresholds and every statistic) here")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    faces = portraits(a.limit, a.cache)
    print(f"{len(faces)} build portraits with a face ({time.perf_counter() - t:.0f} s)", flush=True)
    table = measure(faces, SIZES, a.dlib, a.model)
    print(f"measured in {time.perf_counter() - t:.0f} s", flush=True)
    for k, row in table.items():
        e = row["edgeface"]
        line = (f"W={k:>4}  EdgeFace impostor p95 {e['impostor']['p95']:.3f} p99 {e['impostor']['p99']:.3f} | "
                f"cross p95 {e['impostor_cross']['p95']:.3f} p99 {e['impostor_cross']['p99']:.3f} | "
                f"genuine cross p1 {e['genuine_cross']['p1']:.3f} p5 {e['genuine_cross']['p5']:.3f} | "
                f"genuine same p1 {e['genuine_same']['p1']:.3f} p5 {e['genuine_same']['p5']:.3f}")
        if "dlib" in row:
            dl = row["dlib"]
            line += (f"\n        dlib impostor p1 {dl['impostor']['p1']:.3f} p5 {dl['impostor']['p5']:.3f} | cross p1 "
                     f"{dl['impostor_cross']['p1']:.3f} | genuine cross p95 {dl['genuine_cross']['p95']:.3f} p99 "
                     f"{dl['genuine_cross']['p99']:.3f} | genuine same p95 {dl['genuine_same']['p95']:.3f} p99 "
                     f"{dl['genuine_same']['p99']:.3f}")
        print(line, flush=True)
    by = thresholds_by_size(table, SIZES, ef.calibration()["thresholds"])
    print("edge_max(W):", json.dumps(by))
    if a.json:
        a.json.write_text(json.dumps({"rule": RULE, "portraits": len(faces), "split": "build_names",
                                      "model": a.model.name, "thresholds": by, "by_face_px": table}, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
