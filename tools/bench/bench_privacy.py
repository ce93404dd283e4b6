"""Privacy/utility benchmark of the restorers and the privacy guard (numbers for the README).

    python tools/bench/bench_privacy.py [--configs classic:off,bank:balanced,...] [--faces DIR]
                                        [--frames N] [--json out.json] [--sheet-dir DIR]

Runs the pipeline on
- generated clips of the public-domain astronaut portrait (one face of
  ~110 px; two faces of ~165 px; one face of ~240 px), and
- the annotated PASCAL faces in FACES_DIR (research/test photos that are
  never shipped: `shared/testdata/faces`), each face cut out with its
  surroundings (2x its box) and scaled to a 256 px image,
for every restorer:privacy pair, then measures every output with
`ideud-eval`'s Evaluator (dlib HOG faces in the original, dlib ResNet
DIS, FaceMesh pose, Laplacian sharpness, PSNR outside the faces).

Each evaluated face-frame is matched (box IoU >= 0.3) to what the pipeline
did with it (its frame log): de-identified, obfuscated (fallback), or not
found by the pipeline at all. Reported per configuration:

  leak_rate        share of ALL face-frames with DIS < 0.6 (obfuscated ones count, as they are)
  dis_mean         mean DIS over all face-frames; dis_mean_rendered over the re-rendered ones only
  fallback_share   pipeline face-frames obfuscated / pipeline face-frames
  sharpness        geometric mean of the sharpness ratio over re-rendered face-frames
  pose_error_deg   mean FaceMesh head-pose error over re-rendered face-frames
  detection_rate   the output face is still found by dlib (re-rendered face-frames)
  psnr_outside     mean PSNR outside the face regions (dB)
  fps              clip frames / wall time of the pipeline (clips only; 2-core CPU here)

The guard and ideud-eval use the same recogniser (dlib's ResNet; the guard
aligns with FaceMesh points, the evaluation with dlib's own 5 points and
measures every frame), so DIS of guarded outputs is not an independent
measurement: the guard keeps candidates that this network rates far away.
No other recogniser is available offline; read the numbers with that in mind.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from ideud.models.geometry import box_iou

DEFAULT_CONFIGS = ("classic:off", "classic:balanced", "bank:off", "bank:balanced", "bank:strict")
DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"


@dataclass
class Case:
    name: str
    path: str
    kind: str  # clip | image
    group: str  # astronaut | pascal


# ---------------------------------------------------------------------- inputs
def astronaut_clips(folder: Path, frames: int = 40) -> list[Case]:
    from common import moving_faces, write_clip

    specs = [("astro-1x110", dict(width=480, height=270, size=200)),
             ("astro-2x165", dict(width=960, height=400, size=300, faces=2)),
             ("astro-1x240", dict(width=640, height=480, size=440, angle=12.0))]
    out = []
    for name, kw in specs:
        path = folder / f"{name}.mp4"
        write_clip(str(path), moving_faces(frames, **kw), audio=False)
        out.append(Case(name, str(path), "clip", "astronaut"))
    return out


def pascal_boxes(faces_dir: Path):
    """(file name, [left, top, width, height]) of every annotated face."""
    from common import annotated_boxes

    for path, (x0, y0, x1, y1) in annotated_boxes(faces_dir):
        yield path.name, [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def pascal_images(folder: Path, faces_dir: Path, size: int = 256, grow: float = 2.0,
                  limit: Optional[int] = None) -> list[Case]:
    """Every annotated face, cut out with 2x its box around it and scaled to `size` px (PNG)."""
    out = []
    for i, (file, (x, y, w, h)) in enumerate(pascal_boxes(faces_dir)):
        if limit is not None and i >= limit:
            break
        img = cv2.imread(str(faces_dir / file))
        if img is None:
            continue
        cx, cy, s = x + w / 2, y + h / 2, max(w, h) * grow
        k = size / s
        m = np.float32([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        path = folder / f"pascal-{i:02d}.png"
        cv2.imwrite(str(path), crop)
        out.append(Case(path.stem, str(path), "image", "pascal"))
    return out


# ---------------------------------------------------------------------- one run
def face_rows(ev_report: dict, pipe_report: dict) -> list[dict]:
    """Eval face-frames with the pipeline's status for them (deidentified | fallback | missed)."""
    log = {f["frame"]: f.get("faces", []) for f in pipe_report.get("frame_log", [])}
    rows = []
    for f in ev_report.get("faces", []):
        best, status = 0.0, "missed"
        for pf in log.get(f["frame"], []):
            v = box_iou(f["box"], pf["box"])
            if v > best and v >= 0.3:
                best, status = v, ("deidentified" if pf["status"] == "deidentified" else "fallback")
        rows.append({**f, "status": status})
    return rows


def run_case(case: Case, out_dir: Path, restorer: str, privacy: str, seed: int = 0, rec=None,
             detector=None, restorer_obj=None) -> dict:
    from ideud.eval import EvalOptions, evaluate
    from ideud.stream.pipeline import FaceProcessor, Options, deidentify

    # lossless output: PSNR outside the faces then measures the pipeline, not the encoder
    dst = out_dir / f"{case.name}.{restorer}.{privacy}{'.png' if case.kind == 'image' else '.mkv'}"
    o = Options(seed=seed, restorer=restorer, privacy=privacy, frame_log=True, audio=False, force=True,
                codec="ffv1", crf=None, preset=None)
    proc = FaceProcessor(o, detector=detector, restorer=restorer_obj)
    t = time.perf_counter()
    try:
        rep = deidentify(case.path, str(dst), o, processor=proc)
    finally:
        proc.close()
    wall = time.perf_counter() - t
    ev = evaluate(case.path, str(dst), EvalOptions(per_face=True), recognizer=rec)
    return {"case": case.name, "group": case.group, "kind": case.kind, "output": str(dst), "wall_s": wall,
            "frames": rep["frames"], "face_frames": rep["face_frames"],
            "fallback_face_frames": rep["fallback_face_frames"], "tracks": rep["tracks"],
            "guard": rep.get("privacy"), "timing": rep.get("timing"),
            "faces": face_rows(ev, rep),
            "psnr_outside": [m for m in [ev["utility"]["psnr_outside_faces"]] if m is not None]}


# ---------------------------------------------------------------------- aggregate
def _gmean(v):
    v = [x for x in v if x is not None and x > 0]
    return math.exp(float(np.mean(np.log(v)))) if v else None


def _mean(v):
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def aggregate(runs: list[dict], tau: float = 0.6) -> dict:
    faces = [f for r in runs for f in r["faces"]]
    rendered = [f for f in faces if f["status"] == "deidentified"]
    clips = [r for r in runs if r["kind"] == "clip"]
    pipe_ff = sum(r["face_frames"] for r in runs)
    rnd = (lambda v, n=3: None if v is None else round(float(v), n))
    return {
        "face_frames": len(faces),
        "leak_rate": rnd(np.mean([f["dis"] < tau for f in faces]) if faces else None),
        "dis_mean": rnd(_mean([f["dis"] for f in faces])),
        "dis_min": rnd(min((f["dis"] for f in faces), default=None)),
        "dis_mean_rendered": rnd(_mean([f["dis"] for f in rendered])),
        "fallback_share": rnd(sum(r["fallback_face_frames"] for r in runs) / pipe_ff if pipe_ff else None),
        "missed_share": rnd(np.mean([f["status"] == "missed" for f in faces]) if faces else None),
        "sharpness": rnd(_gmean([f["sharpness_ratio"] for f in rendered])),
        "pose_error_deg": rnd(_mean([f["pose_error_deg"] for f in rendered]), 2),
        "detection_rate": rnd(_mean([float(f["detected"]) for f in rendered])),
        "psnr_outside": rnd(_mean([p for r in runs for p in r["psnr_outside"]]), 1),
        "fps": rnd(sum(r["frames"] for r in clips) / sum(r["wall_s"] for r in clips), 2) if clips else None,
        "guard_s_per_track": rnd(_mean([t["privacy"]["seconds"] for r in runs for t in r["tracks"]
                                        if t.get("privacy")]), 2),
        "levels": _levels(runs),
    }


def _levels(runs) -> dict:
    out: dict = {}
    for r in runs:
        for t in r["tracks"]:
            p = t.get("privacy")
            if p:
                key = "obfuscated" if p["status"] == "obfuscated" else f"step{p['step']}"
                out[key] = out.get(key, 0) + 1
    return out


def run_benchmark(configs: Sequence[str], cases: Sequence[Case], out_dir: Path, seed: int = 0,
                  log: Callable[[str], None] = print) -> dict:
    from ideud.models.recognizer import default_recognizer
    from ideud.stream.detect import make_detector
    from ideud.stream.restore import make_restorer

    rec = default_recognizer()
    detector = make_detector("auto")
    results = []
    for cfg in configs:
        restorer, _, privacy = cfg.partition(":")
        privacy = privacy or "balanced"
        robj = make_restorer(restorer)
        runs = []
        for case in cases:
            runs.append(run_case(case, out_dir, restorer, privacy, seed, rec, detector, robj))
        res = {"config": cfg, "restorer": restorer, "privacy": privacy,
               "all": aggregate(runs),
               "astronaut": aggregate([r for r in runs if r["group"] == "astronaut"]),
               "pascal": aggregate([r for r in runs if r["group"] == "pascal"])}
        results.append(res)
        a = res["all"]
        log(f"{cfg:18s} leak {a['leak_rate']}  DIS {a['dis_mean']} (rendered {a['dis_mean_rendered']})  "
            f"fallback {a['fallback_share']}  sharp {a['sharpness']}  pose {a['pose_error_deg']}  "
            f"det {a['detection_rate']}  bg {a['psnr_outside']} dB  fps {a['fps']}  {a['levels']}")
    return {"tool": "bench_privacy", "cases": [c.__dict__ for c in cases], "results": results}


def table(doc: dict) -> str:
    """Markdown table of the results (all / astronaut / pascal)."""
    head = ("| config | set | face-frames | leak <0.6 | DIS mean | DIS rendered | fallback | sharpness | "
            "pose err | detected | bg PSNR | fps |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["results"]:
        for part in ("astronaut", "pascal", "all"):
            a = r[part]
            if not a["face_frames"]:
                continue
            pct = (lambda v: "-" if v is None else f"{100 * v:.1f} %")
            num = (lambda v, f="{:.2f}": "-" if v is None else f.format(v))
            lines.append(f"| {r['config']} | {part} | {a['face_frames']} | {pct(a['leak_rate'])} | "
                         f"{num(a['dis_mean'])} | {num(a['dis_mean_rendered'])} | {pct(a['fallback_share'])} | "
                         f"{num(a['sharpness'])} | {num(a['pose_error_deg'], '{:.1f}°')} | "
                         f"{pct(a['detection_rate'])} | {num(a['psnr_outside'], '{:.1f}')} | {num(a['fps'], '{:.1f}')} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help="comma-separated RESTORER:PRIVACY pairs (default %(default)s)")
    p.add_argument("--faces", default=str(DEFAULT_FACES), help="PASCAL faces folder (imglab XML + JPEGs)")
    p.add_argument("--frames", type=int, default=40, help="frames per generated clip (default 40)")
    p.add_argument("--pascal-limit", type=int, default=None, help="use only the first N PASCAL faces")
    p.add_argument("--no-clips", action="store_true")
    p.add_argument("--no-pascal", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for inputs and outputs (default: a temporary one)")
    p.add_argument("--json", default=None, help="write the full results here")
    a = p.parse_args(argv)
    tmp = None if a.out else tempfile.TemporaryDirectory(prefix="ideud-bench-privacy-")
    out = Path(a.out or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    try:
        cases = [] if a.no_clips else astronaut_clips(out, a.frames)
        faces = Path(a.faces)
        if not a.no_pascal:
            if not faces.is_dir():
                print(f"no PASCAL faces at {faces}: astronaut clips only", file=sys.stderr)
            else:
                cases += pascal_images(out, faces, limit=a.pascal_limit)
        doc = run_benchmark([c.strip() for c in a.configs.split(",") if c.strip()], cases, out, a.seed)
        print(table(doc))
        if a.json:
            slim = {**doc, "results": doc["results"]}
            Path(a.json).write_text(json.dumps(slim, indent=2))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
