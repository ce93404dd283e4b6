"""Speed of the path users run: default `Options()` (privacy guard on, embedded restorer) against
deface, on clips animated from held-out public-domain portraits, with the per-stage table.

    python tools/bench/bench_speed.py [--out DIR] [--frames N] [--deface EXE] [--rounds N] [--seeds 1,2,3]
                                     [--processes 1,2] [--detect-every 1,2] [--detect-thread on,off] [--json FILE]
                                     [--restore-processes auto,0] [--privacy off] [--cpu-time] [--profile FILE.prof]

Clips (made once, deterministic): 640x360 with four people, 1280x720 with one. fps is wall clock
as a user runs it: `ideud-video` in a process of its own, from its start (interpreter, imports,
models) to its exit, as deface's is (before the twenty-eighth session ours ran inside this script,
its imports off the clock; --profile and --cpu-time still run it here). A user's run
draws its tracks' seeds at random, and how far the privacy guard searches depends on them (the
4-face clip's guard share was 18-34 % over seeds 1-20): `--seeds 1,2,3` gives round k the k-th seed
(as many rounds as seeds at least) and reports every round's guard share. Every run of one command shares the
machine's load at that moment, so compare ratios from one run, not numbers across runs; the load
average at the start and end is printed with them. --cpu-time gives the per-stage table in the
main thread's CPU time, which other load disturbs far less than wall clock; the restorer runs
on its own thread (restore-ahead), so its "restore" row stays that thread's wall clock and
"restore_cpu" is its CPU time (the privacy guard's restorer calls included).

deface pins an OpenCV that clashes with mediapipe's: install it in its own venv
(`python -m venv /tmp/deface-venv && /tmp/deface-venv/bin/pip install deface==1.5.0`) and pass
`--deface /tmp/deface-venv/bin/deface`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # as the CLI does: tiny matrices, no BLAS pool fighting for the cores

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from common import background, save_json, write_clip  # noqa: E402,F401  (adds tests/ to the path)
from bench import bench_deface, timed_run  # noqa: E402
from ideud.eval.portraits import held_out_names, portraits_dir  # noqa: E402
from ideud.stream.pipeline import FaceProcessor, Options, StageTimer  # noqa: E402

CLIPS = {
    "360p_4people": dict(width=640, height=360, faces=4, face_w=112, face_h=136),
    "720p_1person": dict(width=1280, height=720, faces=1, face_w=300, face_h=366),
}
# per-face stages: their per-frame cost divided by the faces processed
FACE_STAGES = ("mesh", "identity", "render", "restore", "restore_cpu", "guard", "blend")
STAGE_ORDER = ("decode", "detect", "track", "mesh", "identity", "render", "restore", "restore_cpu", "guard", "blend",
               "encode")


def people_frames(n: int, width: int, height: int, faces: int, face_w: int, face_h: int):
    """RGB frames with `faces` held-out portraits drifting, turning and scaling a little."""
    folder = portraits_dir()
    names = held_out_names(folder) if folder is not None else []
    if len(names) < faces:
        raise SystemExit("bench_speed: the held-out portraits (shared/data/pd-portraits) are not here")
    people = [np.ascontiguousarray(cv2.resize(cv2.imread(str(folder / nm)), (face_w, face_h))[:, :, ::-1])
              for nm in names[:faces]]
    bg = background(width, height)
    ones = np.full((face_h, face_w), 255, np.uint8)
    for i in range(n):
        img = bg.copy()
        t = i / max(n - 1, 1)
        for k, rgb in enumerate(people):
            phase = 2 * math.pi * t + 2 * k
            m = cv2.getRotationMatrix2D((face_w / 2, face_h / 2), 6 * math.sin(phase), 1 + 0.06 * math.sin(phase))
            m[:, 2] += [width * (k + 1) / (faces + 1) + 14 * math.sin(phase) - face_w / 2,
                        height / 2 + 6 * math.cos(phase) - face_h / 2]
            mask = cv2.warpAffine(ones, m, (width, height))
            img[mask > 0] = cv2.warpAffine(rgb, m, (width, height))[mask > 0]
        yield img


def make_clip(folder: str, name: str, frames: int) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}_{frames}.mp4")
    if not os.path.exists(path):
        write_clip(path, people_frames(frames, **CLIPS[name]), audio=False)
    return path


def run_cli(src: str, dst: str, options: Options, thread: bool = True) -> tuple[dict, float]:
    """(report, wall seconds) of `ideud-video` run as a user runs it, in a process of its own:
    the clock holds the interpreter's start and the imports too, as deface's clock holds its own."""
    rep_path = dst + ".report.json"
    cmd = [sys.executable, "-m", "ideud.tools.cli", src, dst, "--force", "-q", "--seed", str(options.seed),
           "--processes", str(options.processes), "--privacy", options.privacy, "--report", rep_path]
    if hasattr(options, "detect_every"):  # not in trees before the fortieth session (PYTHONPATH)
        cmd += ["--detect-every", str(options.detect_every)]
    if options.restore_processes is not None:
        cmd += ["--restore-processes", str(options.restore_processes)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "IDEUD_DETECT_THREAD": "1" if thread else "0"})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bench_speed: ideud-video failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    with open(rep_path) as f:
        rep = json.load(f)
    os.remove(rep_path)
    return rep, wall


def run_ideud(src: str, dst: str, options: Options, cpu_time: bool = False, in_process: bool = False,
              thread: bool = True) -> dict:
    """One run as a user runs it: `ideud-video` in a process of its own, its clock from the start of
    that process (deface's likewise). `in_process` (cProfile, a patched runner) or `cpu_time`: run
    here, the models' loading still on the clock, the imports not; with `cpu_time` the models are
    loaded first (the stage timer is swapped in) and the clock starts after."""
    proc = None
    restore_cpu = [0.0]
    if not (cpu_time or in_process):
        rep, wall = run_cli(src, dst, options, thread)
    else:
        os.environ["IDEUD_DETECT_THREAD"] = "1" if thread else "0"  # read by the runner of this process
        if cpu_time:
            proc = FaceProcessor(options)
            # the main thread's CPU seconds: what a stage costs, not what the machine's other load made
            # it wait (decode and encode, on their own threads, stay wall-clock)
            proc.timer = StageTimer(clock=time.thread_time)
            if proc.worker is not None and not getattr(proc.worker.restorer, "processes", 0):
                # restore-ahead: "restore" is the worker's wall clock, so its CPU too (in restore processes
                # that thread only waits on pipes: the row stays the wall clock of its calls)
                _time_restorer_cpu(proc.worker.restorer, restore_cpu)
        rep, wall = timed_run(src, dst, options, proc)
        if restore_cpu[0] > 0:
            rep["timing"]["restore_cpu"] = {"total_s": restore_cpu[0]}
    frames = max(rep["frames"], 1)
    faces = max(rep["face_frames"], 1)
    stages = {}
    for k in STAGE_ORDER + tuple(s for s in rep["timing"] if s not in STAGE_ORDER):
        if k in rep["timing"]:
            total = rep["timing"][k]["total_s"]
            stages[k] = {"ms_per_frame": round(1000 * total / frames, 2),
                         **({"ms_per_face": round(1000 * total / faces, 2)} if k in FACE_STAGES else {})}
    reasons: dict = {}  # why faces were obfuscated (privacy: the guard found no passing candidate yet)
    for t in rep["tracks"]:
        for why, n in t["fallback_reasons"].items():
            reasons[why] = reasons.get(why, 0) + n
    guard = rep["timing"].get("guard", {}).get("total_s", 0.0)
    priv = rep.get("privacy", {})
    # the guard's share of the run: its stage seconds (wall, or the main thread's CPU with --cpu-time)
    # over the run's wall clock; the chips each recognizer embedded (dlib ~80 ms, EdgeFace ~5 ms each)
    guard_row = {"share_of_wall": round(guard / max(wall, 1e-9), 3), "ms_per_frame": round(1000 * guard / frames, 2),
                 "dlib_chips": priv.get("dlib_chips"), "edgeface_chips": priv.get("edgeface_chips")}
    return {"fps": round(rep["frames"] / wall, 2), "fallback_reasons": reasons, "frames": rep["frames"], "wall_s": round(wall, 2),
            "guard": guard_row,
            "faces_per_frame": round(rep["face_frames"] / frames, 2), "restorer": rep["restorer"],
            "fallback_face_frames": rep["fallback_face_frames"], "processes": rep.get("processes"),
            "restore_processes": rep.get("restore_processes", 0),
            "cpu_s": rep.get("cpu_s"), "stages": stages}


def _time_restorer_cpu(restorer, total: list) -> None:
    """Add the CPU seconds of each `restorer.restore` call (on the restore worker's thread, the
    privacy guard's calls included) to total[0]."""
    inner = restorer.restore

    def restore(items):
        t = time.thread_time()
        try:
            return inner(items)
        finally:
            total[0] += time.thread_time() - t

    restorer.restore = restore


def _median_run(results: list) -> dict:
    """The run with the median fps (the lower middle of an even count), every run's fps beside it."""
    ok = sorted((r for r in results if "fps" in r), key=lambda r: r["fps"])
    if not ok:
        return results[-1]
    return {**ok[(len(ok) - 1) // 2], **({"fps_rounds": [r.get("fps") for r in results]} if len(results) > 1 else {})}


def print_table(name: str, r: dict) -> None:
    print(f"  {name}: {r['fps']} fps, {r['faces_per_frame']} faces/frame, restorer {r['restorer']}, "
          f"fallback face-frames {r['fallback_face_frames']} {r['fallback_reasons']}")
    print(f"    {'stage':10s} {'ms/frame':>9s} {'ms/face':>8s}")
    for k, v in r["stages"].items():
        face = f"{v['ms_per_face']:8.2f}" if "ms_per_face" in v else f"{'':8s}"
        print(f"    {k:10s} {v['ms_per_frame']:9.2f} {face}")
    g = r.get("guard") or {}
    if g.get("dlib_chips") is not None:
        print(f"    guard: {100 * g['share_of_wall']:.1f} % of the wall clock, {g['ms_per_frame']} ms/frame, "
              f"{g['dlib_chips']} dlib chips, {g['edgeface_chips']} EdgeFace chips")
    cpu = r.get("cpu_s") or {}
    if cpu.get("restore_processes"):
        # the share alone does not say which process bounds the run (docs/measured.md, fiftieth session:
        # the restore process did at 72-74 %, shown by adding work to each)
        print(f"    CPU over the {r['wall_s']} s run: this process {cpu['this_process']} s, restore process(es) "
              + ", ".join(f"{c} s ({100 * c / max(r['wall_s'], 1e-9):.0f} %)" for c in cpu["restore_processes"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out", help="folder for clips and outputs")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--clips", default=",".join(CLIPS), help=f"comma-separated, of {', '.join(CLIPS)}")
    ap.add_argument("--deface", help="a deface executable (its own venv) to compare against")
    ap.add_argument("--processes", default="1", help="comma-separated process counts to measure (Options.processes), e.g. 1,2")
    ap.add_argument("--restore-processes", default="auto",
                    help="comma-separated Options.restore_processes to measure, auto = the default, e.g. auto,0")
    ap.add_argument("--profile", help="cProfile the first ideud run into this file")
    ap.add_argument("--cpu-time", action="store_true",
                    help="per-stage table in the main thread's CPU time (robust to other load; FaceMesh's "
                         "own inference threads are not counted)")
    ap.add_argument("--detect-every", default=str(getattr(Options(), "detect_every", 1)),
                    help="comma-separated detection cadences to measure (Options.detect_every), e.g. 1,2")
    ap.add_argument("--privacy", help="override the default privacy mode (off: the path without the guard)")
    ap.add_argument("--detect-thread", default="on",
                    help="comma-separated on/off: detection ahead on a thread (stream/detect_thread.py, on by "
                         "default; off sets IDEUD_DETECT_THREAD=0 for the CLI run), e.g. on,off")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of each, ours and deface alternating; the median run's numbers are reported "
                         "and the ratio of the medians (this machine's speed drifts by 10-30 %% in minutes)")
    ap.add_argument("--seeds", default="1",
                    help="comma-separated track seeds, one per round in turn (a user's run draws them at random)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    seeds = [int(w) for w in a.seeds.split(",") if w.strip()]
    a.rounds = max(a.rounds, len(seeds))
    names = [c.strip() for c in a.clips.split(",") if c.strip()]
    if any(c not in CLIPS for c in names):
        ap.error(f"unknown clip; choose from {', '.join(CLIPS)}")
    rps = [None if w.strip() == "auto" else int(w) for w in a.restore_processes.split(",")]
    everies = [int(w) for w in a.detect_every.split(",")] if hasattr(Options(), "detect_every") else [None]
    threads = [w.strip() == "on" for w in a.detect_thread.split(",") if w.strip()]
    # one label per configuration measured: p<processes>, with _r<restore processes>, _d<detect every>
    # and _t<on|off> (the detection thread) when several are
    runs = [(f"p{n}" + ("" if len(rps) == 1 else f"_r{'auto' if rp is None else rp}")
             + ("" if len(everies) == 1 else f"_d{k}") + ("" if len(threads) == 1 else f"_t{'on' if t else 'off'}"),
             n, rp, k, t)
            for n in (int(w) for w in a.processes.split(",")) for rp in rps for k in everies for t in threads]
    runs = [(lb if [r[0] for r in runs[:i]].count(lb) == 0 else f"{lb}_{i}", *rest)  # a repeat: its own label
            for i, (lb, *rest) in enumerate(runs)]
    load0 = os.getloadavg()
    results = {"machine": f"{os.cpu_count()} CPU cores", "frames": a.frames, "load_avg_start": load0, "clips": {}}
    print(f"{os.cpu_count()} cores, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (1/5/15 min)")
    profiled = False
    for name in names:
        src = make_clip(a.out, name, a.frames)
        rounds: dict = {}  # label -> one result per round (ours alternating with deface, round by round)
        for k in range(a.rounds):
            for label, n, rp, every, thread in runs:
                o = dataclasses.replace(Options(), seed=seeds[k % len(seeds)], force=True, processes=n, restore_processes=rp,
                                        **({} if every is None else {"detect_every": every}))
                if a.privacy:
                    o.privacy = a.privacy
                dst = os.path.join(a.out, f"{name}.ideud.{label}.mp4")
                if a.profile and not profiled:
                    import cProfile

                    prof = cProfile.Profile()
                    res = prof.runcall(run_ideud, src, dst, o, a.cpu_time, True)
                    prof.dump_stats(a.profile)
                    profiled = True
                else:
                    res = run_ideud(src, dst, o, a.cpu_time, thread=thread)
                rounds.setdefault(f"ideud_{label}", []).append(res)
                print_table(f"{name} ideud {label} (processes={n}, restore processes {res['restore_processes']})"
                            + (f", round {k + 1}, seed {o.seed}" if a.rounds > 1 else ""), res)
            if a.deface:
                res = bench_deface(a.deface, src, os.path.join(a.out, f"{name}.deface.mp4"), a.frames)
                if "fps" in res:
                    res["fps"] = round(res["fps"], 2)
                rounds.setdefault("deface", []).append(res)
                print(f"  {name} deface: {res}")
        r = {key: _median_run(got) for key, got in rounds.items()}
        if "fps" in r.get("deface", {}):
            for label, *_ in runs:
                r[f"ratio_{label}_vs_deface"] = round(r[f"ideud_{label}"]["fps"] / r["deface"]["fps"], 2)
                if a.rounds > 1:  # each round's own ratio: how far the machine's drift moves it
                    r[f"ratio_{label}_vs_deface_rounds"] = [round(o["fps"] / d["fps"], 2) for o, d in
                                                            zip(rounds[f"ideud_{label}"], rounds["deface"])]
            print("  " + ", ".join(f"{k} {v}" for k, v in r.items() if k.startswith("ratio")))
        if a.rounds > 1:  # the guard's share, round by round (seed by seed with --seeds)
            for label, *_ in runs:
                r[f"guard_share_{label}_rounds"] = [o["guard"]["share_of_wall"] for o in rounds[f"ideud_{label}"]]
            print("  " + ", ".join(f"{k} {v}" for k, v in r.items() if k.startswith("guard_share")))
        if len(runs) > 1:
            base = r[f"ideud_{runs[0][0]}"]["fps"]
            print("  against the first: " + ", ".join(f"{lb} {r[f'ideud_{lb}']['fps'] / base:.2f}x" for lb, *_ in runs))
        results["clips"][name] = r
    results["load_avg_end"] = os.getloadavg()
    print(f"load average at the end {results['load_avg_end'][0]:.2f}")
    return save_json(results, a.json)


if __name__ == "__main__":
    sys.exit(main())
