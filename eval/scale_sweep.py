"""Privacy and utility against the de-identification scale (cf. the paper's Fig. 4): a table and a plot."""
from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ideud.eval.evaluator import EvalOptions, evaluate
from ideud.eval.media import probe
from ideud.eval.numbers import short
from ideud.eval.report import write_json
from ideud.models.recognizer import FaceRecognizer, THRESHOLD, default_recognizer

SWEEP_COLUMNS = ["scale", "dis_mean", "dis_min", "leak_rate", "cross_frame_min", "cross_frame_leak_rate",
                 "psnr", "psnr_outside_faces", "ssim", "ssim_outside_faces", "pose_error_deg_mean",
                 "yaw_error_deg", "pitch_error_deg", "roll_error_deg", "pose_error_pnp_deg",
                 "mouth_aperture_error", "eye_aperture_error", "sharpness_ratio", "detection_rate",
                 "intra_track_mean", "seconds_run"]


def sweep(input, scales: Sequence[float], run_fn: Callable[[str, str, float], object], out_dir,
          options: Optional[EvalOptions] = None, recognizer: Optional[FaceRecognizer] = None,
          keep_outputs: bool = True, log: Optional[Callable[[str], None]] = None) -> dict:
    """DIS and utility against the de-identification ``scale`` (cf. the paper's Fig. 4).

    ``run_fn(src, dst, scale)`` must write the de-identified version of
    ``src`` to ``dst`` (for the pipeline: ``deidentify(src, dst,
    Options(scale=scale))``).  Outputs go to ``out_dir/scale_<s><ext>``
    (videos keep the input's extension, images are written as .png);
    ``out_dir`` gets sweep.json, sweep.csv and, if matplotlib can be
    imported, sweep.png.  Returns ``{"rows", "json", "csv", "plot", "note"}``.
    """
    src = Path(input)
    info = probe(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".png" if info.kind == "image" else (src.suffix or ".mp4")
    rec = recognizer or default_recognizer()
    cache: dict = {}
    rows = []
    for s in scales:
        s = float(s)
        dst = out / f"scale_{s:g}{suffix}"
        if dst.exists():
            dst.unlink()
        t0 = time.perf_counter()
        run_fn(str(src), str(dst), s)
        secs = time.perf_counter() - t0
        if not dst.is_file():
            raise RuntimeError(f"run function wrote no output for scale {s:g} ({dst})")
        rep = evaluate(src, dst, options, recognizer=rec, cache=cache)
        p, u, c = rep["privacy"], rep["utility"], rep["consistency"]
        row = {"scale": s, **{k: p.get(k, u.get(k, c.get(k))) for k in SWEEP_COLUMNS[1:-1]},
               "seconds_run": round(secs, 3)}
        rows.append(row)
        if log:
            log(f"scale {s:g}: DIS {short(row['dis_mean'])}, leak {short(row['leak_rate'])}, "
                f"PSNR {short(row['psnr'])}, SSIM {short(row['ssim'])}, pose err {short(row['pose_error_deg_mean'])}")
        if not keep_outputs:
            dst.unlink()
    doc = {"tool": "ideud-eval sweep", "input": str(src), "kind": info.kind,
           "options": asdict(options or EvalOptions()), "rows": rows}
    jpath = write_json(doc, out / "sweep.json")
    cpath = out / "sweep.csv"
    with open(cpath, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SWEEP_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in SWEEP_COLUMNS})
    plot = plot_sweep(rows, out / "sweep.png")
    note = None if plot else "matplotlib is not installed: wrote sweep.json and sweep.csv only, no plot"
    return {"rows": rows, "json": jpath, "csv": str(cpath), "plot": plot, "note": note}


def plot_sweep(rows: list, path) -> Optional[str]:
    """Privacy and utility against scale (PNG); None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    xs = [r["scale"] for r in rows]

    def col(k):
        return [np.nan if r[k] is None else r[k] for r in rows]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(xs, col("dis_mean"), "o-", label="DIS mean (same place)")
    a1.plot(xs, col("cross_frame_min"), "s--", label="cross-frame min")
    a1.plot(xs, col("leak_rate"), "^-", label="leak rate")
    a1.axhline(THRESHOLD, color="grey", lw=0.8, ls=":", label="dlib threshold 0.6")
    a1.set_xlabel("scale")
    a1.set_title("privacy (higher DIS = better)")
    a1.legend(fontsize=8, loc="best")
    a1.grid(alpha=0.3)
    a2.plot(xs, col("ssim"), "o-", label="SSIM")
    a2.plot(xs, col("ssim_outside_faces"), "s--", label="SSIM outside faces")
    a2.plot(xs, col("detection_rate"), "^-", label="still detected")
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("scale")
    a2.set_title("utility")
    a3 = a2.twinx()
    a3.plot(xs, col("pose_error_deg_mean"), "d:", color="tab:red", label="pose error (deg)")
    a3.set_ylabel("pose error (deg)")
    h1, l1 = a2.get_legend_handles_labels()
    h2, l2 = a3.get_legend_handles_labels()
    a2.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)

