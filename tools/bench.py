"""Throughput benchmark of the stream processor on fixed generated clips.

    python -m ideud.tools.bench [--out DIR] [--deface PATH] [--frames N] [--json FILE]

Clips (made once, deterministic): 720p with one face, 360p with four faces.
For each: end-to-end fps (decode..encode, wall clock) and ms per stage from
the pipeline's own timers. With --deface (path of a `deface` executable, e.g.
from a separate venv: it pins an OpenCV that clashes with mediapipe's), the
same clips go through deface in the same command and the ratio is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ideud.stream.pipeline import Options, deidentify
from ideud.tools.demo import moving_faces, write_clip

CLIPS = {
    "720p_1face": dict(width=1280, height=720, size=420, faces=1),
    "360p_4faces": dict(width=640, height=360, size=150, faces=4),
}


def make_clips(folder: str, frames: int) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, spec in CLIPS.items():
        path = os.path.join(folder, f"{name}_{frames}.mp4")
        if not os.path.exists(path):
            write_clip(path, moving_faces(frames, spec["width"], spec["height"], size=spec["size"], faces=spec["faces"]),
                       audio=False)
        paths[name] = path
    return paths


def bench_ideud(src: str, dst: str, options: Options) -> dict:
    options.force = True
    t = time.perf_counter()
    rep = deidentify(src, dst, options)
    wall = time.perf_counter() - t
    return {"fps": rep["frames"] / wall, "frames": rep["frames"], "wall_s": wall,
            "processing_fps": rep["fps"], "fallback_face_frames": rep["fallback_face_frames"],
            "ms_per_stage": {k: v["ms_per_frame"] for k, v in rep["timing"].items()}}


def bench_deface(exe: str, src: str, dst: str, frames: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([exe, src, "-o", dst, "--keep-audio"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return {"fps": frames / wall, "wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out", help="folder for clips and outputs")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--deface", help="path to a deface executable to compare against")
    ap.add_argument("--restorer", default="classic")
    ap.add_argument("--privacy", default=None, help="privacy guard mode, if the pipeline has one")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    clips = make_clips(a.out, a.frames)
    results = {"machine": f"{os.cpu_count()} CPU cores", "frames": a.frames, "clips": {}}
    for name, src in clips.items():
        opts = Options(seed=1, restorer=a.restorer)
        if a.privacy is not None and hasattr(opts, "privacy"):
            opts.privacy = a.privacy
        r = {"ideud": bench_ideud(src, os.path.join(a.out, f"{name}.ideud.mp4"), opts)}
        if a.deface:
            r["deface"] = bench_deface(a.deface, src, os.path.join(a.out, f"{name}.deface.mp4"), a.frames)
            if "fps" in r["deface"]:
                r["ratio_vs_deface"] = r["ideud"]["fps"] / r["deface"]["fps"]
        results["clips"][name] = r
        line = f"{name:14s} ideud {r['ideud']['fps']:6.1f} fps"
        if "deface" in r and "fps" in r["deface"]:
            line += f" | deface {r['deface']['fps']:6.1f} fps | ratio {r['ratio_vs_deface']:.2f}x"
        print(line)
        print("   ms/frame: " + ", ".join(f"{k} {v:.1f}" for k, v in r["ideud"]["ms_per_stage"].items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
