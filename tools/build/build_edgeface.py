"""Build EdgeFace's ONNX and its calibration (needs torch; the product runs the ONNX without it).

    python tools/build/build_edgeface.py [--weights DIR] [--out models/data] [--limit N]

1. Load the published int8 state dict (`edgeface_xs_q.pt` from shared/models/edgeface), dequantise
   it and run it with our own network (models/edgeface.py `forward`).
2. Export to ONNX (`models/data/edgeface_xs.onnx`, dynamic batch) and check onnxruntime against the
   torch load on real aligned portraits (max abs diff of the raw 512-d output).
3. Calibrate on the build portraits only (`ideud.eval.portraits.build_names`, never the held-out
   ones): every portrait is a different person, so every pair is an impostor pair. Genuine pairs are
   views of one photo (mirror, +-5 % crop/scale, blur, JPEG q40). Thresholds (cosine similarity
   above which the guard calls two faces one person):
     balanced  the 99th percentile of the impostor similarities
     strict    the 95th percentile (a stricter guard calls more faces "same": more escalation)
   Written to `models/data/edgeface_calibration.json` with the statistics they come from.
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
from ideud.models import facemesh as fm
from ideud.models.face_align import five_points_from_facemesh

WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "models" / "edgeface"
PERCENTILES = {"balanced": 99.0, "strict": 95.0}

# the portraits' faces are found as the recognizer tests find them (one copy, in tests/)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from portrait_faces import portrait_landmarks, read_rgb  # noqa: E402


def views(rgb: np.ndarray, p5: np.ndarray) -> list[np.ndarray]:
    """Chips of one face under what a genuine pair would differ by (the guard uses the same kinds)."""
    base = ef.align(rgb, p5)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", base[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])[1], 1)[:, :, ::-1]
    return [base, base[:, ::-1], ef.align(rgb, p5, scale=1.05), ef.align(rgb, p5, scale=0.95, shift=(3, -3)),
            cv2.GaussianBlur(base, (0, 0), 1.2), np.ascontiguousarray(jpeg)]


def stats(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"n": int(v.size), "mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
            "p1": round(float(np.percentile(v, 1)), 4), "p95": round(float(np.percentile(v, 95)), 4),
            "p99": round(float(np.percentile(v, 99)), 4), "max": round(float(v.max()), 4)}


def aligned_portraits(limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rgb, 5 points) of the build portraits where a face and its mesh are found."""
    from ideud.eval.portraits import build_names, portraits_dir
    from ideud.stream.detect import make_detector

    folder = portraits_dir()
    if folder is None:
        raise SystemExit("portraits not found (set IDEUD_PORTRAITS)")
    names = build_names(folder)[:limit] if limit else build_names(folder)
    det, mesh = make_detector("centerface"), fm.FaceMesh()
    out = []
    for n in names:
        rgb = read_rgb(folder / n)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is not None:
            out.append((n, rgb, five_points_from_facemesh(lm)))
    mesh.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--variant", default="xs", choices=("xs", "xxs"))
    ap.add_argument("--out", type=Path, default=ef.DATA)
    ap.add_argument("--limit", type=int, default=None, help="use the first N build portraits (quick runs)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    src = a.weights / f"edgeface_{a.variant}_q.pt"
    if not src.is_file():
        print(f"error: {src} not found", file=sys.stderr)
        return 2
    state = ef.load_state(src)
    onnx_path = a.out / f"edgeface_{a.variant}.onnx"
    # float weights: int8 initializers + DequantizeLinear were tried (3.0 MB instead of 9.0) but
    # onnxruntime fuses them into integer matmuls: 1.3e-2 off the torch load and 7x slower here
    ef.export_onnx(state, onnx_path)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size} bytes), arch {ef.arch_of(state)}")

    t = time.perf_counter()
    faces = aligned_portraits(a.limit)
    print(f"{len(faces)} build portraits with a face ({time.perf_counter() - t:.0f} s)")
    chips = np.stack([v for _, rgb, p5 in faces for v in views(rgb, p5)])
    nv = len(chips) // len(faces)
    model = ef.EdgeFace(onnx_path)
    t = time.perf_counter()
    raw_onnx = np.concatenate([model._get().run(None, {"input": ef.normalise(chips[i:i + 64])})[0]
                               for i in range(0, len(chips), 64)])
    onnx_ms = 1e3 * (time.perf_counter() - t) / len(chips)
    with torch.no_grad():
        sample = chips[::nv][:48]
        raw_torch = ef.forward(state, torch.from_numpy(ef.normalise(sample))).numpy()
    diff = float(np.abs(raw_torch - raw_onnx[::nv][:48]).max())
    print(f"onnx vs torch: max abs diff {diff:.2e} over {len(sample)} faces (|output| max "
          f"{np.abs(raw_torch).max():.2f}); onnxruntime {onnx_ms:.1f} ms per face in batches of 64")

    e = raw_onnx / np.linalg.norm(raw_onnx, axis=1, keepdims=True)
    e = e.reshape(len(faces), nv, -1)
    base = e[:, 0]
    sim = base @ base.T
    impostor = sim[np.triu_indices(len(faces), 1)]
    genuine = np.einsum("nd,nvd->nv", base, e[:, 1:])  # each view against its own photo
    kinds = ["mirror", "scale+5%", "scale-5%+shift", "blur", "jpeg40"]
    thresholds = {k: round(float(np.percentile(impostor, p)), 4) for k, p in PERCENTILES.items()}
    cal = {"model": onnx_path.name, "source": src.name, "portraits": len(faces), "split": "build_names",
           "thresholds": thresholds,
           "threshold_rule": {k: f"impostor cosine similarity, percentile {p}" for k, p in PERCENTILES.items()},
           "impostor": stats(impostor),
           "genuine_views": {k: stats(genuine[:, i]) for i, k in enumerate(kinds)},
           "genuine_worst_view": stats(genuine.min(1)),
           "onnx_vs_torch_max_abs_diff": float(f"{diff:.3g}")}
    (a.out / "edgeface_calibration.json").write_text(json.dumps(cal, indent=1) + "\n")
    print(json.dumps(cal, indent=1))
    worst = genuine.min(1)
    print(f"genuine worst view below the balanced threshold: {(worst <= thresholds['balanced']).sum()} of {len(worst)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
