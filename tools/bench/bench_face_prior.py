"""Measure the face-prior restorer (and the bank restorer) on the held-out portraits.

`python tools/bench/bench_face_prior.py [--limit N] [--start I] [--out DIR] [--sheet PNG]
[--configs prior,bank] [--privacy off|balanced|strict] [--no-inversion] [--second-opinion]
[--split held-out|build] [--shape FACE_SHAPE.npz]`
(~20 min for all 100 and three configs on 2 cores)

Every held-out portrait (`ideud.eval.portraits.held_out_names()`: none of them built anything)
goes through the real pipeline (`deidentify`, privacy guard off unless --privacy, the portrait's
index as seed so each person is a different track seed). Measured, with dlib's ResNet (models/recognizer.py):

- forward: distance original <-> output (mean; count under 0.6); the output detected at all;
- pairs: distance between two different people's outputs (portrait i and i+1), > 0.6 wanted;
- inversion (prior configs), each counted as matches (< 0.6) to the original:
  * second pass: the tool (another seed) run on its own output;
  * best inverse: the output's appearance code fitted and mirrored (-z: the only direction the
    mapping's choice leaks), rendered on the output without new geometry;
  * context-only baseline: the same pipeline with an appearance drawn at random (one candidate,
    another seed) -- what geometry, outline, hair and light alone give away.
- EdgeFace cosine (models/edgeface.py; points from FaceMesh), counted over its calibrated
  "balanced" threshold (the 99th percentile of different-person pairs), everywhere dlib is.
- trait mismatch: |trait(output) - trait(original)| of moustache, beard and brow darkness relative
  to the cheeks (models/face_prior.TRAITS, log units), mean and count over 0.1; config
  `prior-farthest` is the prior restorer before trait matching (32 candidates), for before/after;
- with the guard on (--privacy): portraits whose face was obfuscated, and the escalation step each
  track ended at (`guard` in the JSON);
- --second-opinion: EdgeFace-xxs (torch, bench time only), a network the guard never runs, its
  threshold the 99th percentile of different-person pairs among 150 build portraits; outputs
  with no face (obfuscated) are not counted there. The guard keeps what dlib and EdgeFace-xs
  let through, so a check with those two proves little about a recognizer it never saw.

The JSON holds numbers only: no embedding, code or crop of anybody. The contact sheet shows
original | output pairs of the first 24 portraits (public-domain photos).
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

TAU = 0.6


def read_rgb(path) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(img[:, :, ::-1])


class Embedder:
    """dlib embeddings, and EdgeFace similarities where models/edgeface.py is there, of the biggest face."""

    def __init__(self):
        from ideud.models.recognizer import default_recognizer
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build"))  # build scripts: not in the wheel
        from build_face_prior import Landmarker

        self.rec = default_recognizer()
        self.marker = Landmarker()
        self.edge = None
        try:
            from ideud.models.edgeface import default_edgeface

            self.edge = default_edgeface()
            self.edge_threshold = self.edge.threshold("balanced")
            self.edge_note = f"EdgeFace xs, impostor p99 threshold {self.edge_threshold}"
        except Exception as e:  # noqa: BLE001  (absent or not loadable: say so in the report)
            self.edge_note = f"EdgeFace unavailable: {type(e).__name__}"

    def box(self, rgb) -> Optional[tuple]:
        boxes = self.rec.detect(rgb, upsample=1)
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if boxes else None

    def dlib(self, rgb, fallback_box=None) -> tuple[Optional[np.ndarray], bool]:
        b = self.box(rgb)
        found = b is not None
        b = b if found else fallback_box
        return (None if b is None else self.rec.embed(rgb, box=b)), found

    def edge_embed(self, rgb) -> Optional[np.ndarray]:
        if self.edge is None:
            return None
        from ideud.models.face_align import five_points_from_facemesh

        lm = self.marker(rgb)
        return None if lm is None else self.edge.embed(rgb, five_points_from_facemesh(lm))

    def edge_cos(self, a_rgb, b_rgb) -> Optional[float]:
        ea, eb = self.edge_embed(a_rgb), self.edge_embed(b_rgb)
        return None if ea is None or eb is None else float(ea @ eb)


class SecondOpinion:
    """EdgeFace-xxs in torch (bench time only): a recognizer the privacy guard never runs. Its
    "same person" threshold is the 99th percentile of different-person pairs among CALIBRATION
    build portraits (computed here: the held-out ones never set it)."""

    WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "models" / "edgeface" / "edgeface_xxs_q.pt"
    CALIBRATION = 150  # build portraits (every 4th)

    def __init__(self, marker, folder: Path):
        import torch

        from ideud.eval.portraits import build_names
        from ideud.models import edgeface as ef

        torch.set_num_threads(1)
        self.ef, self.torch, self.marker = ef, torch, marker
        self.state = ef.load_state(self.WEIGHTS)
        self.arch = ef.arch_of(self.state)
        e = [x for x in (self.embed(read_rgb(folder / n)) for n in build_names(folder)[::4][: self.CALIBRATION])
             if x is not None]
        sims = np.stack(e) @ np.stack(e).T
        self.threshold = round(float(np.percentile(sims[np.triu_indices(len(e), 1)], 99)), 3)
        self.note = f"EdgeFace xxs (torch), impostor p99 of {len(e)} build portraits: {self.threshold}"

    def embed(self, rgb) -> Optional[np.ndarray]:
        lm = self.marker(rgb)
        return None if lm is None else self.embed_at(rgb, lm)

    def embed_at(self, rgb, lm: np.ndarray) -> np.ndarray:
        """The embedding of the face at FaceMesh points `lm` (unit length)."""
        from ideud.models.face_align import five_points_from_facemesh

        return self.embed_chip(self.ef.align(rgb, five_points_from_facemesh(lm)))

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        """The embedding of an aligned 112 px chip (unit length)."""
        with self.torch.no_grad():
            e = self.ef.forward(self.state, self.torch.from_numpy(self.ef.normalise(chip[None])), self.arch).numpy()[0]
        return e / max(float(np.linalg.norm(e)), 1e-12)

    def cos(self, a_rgb, b_rgb) -> Optional[float]:
        ea, eb = self.embed(a_rgb), self.embed(b_rgb)
        return None if ea is None or eb is None else float(ea @ eb)


PRIVACY = {"mode": "off"}  # the forward runs' privacy guard (--privacy); inversion runs always go without
SECOND = {"on": False}  # --second-opinion: also measure with EdgeFace-xxs


def run_pipeline(src: Path, dst: Path, restorer_obj, name: str, seed: int, detector, privacy: str = "off") -> dict:
    from ideud.stream.pipeline import FaceProcessor, Options, deidentify

    o = Options(seed=seed, restorer=name, privacy=privacy, force=True, audio=False)
    proc = FaceProcessor(o, detector=detector, restorer=restorer_obj)
    try:
        return deidentify(str(src), str(dst), o, processor=proc)
    finally:
        proc.close()


def inverse_restorer():
    """The attacker's best inverse of the prior mapping: mirror the output's own appearance code."""
    from ideud.models import face_prior as fp
    from ideud.stream.restore_prior import PriorRestorer

    class Inverse(PriorRestorer):
        name = "prior-inverse"

        def target(self, it):
            return -self.prior.encode(fp.canvas_reflectance(it.image, it.landmarks))

    return Inverse()


def apply_direct(restorer, rgb: np.ndarray, track: int, marker) -> Optional[np.ndarray]:
    """A restorer on a whole image at the image's own FaceMesh landmarks (no new geometry)."""
    from ideud.stream.types import RestoreItem

    lm = marker(rgb)
    if lm is None:
        return None
    it = RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                     track_id=track, seed=track)
    return restorer.restore([it])[0]


def face_traits(rgb: np.ndarray, marker) -> Optional[np.ndarray]:
    """Moustache, beard and brow darkness (models/face_prior.TRAITS, log units) of the image's face."""
    from ideud.models import face_prior as fp

    lm = marker(rgb)
    return None if lm is None else fp.default_prior().traits(fp.canvas_reflectance(rgb, lm))


def _trait_stats(pairs: Sequence[tuple]) -> dict:
    """Mean |trait(output) - trait(original)| per trait, and how many moved by more than 0.1 (visible)."""
    from ideud.models.face_prior import TRAITS

    d = np.array([b - a for a, b in pairs if a is not None and b is not None]).reshape(-1, len(TRAITS))
    if not len(d):
        return {"n": 0}
    return {"n": len(d), **{f"{t}_abs": round(float(np.abs(d[:, j]).mean()), 4) for j, t in enumerate(TRAITS)},
            **{f"{t}_over_0.1": int((np.abs(d[:, j]) > 0.1).sum()) for j, t in enumerate(TRAITS)}}


def make_config(cfg: str):
    """A restorer by config name: the registry's, or `prior-farthest` (the prior restorer as it was
    before trait matching: the farthest of 32 candidates whatever its facial hair, for before/after)."""
    from ideud.stream.restore import make_restorer

    if cfg == "prior-farthest":
        from ideud.stream.restore_prior import PriorRestorer

        return PriorRestorer(candidates=32, match_traits=False)
    return make_restorer(cfg)


def _rounded(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(float(v), 3)


def _stats(d: Sequence[float]) -> dict:
    d = [x for x in d if x is not None]
    if not d:
        return {"n": 0}
    return {"n": len(d), "mean": round(float(np.mean(d)), 3), "min": round(float(np.min(d)), 3),
            "under_0.6": int(sum(x < TAU for x in d))}


def _edge_stats(cos: Sequence[Optional[float]], emb) -> dict:
    c = [x for x in cos if x is not None]
    if not c:
        return {"n": 0}
    t = emb.edge_threshold if isinstance(emb, Embedder) else emb.threshold
    return {"n": len(c), "cos_mean": round(float(np.mean(c)), 3), "cos_max": round(float(np.max(c)), 3),
            "over_threshold": int(sum(x > t for x in c))}


def bench(names: Sequence[str], folder: Path, out: Path, configs: Sequence[str], sheet: Optional[Path],
          log=print, inverting: bool = True, first: int = 0) -> dict:
    """`first`: index of names[0] among the held-out portraits (its seed: each person keeps one)."""
    from ideud.stream.detect import make_detector

    emb = Embedder()
    second = SecondOpinion(emb.marker, folder) if SECOND["on"] else None
    detector = make_detector("auto")
    originals = {n: read_rgb(folder / n) for n in names}
    e_orig = {n: emb.dlib(originals[n]) for n in names}
    results: dict = {"portraits": len(names), "tau": TAU, "edgeface": emb.edge_note, "privacy": PRIVACY["mode"]}
    if second is not None:
        results["second_opinion"] = second.note
    outputs: dict = {}
    t_orig: dict = {}  # the originals' traits, measured once
    for cfg in configs:
        robj = make_config(cfg)
        dist, found, cos, cos2, traits, t0 = [], 0, [], [], [], time.perf_counter()
        outs, guard, rows = {}, {"obfuscated_portraits": 0, "steps": {}}, []
        for i, n in enumerate(names):
            dst = out / f"{Path(n).stem}.{cfg}.png"
            rep = run_pipeline(folder / n, dst, robj, robj.name, seed=first + i, detector=detector,
                               privacy=PRIVACY["mode"])
            guard["obfuscated_portraits"] += rep["fallback_face_frames"] > 0
            for t in rep["tracks"]:  # the step each track ended at ("obfuscated": none passed)
                p = t.get("privacy") or {}
                key = "obfuscated" if p.get("status") == "obfuscated" else f"step{p.get('step')}" if p else None
                if key:
                    guard["steps"][key] = guard["steps"].get(key, 0) + 1
            outs[n] = read_rgb(dst)
            e0, _ = e_orig[n]
            e1, ok = emb.dlib(outs[n], emb.box(originals[n]))
            found += ok
            dist.append(None if e0 is None or e1 is None else float(np.linalg.norm(e0 - e1)))
            cos.append(emb.edge_cos(originals[n], outs[n]))
            if n not in t_orig:
                t_orig[n] = face_traits(originals[n], emb.marker)
            traits.append((t_orig[n], face_traits(outs[n], emb.marker)))
            if second is not None:  # None where the output has no face (obfuscated): not counted
                cos2.append(second.cos(originals[n], outs[n]))
            steps = [(t.get("privacy") or {}) for t in rep["tracks"]]
            rows.append({"index": first + i, "steps": [p.get("step") for p in steps], "dlib": _rounded(dist[-1]),
                         "edgeface": _rounded(cos[-1]), **({"second": _rounded(cos2[-1])} if second else {})})
        pairs = [float(np.linalg.norm(a - b)) for a, b in
                 zip([emb.dlib(outs[n])[0] for n in names[:-1]], [emb.dlib(outs[n])[0] for n in names[1:]])
                 if a is not None and b is not None]
        results[cfg] = {"forward": _stats(dist), "dlib_detected": found, "pairs": _stats(pairs),
                        "edgeface": _edge_stats(cos, emb), "trait_mismatch": _trait_stats(traits),
                        "seconds_per_portrait": round((time.perf_counter() - t0) / max(len(names), 1), 2)}
        if PRIVACY["mode"] != "off":
            results[cfg]["guard"] = guard
        results[cfg]["per_portrait"] = rows  # numbers only: the held-out index, steps, distances
        if second is not None:
            results[cfg]["second_opinion"] = _edge_stats(cos2, second)
        outputs[cfg] = outs
        log(f"{cfg}: { {k: v for k, v in results[cfg].items() if k != 'per_portrait'} }")
    orig_pairs = [float(np.linalg.norm(e_orig[a][0] - e_orig[b][0])) for a, b in zip(names[:-1], names[1:])
                  if e_orig[a][0] is not None and e_orig[b][0] is not None]
    results["original_pairs"] = _stats(orig_pairs)
    outputs_for_inversion = outputs if inverting else {}
    if "prior" in outputs_for_inversion:
        results["context_only_baseline"] = context_only_baseline(names, folder, out, originals, e_orig, emb, detector)
        log(f"context-only baseline: {results['context_only_baseline']}")
    if "prior" in outputs_for_inversion:
        results["inversion_prior"] = inversion(names, folder, out, "prior", outputs["prior"], originals, e_orig, emb,
                                               detector, log)
    if sheet is not None and outputs:
        cfg = "prior" if "prior" in outputs else configs[0]
        write_sheet(sheet, [originals[n] for n in names[:24]], [outputs[cfg][n] for n in names[:24]])
        results["sheet"] = str(sheet)
    return results


def _compare(emb: Embedder, original: np.ndarray, e0, img: Optional[np.ndarray]) -> tuple:
    """(dlib distance, EdgeFace cosine) of an image's face to the original's; None where not measurable."""
    if img is None or e0 is None:
        return None, None
    e, _ = emb.dlib(img, emb.box(original))
    return (None if e is None else float(np.linalg.norm(e0 - e))), emb.edge_cos(original, img)


def inversion(names, folder, out, cfg, prior_out, originals, e_orig, emb, detector, log) -> dict:
    from ideud.stream.restore_prior import PriorRestorer

    second, inverse = [], []
    second_r, inverse_r = PriorRestorer(), inverse_restorer()
    for i, n in enumerate(names):
        dst = out / f"{Path(n).stem}.{cfg}.second.png"
        run_pipeline(out / f"{Path(n).stem}.{cfg}.png", dst, second_r, "prior", seed=10_000 + i, detector=detector)
        second.append(_compare(emb, originals[n], e_orig[n][0], read_rgb(dst)))
        inv = apply_direct(inverse_r, prior_out[n], 20_000 + i, emb.marker)
        inverse.append(_compare(emb, originals[n], e_orig[n][0], inv))
    res = {"second_pass": {**_stats([d for d, _ in second]), "edgeface": _edge_stats([c for _, c in second], emb)},
           "best_inverse": {**_stats([d for d, _ in inverse]), "edgeface": _edge_stats([c for _, c in inverse], emb)}}
    log(f"inversion {cfg}: {res}")
    return res


def context_only_baseline(names, folder, out, originals, e_orig, emb, detector) -> dict:
    """The same pipeline with the appearance replaced at random (one candidate, other seeds)."""
    from ideud.stream.restore_prior import PriorRestorer

    random_r, res = PriorRestorer(candidates=1), []
    for i, n in enumerate(names):
        dst = out / f"{Path(n).stem}.random.png"
        run_pipeline(folder / n, dst, random_r, "prior", seed=30_000 + i, detector=detector)
        res.append(_compare(emb, originals[n], e_orig[n][0], read_rgb(dst)))
    return {**_stats([d for d, _ in res]), "edgeface": _edge_stats([c for _, c in res], emb)}


def write_sheet(path: Path, before: Sequence[np.ndarray], after: Sequence[np.ndarray], cols: int = 6,
                h: int = 150) -> None:
    """original | output pairs, `cols` pairs a row, each photo `h` px high."""
    tiles = []
    for a, b in zip(before, after):
        w = int(round(a.shape[1] * h / a.shape[0]))
        tiles.append(np.hstack([cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA),
                                cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA),
                                np.full((h, 6, 3), 255, np.uint8)]))
    rows = []
    for r in range(0, len(tiles), cols):
        row = tiles[r:r + cols]
        row += [np.full_like(tiles[0], 255)] * (cols - len(row))
        rows.append(np.hstack(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows)[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ideud.eval.portraits import build_names, held_out_names, portraits_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="folder for the outputs and the JSON")
    ap.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG of 24 held-out before/after")
    ap.add_argument("--configs", default="prior,bank")
    ap.add_argument("--privacy", default="off", choices=["off", "balanced", "strict"],
                    help="privacy guard of the forward runs (default off: the restorer alone)")
    ap.add_argument("--no-inversion", action="store_true", help="forward and pairs only")
    ap.add_argument("--second-opinion", action="store_true",
                    help="also EdgeFace-xxs in torch (needs torch and shared/models/edgeface)")
    ap.add_argument("--start", type=int, default=0, help="first held-out portrait (with --limit: a slice)")
    ap.add_argument("--split", default="held-out", choices=["held-out", "build"],
                    help="which portraits: held-out (measure) or build (tune on these, never on held-out)")
    ap.add_argument("--shape", type=Path, default=None,
                    help="another face-shape model (.npz of tools/build/build_face_shape.py, e.g. --basis ict)")
    args = ap.parse_args(argv)
    if args.shape:
        from common import use_shape_model

        use_shape_model(args.shape)
    PRIVACY["mode"] = args.privacy
    SECOND["on"] = args.second_opinion
    folder = portraits_dir()
    if folder is None:
        print("bench_face_prior: portraits not found (set IDEUD_PORTRAITS)", file=sys.stderr)
        return 2
    names = (held_out_names if args.split == "held-out" else build_names)(folder)[args.start:][: args.limit]
    out = args.out or Path(tempfile.mkdtemp(prefix="face_prior_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    res = bench(names, folder, out, [c for c in args.configs.split(",") if c], args.sheet,
                inverting=not args.no_inversion, first=args.start)
    (out / "bench_face_prior.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
