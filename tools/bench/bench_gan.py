"""Benchmark the GAN restorer engines: restored faces/s at 512x512.

    python tools/bench/bench_gan.py [--narrow 0.25] [--batch-sizes 1,4] [--engines ...] [--json out.json]
    python tools/bench/bench_gan.py --grid "torch-eager:1,8 torch-cudagraphs@bf16:8,32" --deadline 300
    python tools/bench/bench_gan.py --stage torch-cudagraphs --stage-batches 4,16

Random weights (speed does not depend on them). On CPU the model is built at
reduced width by default (`--narrow 0.25`); on CUDA at full width. Engines
that cannot run here are listed as skipped with the reason. `--stage` times
the whole restorer stage (5-point alignment, engine, paste-back) on crops the
size of faces in a 1080p frame: 4 faces is one frame of the 4-face clip.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

ENGINES = {
    # name: (backend, options)
    "torch-eager": ("torch", {"modconv": "grouped"}),  # the official grouped modulated conv
    "torch-shared": ("torch", {"modconv": "shared"}),
    "torch-shared-cl": ("torch", {"modconv": "shared", "channels_last": True}),
    "torch-cudagraphs": ("torch", {"modconv": "shared", "cuda_graphs": True, "channels_last": True}),
    "torch-compiled": ("torch", {"modconv": "shared", "compile": True}),
    "torch-compiled-cl": ("torch", {"modconv": "shared", "compile": True, "channels_last": True}),
    # inductor with its own CUDA graphs (mode reduce-overhead)
    "torch-compiled-cudagraphs": ("torch", {"modconv": "shared", "compile": True, "cuda_graphs": True,
                                            "channels_last": True}),
    "onnxruntime": ("onnxruntime", {}),
    "tensorrt": ("tensorrt", {"fp16": True, "streams": 2}),
}


def machine_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, no GPU"


def parse_grid(spec: str, default_batches: Sequence[int] = (1, 4)) -> list:
    """'torch-eager:1,8 torch-cudagraphs@bf16:32' -> [(engine, dtype or None, [batches])]."""
    grid = []
    for entry in spec.split():
        name, _, sizes = entry.partition(":")
        name, _, dtype = name.partition("@")
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
        if dtype and dtype not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"unknown dtype {dtype!r} in {entry!r}")
        batches = [int(b) for b in sizes.split(",") if b.strip()] if sizes else list(default_batches)
        if not batches or min(batches) < 1:
            raise ValueError(f"bad batch sizes in {entry!r}")
        grid.append((name, dtype or None, batches))
    return grid


def engine_opts(name: str, dtype: str, max_batch: int, device: str, cache_dir) -> tuple[str, dict]:
    backend, opts = ENGINES[name]
    opts = dict(opts, max_batch=max_batch)
    if backend == "torch":
        opts.update(device=device, dtype=dtype)
    elif backend == "onnxruntime":
        opts.update(device=device, cache_dir=cache_dir)
    else:
        opts.update(cache_dir=cache_dir)
    return backend, opts


def run_benchmark(narrow: float, grid: Sequence, iters: int = 3, dtype: Optional[str] = None, cache_dir=None,
                  deadline_s: Optional[float] = None, gpu_input: bool = False, log=print,
                  on_result: Optional[Callable[[dict], None]] = None) -> dict:
    """Faces/s for each (engine, dtype, batch sizes) of `grid`; entries past `deadline_s` are skipped."""
    import torch

    from ideud.engines import EngineUnavailable, make_engine
    from ideud.engines.base import measure_throughput
    from ideud.models.gfpgan import GFPGANv1Clean

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    default_dtype = dtype or ("fp16" if cuda else "fp32")
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="ideud-bench-")
    start = time.perf_counter()
    report = {
        "machine": machine_description(),
        "narrow": narrow,
        "size": 512,
        "dtype": default_dtype,
        "iters": iters,
        "input": device if gpu_input and cuda else "host",
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "results": [],
    }

    def add(r: dict):
        report["results"].append(r)
        if on_result:
            on_result(report)

    torch.manual_seed(0)
    for name, entry_dtype, batches in grid:
        dt = entry_dtype or default_dtype
        if deadline_s is not None and time.perf_counter() - start > deadline_s:
            log(f"{name}: skipped (deadline)")
            add({"engine": name, "dtype": dt, "skipped": "deadline"})
            continue
        backend, opts = engine_opts(name, dt, max(batches), device, cache_dir)
        try:
            t0 = time.perf_counter()
            engine = make_engine(GFPGANv1Clean(narrow=narrow).eval(), backend, **opts)
            setup = time.perf_counter() - t0
        except EngineUnavailable as e:
            log(f"{name}: skipped ({e})")
            add({"engine": name, "dtype": dt, "skipped": str(e)})
            continue
        for bs in batches:
            if deadline_s is not None and time.perf_counter() - start > deadline_s:
                add({"engine": name, "dtype": dt, "batch": bs, "skipped": "deadline"})
                continue
            try:
                r = measure_throughput(engine, bs, iters=iters, warmup=2 if opts.get("compile") else 1,
                                       device=device if gpu_input and cuda else None)
            except Exception as e:  # e.g. out of memory at a large batch: record it, go on
                log(f"{name} batch {bs}: failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
                add({"engine": name, "dtype": dt, "batch": bs, "skipped": f"{type(e).__name__}"})
                if cuda:
                    torch.cuda.empty_cache()
                continue
            r.update(engine=name, dtype=dt, describe=engine.describe(), setup_s=round(setup, 2))
            if cuda:
                r["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            log(f"{name} {dt} batch {bs}: {r['faces_per_s']:.2f} faces/s (first call {r['first_call_s']:.1f} s)")
            add(r)
        engine.close()
        del engine
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    return report


def random_gan_restorer(engine_name: str, narrow: float = 1.0, max_batch: int = 16, dtype: Optional[str] = None):
    """A GanRestorer over a full-size GFPGAN with random weights (speed only: no weights ship here)."""
    import torch

    from ideud.engines import make_engine
    from ideud.models.gfpgan import GFPGANv1Clean
    from ideud.stream.restore_gan import GanRestorer

    cuda = torch.cuda.is_available()
    backend, opts = engine_opts(engine_name, dtype or ("fp16" if cuda else "fp32"), max_batch,
                                "cuda" if cuda else "cpu", tempfile.mkdtemp(prefix="ideud-bench-"))
    torch.manual_seed(0)
    return GanRestorer(make_engine(GFPGANv1Clean(narrow=narrow).eval(), backend, **opts))


def synthetic_face_items(n: int, crop: int = 400, face_scale: float = 0.45, seed: int = 0) -> list:
    """`n` restorer inputs shaped like faces of a 1080p frame: a `crop`-pixel crop, eyes ~56 px apart."""
    import numpy as np

    from ideud.models import face_align as fa
    from ideud.stream.types import RestoreItem

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        img = rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8)
        pts = fa.FFHQ_TEMPLATE_512 * face_scale + (crop - 512 * face_scale) / 2 + rng.normal(0, 2, (5, 2))
        items.append(RestoreItem(image=img, original=img.copy(), mask=np.ones((crop, crop), np.float32),
                                 landmarks=fa.facemesh_from_five_points(pts), track_id=i, seed=i))
    return items


def run_stage_benchmark(narrow: float, engine_name: str, batches: Sequence[int], dtype: Optional[str] = None,
                        iters: int = 5, log=print) -> dict:
    """The restorer stage (align + engine + paste-back), faces/s for each number of faces per call."""
    import statistics

    import torch

    from ideud.engines import EngineUnavailable

    dt = dtype or ("fp16" if torch.cuda.is_available() else "fp32")
    try:
        restorer = random_gan_restorer(engine_name, narrow, max(batches), dt)
    except EngineUnavailable as e:
        log(f"stage {engine_name}: skipped ({e})")
        return {"machine": machine_description(), "engine": engine_name, "skipped": str(e)}
    results = []
    for n in batches:
        items = synthetic_face_items(n)
        restorer.restore(items)  # warm-up: capture / kernel selection
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            restorer.restore(items)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        results.append({"faces_per_call": n, "median_s": round(med, 4), "faces_per_s": round(n / med, 2),
                        "ms_per_4_face_frame": round(4000 * med / n, 2)})
        log(f"stage {engine_name} {dt}, {n} faces per call: {n / med:.1f} faces/s")
    restorer.close()
    return {"machine": machine_description(), "engine": engine_name, "dtype": dt, "narrow": narrow,
            "crop": 400, "results": results}


def format_table(report: dict) -> str:
    lines = [
        f"GFPGAN v1 clean 512x512, narrow={report['narrow']}, input on {report.get('input', 'host')} — "
        f"{report['machine']}",
        f"{'engine':<26} {'dtype':>5} {'batch':>5} {'faces/s':>9} {'best f/s':>9} {'ms/face':>9} {'first call s':>13}",
    ]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"{r['engine']:<26} {r.get('dtype', ''):>5} {r.get('batch', '-'):>5} skipped: {r['skipped']}")
        else:
            lines.append(f"{r['engine']:<26} {r['dtype']:>5} {r['batch']:>5} {r['faces_per_s']:>9.2f} "
                         f"{r['best_faces_per_s']:>9.2f} {r['ms_per_face']:>9.1f} {r['first_call_s']:>13.2f}")
    return "\n".join(lines)


def _write_json(path: Optional[str], report: dict) -> None:
    if path:
        tmp = path + ".part"
        with open(tmp, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench_gan", description=__doc__.split("\n")[0])
    p.add_argument("--narrow", type=float, default=None, help="channel width (default 0.25 on CPU, 1 on CUDA)")
    p.add_argument("--batch-sizes", default="1,4", help="comma-separated, e.g. 1,2,4,8")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    p.add_argument("--grid", default=None,
                   help="instead of --engines/--batch-sizes: 'ENGINE[@DTYPE][:B1,B2] ...', e.g. 'torch-eager:1,8'")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None, help="torch engines (default fp16 on CUDA)")
    p.add_argument("--gpu-input", action="store_true", help="feed CUDA tensors (no host copies in the timing)")
    p.add_argument("--deadline", type=float, default=None, help="skip what is left after this many seconds")
    p.add_argument("--stage", default=None, metavar="ENGINE", help="time the restorer stage with this engine instead")
    p.add_argument("--stage-batches", default="4,16", help="faces per restorer call for --stage")
    p.add_argument("--json", default=None, help="write the JSON report here, updated after every result")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_gan: needs torch (pip install 'ideud-video[gan]')", file=sys.stderr)
        return 1
    narrow = args.narrow if args.narrow is not None else (1.0 if torch.cuda.is_available() else 0.25)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.stage:
            if args.stage not in ENGINES:
                raise ValueError(f"unknown engine {args.stage!r}")
            batches = [int(s) for s in args.stage_batches.split(",") if s.strip()]
            if not batches or min(batches) < 1:
                raise ValueError(f"bad --stage-batches {args.stage_batches!r}")
        elif args.grid:
            grid = parse_grid(args.grid)
        else:
            sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
            grid = parse_grid(" ".join(f"{e.strip()}:{','.join(map(str, sizes))}"
                                       for e in args.engines.split(",") if e.strip()))
    except ValueError as e:
        print(f"bench_gan: {e}", file=sys.stderr)
        return 2
    if args.stage:
        report = run_stage_benchmark(narrow, args.stage, batches, dtype=args.dtype, iters=args.iters, log=log)
        _write_json(args.json, report)
        print(json.dumps(report, indent=2))
        return 0
    report = run_benchmark(narrow, grid, iters=args.iters, dtype=args.dtype, deadline_s=args.deadline,
                           gpu_input=args.gpu_input, log=log, on_result=lambda r: _write_json(args.json, r))
    print(format_table(report))
    _write_json(args.json, report)
    if not args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
