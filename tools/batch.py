"""`ideud-video batch INPUTS... --out DIR`: many files (and long files in segments) on a Ray cluster.

Inputs are files, folders (searched recursively for videos and images) or
globs (quote them); outputs mirror each input's tree under DIR. Without
--ray-address a local Ray instance is started. DIR/ideud-manifest.jsonl
records every finished file (done, or failed with its error); a re-run skips
the files already done with the same options. Exit status: 0 when every file
is done, 1 when any failed, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ideud.tools.frontdoor import EXIT_FAIL, EXIT_OK, add_pipeline_arguments, pipeline_options, run_guarded, write_json

PROG = "ideud-video batch"
SINGLE_ONLY = frozenset({"force", "report", "quiet"})  # single-file options that batch has its own way of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video/image files, folders or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (mirrors the input tree)")
    c = p.add_argument_group("cluster")
    c.add_argument("--ray-address", metavar="ADDR",
                   help="join a running cluster: auto, or ray://host:port (default: start a local Ray instance)")
    c.add_argument("--workers", type=int, metavar="N",
                   help="tasks at once (default: one per CPU of the cluster, or per GPU share)")
    c.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F",
                   help="GPUs each task reserves, e.g. 0.25 (default 0: CPU only)")
    c.add_argument("--segment-seconds", type=float, default=60.0, metavar="S",
                   help="split videos longer than ~1.5x this into keyframe-aligned segments (default 60; 0: never)")
    c.add_argument("--overlap-seconds", type=float, default=3.0, metavar="S",
                   help="pre-roll each segment re-analyses to stitch tracks across the boundary (default 3)")
    c.add_argument("--retries", type=int, default=3, help="retries of a task whose worker died (default 3)")
    c.add_argument("--format", dest="ext", metavar="EXT",
                   help="output container for videos, e.g. mkv (default: the input's extension)")
    c.add_argument("--report", metavar="JSON", help="write every file's report (tracks, segments, timing)")
    c.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    # the pipeline options are the single-file command's own (same names, defaults and help)
    add_pipeline_arguments(p, skip=SINGLE_ONLY)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    a = parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ideud.stream.batch import run_batch
    from ideud.stream.errors import UsageError

    a.force = True  # outputs under --out are the batch's own; the manifest decides what is skipped
    if a.workers is not None and a.workers < 1:
        raise UsageError("--workers must be >= 1")
    if a.gpus_per_worker < 0:
        raise UsageError("--gpus-per-worker must be >= 0")
    options = pipeline_options(a)
    res = run_batch(a.inputs, a.out, options, address=a.ray_address, workers=a.workers,
                    gpus_per_worker=a.gpus_per_worker, segment_seconds=a.segment_seconds,
                    overlap_seconds=a.overlap_seconds, max_retries=a.retries, ext=a.ext, progress=not a.quiet)
    if a.report:
        write_json(a.report, {"done": res.done, "failed": res.failed, "skipped": res.skipped,
                              "wall_s": res.wall_s, "frames": res.frames, "files": res.reports})
    if not a.quiet:
        fps = f", {res.frames / res.wall_s:.1f} frames/s" if res.wall_s and res.frames else ""
        print(f"{PROG}: {len(res.done)} done, {len(res.skipped)} skipped, {len(res.failed)} failed "
              f"in {res.wall_s:.1f} s{fps}; manifest {res.manifest}", file=sys.stderr)
        for rel, err in res.failed.items():
            print(f"  failed: {rel}: {err}", file=sys.stderr)
    return EXIT_OK if res.ok else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(run_guarded(PROG, main, sys.argv[1:]))
