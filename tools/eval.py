"""``ideud-eval``: privacy / utility metrics of a de-identified video.

    ideud-eval ORIGINAL DEIDENTIFIED [--json out.json] [--sheet sheet.png]
               [--max-frames N] [--every K] [--cnn] [--upsample U] [--min-score S]
               [--per-face]
    ideud-eval sweep IN [--scales 0,0.1,0.2,...] [--out DIR] [--seed N]
               [--max-frames N] [--every K] [--cnn]

The metrics are defined in ``ideud.eval``.  Bad input (missing
file, unreadable file, size or frame-count mismatch) prints one line and
exits with status 2; other failures print one line and exit with 1
(``--traceback`` shows the Python traceback instead).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

PROG = "ideud-eval"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + error)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="read at most N frames")
    p.add_argument("--every", type=int, default=1, metavar="K", help="evaluate every K-th frame (default 1)")
    p.add_argument("--cnn", action="store_true", help="dlib's MMOD CNN face detector (slow on CPU) instead of HOG")
    p.add_argument("--upsample", type=int, default=1, metavar="U",
                   help="detector upsampling; 1 finds faces down to ~40 px (default 1)")
    p.add_argument("--min-score", type=float, default=0.3, metavar="S",
                   help="minimum detector score for a face in the original (default 0.3)")
    p.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)


def _eval_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Privacy/utility metrics: ORIGINAL vs DEIDENTIFIED (videos or images). "
                                       f"Also: '{PROG} sweep IN ...' (see '{PROG} sweep -h').")
    p.add_argument("original")
    p.add_argument("deidentified")
    p.add_argument("--json", metavar="OUT.json", help="write the full report (distances and aggregates only)")
    p.add_argument("--sheet", metavar="SHEET.png",
                   help="write a before/after contact sheet (shows the ORIGINAL faces)")
    p.add_argument("--per-face", action="store_true", help="list every face-frame in the JSON report")
    _common(p)
    return p


def _sweep_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} sweep",
                description="Run the de-identification pipeline at several --scale values and plot DIS and "
                            "utility against the scale.")
    p.add_argument("input")
    p.add_argument("--scales", default="0,0.1,0.2,0.25,0.3,0.4,0.5", help="comma-separated scales")
    p.add_argument("--out", default="ideud-sweep", metavar="DIR", help="output folder (default ./ideud-sweep)")
    p.add_argument("--seed", type=int, default=0,
                   help="pipeline seed (Options.seed), the same at every scale (default 0)")
    p.add_argument("--privacy", default="off", choices=["off", "balanced", "strict"],
                   help="privacy guard during the sweep (default off: the curve shows the method itself; "
                        "with the guard, faces it cannot clear are pixelated)")
    p.add_argument("--restorer", default="auto", help="the pipeline's --restorer (default auto)")
    _common(p)
    return p


def _options(a):
    from ideud.eval import EvalOptions

    if a.every < 1:
        raise _BadInput("--every must be >= 1")
    if a.max_frames is not None and a.max_frames < 1:
        raise _BadInput("--max-frames must be >= 1")
    if a.upsample < 0:
        raise _BadInput("--upsample must be >= 0")
    return EvalOptions(max_frames=a.max_frames, every=a.every, cnn=a.cnn, upsample=a.upsample,
                       min_score=a.min_score, per_face=getattr(a, "per_face", False))


class _BadInput(ValueError):
    pass


def pipeline_run_fn(seed: Optional[int] = None, privacy: str = "off", restorer: str = "auto"):
    """``run_fn(src, dst, scale)`` backed by ``ideud.stream.pipeline.deidentify`` (imported lazily)."""
    try:
        from ideud.stream.pipeline import Options, deidentify
    except ImportError as e:
        raise RuntimeError(
            f"the de-identification pipeline (ideud.stream.pipeline) is not available: {e}") from None

    def run(src: str, dst: str, scale: float):
        return deidentify(src, dst, Options(scale=scale, seed=seed, privacy=privacy, restorer=restorer,
                                                force=True))

    return run


def _run_eval(a) -> int:
    from ideud.eval import evaluate, summary_lines, write_json

    opt = _options(a)
    rep = evaluate(a.original, a.deidentified, opt, sheet=a.sheet)
    for line in summary_lines(rep):
        print(line)
    if a.json:
        print(f"report: {write_json(rep, a.json)}")
    if rep.get("sheet"):
        print(f"contact sheet (shows original faces): {rep['sheet']}")
    return 0


def _run_sweep(a) -> int:
    from ideud.eval import probe, sweep

    try:
        scales = [float(s) for s in a.scales.split(",") if s.strip()]
    except ValueError:
        raise _BadInput(f"--scales: not a comma-separated list of numbers: {a.scales!r}") from None
    if not scales:
        raise _BadInput("--scales is empty")
    opt = _options(a)
    probe(a.input)  # bad input before importing the pipeline
    res = sweep(a.input, scales, pipeline_run_fn(a.seed, a.privacy, a.restorer), a.out, opt, log=print)
    print(f"sweep: {res['json']}, {res['csv']}" + (f", {res['plot']}" if res["plot"] else ""))
    if res["note"]:
        print(f"note: {res['note']}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_sweep = bool(argv) and argv[0] == "sweep"
    parser = _sweep_parser() if is_sweep else _eval_parser()
    try:
        a = parser.parse_args(argv[1:] if is_sweep else argv)
    except SystemExit as e:
        return int(e.code or 0)
    from ideud.eval import EvalInputError

    try:
        return _run_sweep(a) if is_sweep else _run_eval(a)
    except (EvalInputError, _BadInput) as e:
        if a.traceback:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line, no traceback, unless --traceback
        if a.traceback:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
