"""Small faces through the default pipeline, judged by a recognizer the privacy guard never runs.

    python tools/bench/bench_small_faces.py [--sizes 20,24,32] [--limit 30] [--start 0] [--json F]
                                            [--size-table T.json]   (T: calibrate_edgeface_sizes.py --json)

Each held-out portrait (`ideud.eval.portraits.held_out_names`: nothing was built or tuned on them)
is downscaled so its face is W px (the guard's face size: the larger side of the FaceMesh points'
extent; tools/build/calibrate_edgeface_sizes.shrink), put on a 320x240 grey frame and run through
the default pipeline (`deidentify`, privacy balanced, the portrait's index as seed). The output is
judged by EdgeFace-xxs (torch, as tools/bench/bench_face_prior.py --second-opinion loads it),
aligned on FaceMesh points found on the output where the face was (the input's where none):

    same_size   the output vs the input at W (what someone holding the frame compares)
    full_res    the output vs the full-resolution portrait (someone holding a good photo)

each counted over xxs's own full-resolution threshold (the 99th percentile of different-person
pairs among build portraits) and over its own size-aware p99 at W (W vs W pairs for same_size,
W vs full for full_res; the same build portraits). Obfuscated faces are counted apart (the guard
verified those mosaics itself). With --size-table the same faces are run again with the guard's
EdgeFace threshold set to the table's edge_max(W) (W: the face's size as FaceMesh finds it on the
small frame; the table's value at the smallest tabulated size >= W): what a size-aware guard would
let through (one face per image, so one threshold per run is the whole of such a guard).
Numbers only in the output: no embedding, no crop.

Measured 2026-12-02, 30 held-out portraits at 16 and 32 px, 70 at 20 and 24 (xxs's thresholds:
full 0.226; p99 W vs W 0.322 / 0.286 / 0.262 / 0.238 and W vs full 0.216 / 0.224 / 0.223 / 0.223 at
16 / 20 / 24 / 32 px), the shipped guard -> a guard that used the size-aware table of
calibrate_edgeface_sizes.py inside it (the threshold at its own face size, search and re-check;
this script's --size-table approximates that size with FaceMesh on the frame):

    W px   rendered    xxs matches the full-res photo    xxs matches the same-size input
                       (its W-vs-full p99)               (its W-vs-W p99)
    16     7 -> 12     0 -> 0                            0 -> 1
    20     32 -> 40    1 -> 3                            0 -> 0
    24     51 -> 52    2 -> 3                            0 -> 0
    32     23 -> 23    0 -> 0                            2 -> 2
    all    113 -> 127  3 -> 6 (2.7 % -> 4.7 % of rendered)   2 -> 3

More faces rendered, but also more of them (and some already rendered, whose search now stops
at an earlier, closer candidate) matched by a recognizer the guard never runs: the guard does not
use the table (calibrate_edgeface_sizes.py says why).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "build"))
sys.path.insert(0, str(HERE.parents[2] / "tests"))
from calibrate_edgeface_sizes import face_size, portraits, shrink  # noqa: E402
from portrait_faces import portrait_landmarks, read_rgb  # noqa: E402

FRAME = (240, 320)
XXS = HERE.parents[3] / "shared" / "models" / "edgeface" / "edgeface_xxs_q.pt"
CALIBRATION = 175  # build portraits (every 4th) for xxs's own thresholds


class Xxs:
    def __init__(self):
        import torch

        from ideud.models import edgeface as ef
        torch.set_num_threads(1)
        self.torch, self.ef = torch, ef
        self.state = ef.load_state(XXS)
        self.arch = ef.arch_of(self.state)

    def embed(self, rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
        from ideud.models.face_align import five_points_from_facemesh
        chip = self.ef.align(rgb, five_points_from_facemesh(lm))[None]
        with self.torch.no_grad():
            e = self.ef.forward(self.state, self.torch.from_numpy(self.ef.normalise(chip)), self.arch).numpy()[0]
        return e / max(float(np.linalg.norm(e)), 1e-12)


def on_frame(small: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The small face region centred on a grey frame, and its points there."""
    frame = np.full((*FRAME, 3), 118, np.uint8)
    h, w = min(small.shape[0], FRAME[0]), min(small.shape[1], FRAME[1])
    y0, x0 = (FRAME[0] - h) // 2, (FRAME[1] - w) // 2
    frame[y0:y0 + h, x0:x0 + w] = small[:h, :w]
    return frame, pts + [x0, y0]


def xxs_thresholds(xxs: Xxs, sizes, cache=None) -> dict:
    """xxs's own p99 of different-person pairs among build portraits: full, W vs W, W vs full."""
    from ideud.eval.portraits import portraits_dir
    folder = portraits_dir()
    faces = portraits(None, cache)[::4][:CALIBRATION]
    full, small = [], {w: [] for w in sizes}
    for name, lm in faces:
        rgb = read_rgb(folder / name)
        full.append(xxs.embed(*shrink(rgb, lm, None)))
        for w in sizes:
            small[w].append(xxs.embed(*shrink(rgb, lm, w)))
    full = np.stack(full)
    n = len(full)
    iu, off = np.triu_indices(n, 1), ~np.eye(n, dtype=bool)
    out = {"full": round(float(np.percentile((full @ full.T)[iu], 99)), 4), "portraits": n}
    for w in sizes:
        e = np.stack(small[w])
        out[str(w)] = {"same_size": round(float(np.percentile((e @ e.T)[iu], 99)), 4),
                       "full_res": round(float(np.percentile((e @ full.T)[off], 99)), 4)}
    return out


def run_one(rgb_frame: np.ndarray, seed: int, work: Path) -> tuple[np.ndarray, dict]:
    from ideud.stream.pipeline import Options, deidentify
    src, dst = work / "in.png", work / "out.png"
    cv2.imwrite(str(src), rgb_frame[:, :, ::-1])
    rep = deidentify(str(src), str(dst), Options(seed=seed, privacy="balanced", force=True, audio=False))
    return read_rgb(dst), rep


def edge_max_at(table: dict, full: float, size: float) -> float:
    """A size-aware table's threshold for a face of `size` px (the stricter tabulated neighbour)."""
    for w in sorted(table, key=float):
        if size <= float(w):
            return max(full, table[w]["balanced"])
    return full


def bench(sizes, limit: int, size_table, xxs: Xxs, thr: dict, start: int = 0) -> dict:
    from ideud.eval.portraits import held_out_names, portraits_dir
    from ideud.models import facemesh as fm
    from ideud.stream import guard_policy as gp
    from ideud.stream.detect import make_detector

    folder = portraits_dir()
    det, mesh = make_detector("centerface"), fm.FaceMesh()
    people = []
    for i, name in enumerate(held_out_names(folder)):
        if i < start:
            continue
        rgb = read_rgb(folder / name)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is not None:
            people.append((i, rgb, lm[:, :2].astype(np.float64)))
        if len(people) == limit:
            break
    shipped = dict(gp.POLICIES)
    full_thr = shipped["balanced"].edge_max
    res = {}
    try:
        for table in ("off", "on") if size_table else ("off",):
            for w in sizes:
                row = {"faces": 0, "not_found": 0, "obfuscated": 0, "rendered": 0,
                       "same_size_over_full_thr": 0, "same_size_over_size_thr": 0,
                       "full_res_over_full_thr": 0, "full_res_over_size_thr": 0,
                       "same_size_cos": [], "full_res_cos": [], "guard_edge_max": []}
                for i, rgb, lm in people:
                    small, pts = on_frame(*shrink(rgb, lm, w))
                    if table == "on":  # the guard's threshold at the size FaceMesh finds on the frame
                        seen = mesh(small, fm.roi_from_landmarks(np.c_[pts, np.zeros(len(pts))]))
                        size = face_size(pts if seen is None else seen[:, :2])
                        gp.POLICIES["balanced"] = dataclasses.replace(
                            shipped["balanced"], edge_max=edge_max_at(size_table, full_thr, size))
                    with tempfile.TemporaryDirectory() as tmp:
                        out, rep = run_one(small, 1000 + i, Path(tmp))
                    tracks = rep.get("tracks", [])
                    row["faces"] += 1
                    if not tracks:
                        row["not_found"] += 1
                        continue
                    t = max(tracks, key=lambda t: t.get("frames", 0))
                    if t.get("fallback_frames", 0) > 0:
                        row["obfuscated"] += 1
                        continue
                    row["rendered"] += 1
                    pv = t.get("privacy") or {}
                    row["guard_edge_max"].append(pv.get("edgeface_max"))
                    found = mesh(out, fm.roi_from_landmarks(np.c_[pts, np.zeros(len(pts))]))
                    out_pts = pts if found is None else found[:, :2]
                    e_out = xxs.embed(out, out_pts)
                    same = float(e_out @ xxs.embed(small, pts))
                    full = float(e_out @ xxs.embed(*shrink(rgb, lm, None)))
                    row["same_size_cos"].append(round(same, 3))
                    row["full_res_cos"].append(round(full, 3))
                    row["same_size_over_full_thr"] += same > thr["full"]
                    row["same_size_over_size_thr"] += same > thr[str(w)]["same_size"]
                    row["full_res_over_full_thr"] += full > thr["full"]
                    row["full_res_over_size_thr"] += full > thr[str(w)]["full_res"]
                    print(f"table {table} W={w} #{i}: xxs same {same:.3f} full {full:.3f} "
                          f"(guard edge_max {pv.get('edgeface_max')}, xs {pv.get('edgeface')})", flush=True)
                for k in ("same_size_cos", "full_res_cos"):
                    v = row.pop(k)
                    row[k.replace("_cos", "_cos_mean")] = round(float(np.mean(v)), 3) if v else None
                    row[k.replace("_cos", "_cos_max")] = max(v) if v else None
                res[f"table_{table}"] = res.get(f"table_{table}", {})
                res[f"table_{table}"][str(w)] = row
                print(f"table {table} W={w}: {json.dumps(row)}", flush=True)
    finally:
        gp.POLICIES.update(shipped)
        mesh.close()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,24,32")
    ap.add_argument("--limit", type=int, default=30, help="held-out portraits")
    ap.add_argument("--start", type=int, default=0, help="skip the first N held-out portraits")
    ap.add_argument("--size-table", type=Path, default=None,
                    help="also run with this size-aware table (calibrate_edgeface_sizes.py --json)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="the build portraits' FaceMesh points (npz)")
    a = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in a.sizes.split(",")]
    except ValueError:
        print(f"error: --sizes wants integers, got {a.sizes!r}", file=sys.stderr)
        return 2
    if not XXS.is_file():
        print(f"error: {XXS} not found", file=sys.stderr)
        return 2
    xxs = Xxs()
    thr = xxs_thresholds(xxs, sizes, a.cache)
    print("xxs thresholds:", json.dumps(thr), flush=True)
    size_table = json.loads(a.size_table.read_text())["thresholds"] if a.size_table else None
    res = {"xxs_thresholds": thr, **bench(sizes, a.limit, size_table, xxs, thr, a.start)}
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
