"""This checkout against another revision, runs alternating, on one clip at default settings: is a
change faster, and is its output the same?

    python tools/bench/bench_ab.py --base REV [--clip 360p_4people | FILE] [--pairs 3] [--frames 150]
                                   [--option name=value ...] [--json FILE]

On this 2-core machine the same run drifts by 10-30 % between minutes, so one before and one after
tell little: the two trees take turns (base, this, base, this, ...) and the means of the pairs are
compared. Each run is a fresh process (models loaded in it, as a user's run), writes FFV1 (lossless:
the decoded frames' digest says whether the output is the same bit for bit) and reports wall
seconds, fps and the stage table's ms a frame (guard, restore, mesh, ...). The base revision is
taken from git (`git archive`) into a temporary folder and imported from there; the clip is
`bench_speed.py`'s (made once) or any video file.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench_speed import CLIPS, make_clip  # noqa: E402  (adds tests/ to the path)
from common import REPO, save_json

STAGES = ("detect", "mesh", "identity", "render", "restore", "guard", "blend", "decode", "encode")

# one run, in a process of its own; prints one JSON line (the option values come in as JSON)
RUNNER = r"""
import hashlib, json, os, sys, time
for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import av
from ideud.stream.pipeline import Options, deidentify
src, out, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t = time.perf_counter()
rep = deidentify(src, out, Options(seed=1, force=True, codec="ffv1", audio=False, **extra))
wall = time.perf_counter() - t
h = hashlib.sha256()
with av.open(out) as c:
    for f in c.decode(video=0):
        h.update(f.to_ndarray(format="rgb24").tobytes())
timing = rep.get("timing", {})
print(json.dumps({"wall_s": round(wall, 2), "fps": rep.get("fps"), "frames": h.hexdigest()[:16],
                  "ms": {k: v.get("ms_per_frame") for k, v in timing.items() if isinstance(v, dict)}}))
"""


def base_tree(rev: str, folder: Path) -> Path:
    """`rev` of this repository, importable as `ideud` from the returned folder."""
    tree = folder / "tree"
    tree.mkdir()
    blob = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    tar = folder / "tree.tar"
    tar.write_bytes(blob)
    with tarfile.open(tar) as t:
        t.extractall(tree)
    pkg = folder / "path" / "ideud"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for sub in ("stream", "models", "engines", "tools", "eval"):
        if (tree / sub).exists():
            (pkg / sub).symlink_to(tree / sub)
    return folder / "path"


def run_once(clip: str, out: str, extra: dict, path: Path | None) -> dict:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    p = subprocess.run([sys.executable, "-c", RUNNER, clip, out, json.dumps(extra)], capture_output=True, text=True,
                       env=env, cwd=tempfile.gettempdir())
    if p.returncode != 0:
        raise SystemExit(f"bench_ab: a run failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the git revision to compare with (HEAD: the last commit)")
    ap.add_argument("--clip", default="360p_4people", help=f"{' or '.join(CLIPS)}, or a video file")
    ap.add_argument("--frames", type=int, default=150, help="frames of a bench_speed clip")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], help="an Options field for both runs, name=value")
    ap.add_argument("--out", default="/tmp/ideud_bench_ab")
    ap.add_argument("--json")
    a = ap.parse_args()
    clip = make_clip(a.out, a.clip, a.frames) if a.clip in CLIPS else a.clip
    extra = dict(option(o) for o in a.option)
    rows = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = base_tree(a.base, Path(tmp))
        for i in range(a.pairs):
            for name, p in (("base", path), ("this", None)):
                r = run_once(clip, os.path.join(tmp, f"{name}{i}.mkv"), extra, p)
                rows[name].append(r)
                print(f"  {name} {i + 1}: {r['fps']} fps, guard {r['ms'].get('guard')} ms, restore "
                      f"{r['ms'].get('restore')} ms a frame, frames {r['frames']}", flush=True)
    print(f"{a.clip}, {a.pairs} pairs, base {a.base} against this checkout{' with ' + str(extra) if extra else ''}:")
    print(f"    {'':10}{'base':>10}{'this':>10}{'change':>9}")
    for key in ("fps", "wall_s") + STAGES:
        vals = {n: [r[key] if key in r else r["ms"].get(key) for r in rows[n]] for n in rows}
        if any(v is None for vs in vals.values() for v in vs):
            continue
        m = {n: sum(v) / len(v) for n, v in vals.items()}
        change = f"{100 * (m['this'] / m['base'] - 1):+.1f} %" if m["base"] else ""
        label = key if key in ("fps", "wall_s") else f"{key} ms"
        print(f"    {label:10}{m['base']:>10.2f}{m['this']:>10.2f}{change:>9}")
    same = {r["frames"] for rs in rows.values() for r in rs}
    print("    output: " + ("the same bit for bit in every run" if len(same) == 1 else f"differs ({len(same)} digests)"))
    return save_json({"clip": a.clip, "base": a.base, "options": extra, "runs": rows, "same_output": len(same) == 1},
                     a.json)


if __name__ == "__main__":
    sys.exit(main())
