"""Benchmark the GAN restorer engines: restored faces/s at 512x512.

    python -m ideud.tools.bench_gan [--narrow 0.25] [--batch-sizes 1,4] [--engines ...] [--json out.json]

Random weights (speed does not depend on them). On CPU the model is built at
reduced width by default (`--narrow 0.25`); on CUDA at full width. Engines
that cannot run here are listed as skipped with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Optional, Sequence

ENGINES = {
    # name: (backend, options)
    "torch-eager": ("torch", {"modconv": "grouped"}),
    "torch-shared": ("torch", {"modconv": "shared"}),
    "torch-shared-cl": ("torch", {"modconv": "shared", "channels_last": True}),
    "torch-compiled": ("torch", {"modconv": "shared", "compile": True}),
    "torch-cudagraphs": ("torch", {"modconv": "shared", "cuda_graphs": True, "channels_last": True}),
    "onnxruntime": ("onnxruntime", {}),
    "tensorrt": ("tensorrt", {"fp16": True, "streams": 2}),
}


def machine_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, no GPU"


def run_benchmark(narrow: float, batch_sizes: Sequence[int], engines: Sequence[str], iters: int = 3,
                  dtype: Optional[str] = None, cache_dir=None, log=print) -> dict:
    import torch

    from ideud.engines import EngineUnavailable, make_engine
    from ideud.engines.base import measure_throughput
    from ideud.models.gfpgan import GFPGANv1Clean

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = dtype or ("fp16" if cuda else "fp32")
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="ideud-bench-")
    torch.manual_seed(0)
    results = []
    for name in engines:
        backend, opts = ENGINES[name]
        opts = dict(opts, max_batch=max(batch_sizes))
        if backend == "torch":
            opts.update(device=device, dtype=dtype)
        elif backend == "onnxruntime":
            opts.update(device=device, cache_dir=cache_dir)
        else:
            opts.update(cache_dir=cache_dir)
        try:
            t0 = time.perf_counter()
            engine = make_engine(GFPGANv1Clean(narrow=narrow).eval(), backend, **opts)
            setup = time.perf_counter() - t0
        except EngineUnavailable as e:
            log(f"{name}: skipped ({e})")
            results.append({"engine": name, "skipped": str(e)})
            continue
        for bs in batch_sizes:
            r = measure_throughput(engine, bs, iters=iters, warmup=2 if opts.get("compile") else 1)
            r.update(engine=name, describe=engine.describe(), setup_s=round(setup, 2))
            log(f"{name} batch {bs}: {r['faces_per_s']:.2f} faces/s")
            results.append(r)
        engine.close()
    return {
        "machine": machine_description(),
        "narrow": narrow,
        "size": 512,
        "dtype": dtype,
        "iters": iters,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "results": results,
    }


def format_table(report: dict) -> str:
    lines = [
        f"GFPGAN v1 clean 512x512, narrow={report['narrow']}, {report['dtype']} — {report['machine']}",
        f"{'engine':<18} {'batch':>5} {'faces/s':>9} {'best f/s':>9} {'ms/face':>9} {'first call s':>13}",
    ]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"{r['engine']:<18} {'-':>5} {'skipped: ' + r['skipped']}")
        else:
            lines.append(f"{r['engine']:<18} {r['batch']:>5} {r['faces_per_s']:>9.2f} {r['best_faces_per_s']:>9.2f} "
                         f"{r['ms_per_face']:>9.1f} "
                         f"{r['first_call_s']:>13.2f}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench_gan", description=__doc__.split("\n")[0])
    p.add_argument("--narrow", type=float, default=None, help="channel width (default 0.25 on CPU, 1 on CUDA)")
    p.add_argument("--batch-sizes", default="1,4", help="comma-separated, e.g. 1,2,4,8")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None, help="torch engines (default fp16 on CUDA)")
    p.add_argument("--json", default=None, help="write the JSON report here (default: print it after the table)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_gan: needs torch (pip install 'ideud-video[gan]')", file=sys.stderr)
        return 1
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        print(f"bench_gan: bad --batch-sizes {args.batch_sizes!r}", file=sys.stderr)
        return 2
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        print(f"bench_gan: unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    narrow = args.narrow if args.narrow is not None else (1.0 if torch.cuda.is_available() else 0.25)
    report = run_benchmark(narrow, sizes, engines, iters=args.iters, dtype=args.dtype,
                           log=lambda m: print(m, file=sys.stderr))
    print(format_table(report))
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
