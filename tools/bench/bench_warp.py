"""The per-face piecewise-affine warps, before and after a change, on the faces of a real run.

    python tools/bench/bench_warp.py [--calls FILE] [--ref REV] [--out DIR] [--repeat N] [--json FILE]

Records once (into --calls) what the three warps of the restore path get on bench_speed's
640x360 four-person clip at default settings: the render (stream/render.py `render` ->
`warp_field`), the occluder cut's reference (stream/occlusion.py -> `warp_field`) and the prior
restorer's canvas (models/face_bank.py `MeshWarp`, then its maps for the canvas landmarks). Then
replays every call, in the recorded order, with the code of git revision --ref (default HEAD,
loaded from git into modules of its own) and with the working tree's, call by call in the same
run, and prints per warp: ms per call (CPU time of this process, the median of --repeat passes),
and how far the new maps are from the old ones (max and mean px, and the PSNR of the crop the
render warps, inside the hull of the face mesh).
"""
from __future__ import annotations

import argparse
import inspect
import os
import pickle
import subprocess
import sys
import time
import types
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # as the CLI does

import numpy as np  # noqa: E402

from common import REPO, save_json  # noqa: E402

KINDS = ("render", "occlusion", "mesh")


def record(path: str, out_dir: str, frames: int) -> None:
    """Run the CLI on the bench clip (restorer in this process) and keep every warp's inputs."""
    from bench_speed import make_clip

    import ideud.models.face_bank as fbk
    import ideud.stream.occlusion as occlusion
    import ideud.stream.render as render
    from ideud.tools.cli import main

    clip = make_clip(out_dir, "360p_4people", frames)
    calls = []
    field, mesh_init = render.warp_field, fbk.MeshWarp.__init__

    def recording_field(shape, src, dst, anchors, **kw):
        kind = "occlusion" if inspect.stack()[1].function == "_occluder" else "render"
        crop = inspect.stack()[1].frame.f_locals.get("rgb_crop") if kind == "render" else None
        calls.append((kind, dict(shape=tuple(shape), src=np.array(src), dst=np.array(dst),
                                 anchors=np.array(anchors), crop=None if crop is None else np.array(crop))))
        return field(shape, src, dst, anchors, **kw)

    def recording_init(self, target, shape, step=2, **kw):
        calls.append(("mesh", dict(target=np.array(target), shape=tuple(shape), step=step)))
        mesh_init(self, target, shape, step=step, **kw)

    render.warp_field = occlusion.warp_field = recording_field
    fbk.MeshWarp.__init__ = recording_init
    try:
        rc = main([clip, os.path.join(out_dir, "bench_warp.mp4"), "--seed", "7", "--restore-processes", "0",
                   "-q", "--force"])
    finally:
        render.warp_field = occlusion.warp_field = field
        fbk.MeshWarp.__init__ = mesh_init
    if rc != 0:
        raise SystemExit(f"bench_warp: the recording run failed ({rc})")
    with open(path, "wb") as f:
        pickle.dump(calls, f)


def _module_at(rev: str, path: str, name: str, pa=None) -> types.ModuleType:
    """The module `path` as it was at `rev`, as a module of its own; `pa`: the piecewise_affine
    module it imports (that revision's)."""
    import ideud.models

    code = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout
    mod = types.ModuleType(name)
    mod.__file__ = f"{rev}:{path}"
    sys.modules[name] = mod  # dataclasses and annotations look the module up
    real = ideud.models.piecewise_affine
    try:
        if pa is not None:  # `from ideud.models import piecewise_affine` takes the package's attribute
            ideud.models.piecewise_affine = sys.modules["ideud.models.piecewise_affine"] = pa
        exec(compile(code, mod.__file__, "exec"), mod.__dict__)
    finally:
        ideud.models.piecewise_affine = sys.modules["ideud.models.piecewise_affine"] = real
    return mod


def implementations(rev: str) -> dict:
    """{'ref': (warp_field, MeshWarp, takes keys) at `rev`, 'new': the working tree's}."""
    import ideud.models.face_bank as fbk  # (imports piecewise_affine: the package attribute `_module_at` swaps)
    import ideud.stream.render as render

    old_pa = _module_at(rev, "models/piecewise_affine.py", "bench_warp_ref_pa")
    old_render = _module_at(rev, "stream/render.py", "bench_warp_ref_render", pa=old_pa)
    old_bank = _module_at(rev, "models/face_bank.py", "bench_warp_ref_face_bank", pa=old_pa)
    return {name: (field, mesh, "key" in inspect.signature(field).parameters)
            for name, field, mesh in (("ref", old_render.warp_field, old_bank.MeshWarp),
                                      ("new", render.warp_field, fbk.MeshWarp))}


def run_call(impl: tuple, kind: str, d: dict, track: int, canvas: np.ndarray):
    """One recorded warp; a revision that kept triangulations per track gets the track's key."""
    warp_field, mesh_warp, keyed = impl
    if kind == "mesh":
        kw = {"key": ("prior", track)} if keyed else {}
        return mesh_warp(d["target"], d["shape"], step=d["step"], **kw).maps(canvas)
    kw = {"key": (kind, track)} if keyed else {}
    return warp_field(d["shape"], d["src"], d["dst"], d["anchors"], **kw)


def _tracks(calls: list) -> list:
    """A stand-in track id per call (the ref revision's caches were per track): the nearest face
    of the last frame's, by mesh centre, per kind."""
    ids, last = [], {}
    for kind, d in calls:
        pts = d["target"] if kind == "mesh" else d["dst"]
        c = pts.mean(0)
        held = last.setdefault(kind, [])
        dist = [np.hypot(*(c - h)) for h in held]
        if dist and min(dist) < 20:
            t = int(np.argmin(dist))
            held[t] = c
        else:
            held.append(c)
            t = len(held) - 1
        ids.append(t)
    return ids


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[where]
    mse = float(np.mean(d ** 2)) if d.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="/tmp/bench_warp_calls.pkl", help="recorded warp inputs (recorded if missing)")
    ap.add_argument("--out", default="/tmp/bench_out", help="folder of bench_speed's clips")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--ref", default="HEAD", help="git revision to compare with")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the calls (the median is given)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    if not Path(a.calls).exists():
        record(a.calls, a.out, a.frames)
    with open(a.calls, "rb") as f:
        calls = pickle.load(f)
    import cv2

    from ideud.models import face_prior as fp

    canvas = fp.canvas_landmarks()
    impls = implementations(a.ref)
    tracks = _tracks(calls)
    times = {(name, kind): [] for name in impls for kind in KINDS}
    for _ in range(a.repeat):
        spent = {key: 0.0 for key in times}
        for (kind, d), track in zip(calls, tracks):
            for name, impl in impls.items():  # one call, both ways, back to back
                t0 = time.process_time()
                run_call(impl, kind, d, track, canvas)
                spent[(name, kind)] += time.process_time() - t0
        for key in times:
            times[key].append(spent[key])
    counts = {kind: sum(1 for k, _ in calls if k == kind) for kind in KINDS}
    result = {"calls": counts, "load_average": os.getloadavg(), "ref": a.ref}
    for kind in KINDS:
        for name in impls:
            result[f"{kind}_{name}_ms"] = round(1000 * float(np.median(times[(name, kind)])) / max(1, counts[kind]), 3)
    # how far apart: maps in px, and the render's warped crop inside its face mask
    for kind in KINDS:
        worst, means, psnrs = 0.0, [], []
        for (k, d), track in zip(calls, tracks):
            if k != kind:
                continue
            ref = run_call(impls["ref"], kind, d, track, canvas)
            new = run_call(impls["new"], kind, d, track, canvas)
            diff = np.hypot(ref[0] - new[0], ref[1] - new[1])
            worst, means = max(worst, float(diff.max())), means + [float(diff.mean())]
            if kind == "render" and d.get("crop") is not None:
                crop = d["crop"]
                h, w = crop.shape[:2]
                shown = [cv2.remap(crop, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for mx, my in (ref, new)]
                face = np.zeros((h, w), np.uint8)  # the mesh's hull: the face the render changes
                cv2.fillConvexPoly(face, cv2.convexHull(np.round(d["dst"]).astype(np.int32)), 1)
                psnrs.append(psnr(shown[0], shown[1], face > 0))
        result[f"{kind}_max_px"] = round(worst, 6)
        result[f"{kind}_mean_px"] = float(np.mean(means)) if means else 0.0
        if psnrs:
            finite = [p for p in psnrs if np.isfinite(p)]
            result["render_psnr_min_db"] = min(psnrs)
            result["render_identical_share"] = 1.0 - len(finite) / len(psnrs)
    print(f"calls: {counts}; load average {result['load_average']}")
    print(f"{'warp':<10} {'ref ms':>8} {'new ms':>8} {'max px':>10} {'mean px':>10}")
    for kind in KINDS:
        print(f"{kind:<10} {result[f'{kind}_ref_ms']:>8.3f} {result[f'{kind}_new_ms']:>8.3f} "
              f"{result[f'{kind}_max_px']:>10.2g} {result[f'{kind}_mean_px']:>10.2g}")
    if "render_psnr_min_db" in result:
        print(f"render: warped crops inside the face polygon, min PSNR {result['render_psnr_min_db']:.1f} dB; "
              f"identical {100 * result['render_identical_share']:.0f} %")
    return save_json(result, a.json)


if __name__ == "__main__":
    sys.exit(main())
