"""Throughput benchmark of the stream processor on fixed generated clips.

    python tools/bench/bench.py [--out DIR] [--deface PATH] [--frames N] [--json FILE]

Clips (made once, deterministic): 720p with one face, 360p with four faces.
For each: end-to-end fps (decode..encode, wall clock) and ms per stage from
the pipeline's own timers. With --deface (path of a `deface` executable, e.g.
from a separate venv: it pins an OpenCV that clashes with mediapipe's), the
same clips go through deface in the same command and the ratio is printed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ideud.stream.pipeline import Options, deidentify
from common import moving_faces, save_json, write_clip

CLIPS = {
    "720p_1face": dict(width=1280, height=720, size=420, faces=1),
    "360p_4faces": dict(width=640, height=360, size=150, faces=4),
    "1080p_4faces": dict(width=1920, height=1080, size=400, faces=4),  # the GAN tier's benchmark clip
}
DEFAULT_CLIPS = ("720p_1face", "360p_4faces")


def make_clips(folder: str, frames: int, names=DEFAULT_CLIPS) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name in names:
        spec = CLIPS[name]
        path = os.path.join(folder, f"{name}_{frames}.mp4")
        if not os.path.exists(path):
            write_clip(path, moving_faces(frames, spec["width"], spec["height"], size=spec["size"], faces=spec["faces"]),
                       audio=False)
        paths[name] = path
    return paths


def timed_run(src: str, dst: str, options: Options, proc=None) -> tuple[dict, float]:
    """`deidentify`'s report and its wall seconds, in this process; `proc` (a FaceProcessor made
    before the clock starts) is closed after."""
    try:
        t = time.perf_counter()
        rep = deidentify(src, dst, options, processor=proc)
        return rep, time.perf_counter() - t
    finally:
        if proc is not None:
            proc.close()


def bench_ideud(src: str, dst: str, options: Options, restorer=None) -> dict:
    """One run; with `restorer` the models are loaded before the clock starts (a warm processor)."""
    options.force = True
    proc = None
    if restorer is not None:
        from ideud.stream.pipeline import FaceProcessor

        proc = FaceProcessor(options, restorer=restorer)
    rep, wall = timed_run(src, dst, options, proc)
    return {"fps": rep["frames"] / wall, "frames": rep["frames"], "wall_s": wall,
            "processing_fps": rep["fps"], "fallback_face_frames": rep["fallback_face_frames"],
            "restorer": rep["restorer"], "restore_worker": rep.get("restore_worker"),
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
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS), help=f"comma-separated, of {', '.join(CLIPS)}")
    ap.add_argument("--restorer", default="classic",
                    help="a restorer name, or gan-random[:ENGINE]: a full-size GFPGAN with random weights on a "
                         "bench_gan engine (default torch-cudagraphs), for GPU speed without the official weights")
    ap.add_argument("--privacy", default=None, help="privacy guard mode, if the pipeline has one")
    ap.add_argument("--restore-ahead", type=int, default=None, help="frames in flight to the restorer thread")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    names = [c.strip() for c in a.clips.split(",") if c.strip()]
    unknown = [c for c in names if c not in CLIPS]
    if unknown:
        ap.error(f"unknown clip(s) {', '.join(unknown)}")
    clips = make_clips(a.out, a.frames, names)
    results = {"machine": f"{os.cpu_count()} CPU cores", "frames": a.frames, "restorer": a.restorer, "clips": {}}
    restorer = None
    if a.restorer.startswith("gan-random"):
        from bench_gan import machine_description, random_gan_restorer

        restorer = random_gan_restorer(a.restorer.partition(":")[2] or "torch-cudagraphs")
        results["machine"] += f", {machine_description()}"
    for name, src in clips.items():
        opts = Options(seed=1, restorer="none" if restorer is not None else a.restorer, restore_ahead=a.restore_ahead)
        if a.privacy is not None and hasattr(opts, "privacy"):
            opts.privacy = a.privacy
        r = {"ideud": bench_ideud(src, os.path.join(a.out, f"{name}.ideud.mp4"), opts, restorer)}
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
    return save_json(results, a.json)


if __name__ == "__main__":
    sys.exit(main())
