"""`ideud-video`: the command line.

    ideud-video IN OUT [options]      de-identify a video or an image
    ideud-video demo OUT.mp4          original | de-identified, from a bundled portrait
    ideud-video models list|fetch|verify   GAN-tier weights (optional)

Errors are one line on stderr and a non-zero exit (2: bad input or usage,
1: failure while processing, 130: interrupted); the input is never modified,
and a failed run leaves no output file behind.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Optional

PROG = "ideud-video"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Give every face in a video (or image) a new identity that stays the same for that person, "
                    "keeping pose, expression, lighting, hair, clothes and background. "
                    f"Other commands: '{PROG} demo OUT.mp4', '{PROG} models list|fetch|verify'.",
    )
    p.add_argument("input", help="input video or image (file path)")
    p.add_argument("output", help="output path; its extension picks the container (.mp4, .mkv, .mov, .jpg, .png)")
    g = p.add_argument_group("identity")
    g.add_argument("--scale", type=float, default=0.25, metavar="SIGMA",
                   help="standard deviation of the ID-code perturbation; 0.2-0.3 recommended (default 0.25)")
    g.add_argument("--seed", type=int, default=None,
                   help="fix the random seed so a re-run gives the same fake identities (default: random per run)")
    g.add_argument("--restorer", default="classic",
                   help="step II restorer: classic (no weights, default), none")
    g.add_argument("--fallback", default="pixelate", choices=["pixelate", "blur", "black"],
                   help="obfuscation for a face that cannot be de-identified (default pixelate)")
    d = p.add_argument_group("detection")
    d.add_argument("--min-face", type=int, default=12, metavar="PX",
                   help="faces smaller than this are obfuscated instead of re-rendered (default 12)")
    d.add_argument("--det-threshold", type=float, default=0.5, metavar="P",
                   help="face detector confidence threshold; lower finds more faces (default 0.5)")
    d.add_argument("--detector", default="auto", help="face detector: auto, centerface, blazeface")
    e = p.add_argument_group("output")
    e.add_argument("--codec", default="libx264", help="video encoder (default libx264; ffv1 for lossless)")
    e.add_argument("--crf", type=int, default=18, help="quality for libx264/libx265, lower is better (default 18)")
    e.add_argument("--preset", default="veryfast", help="libx264/libx265 speed preset (default veryfast)")
    e.add_argument("--no-audio", action="store_true", help="drop the audio streams (default: copied unchanged)")
    e.add_argument("--keep-metadata", action="store_true",
                   help="keep the input's metadata (GPS, device, author, dates); default: stripped")
    e.add_argument("--force", action="store_true", help="replace an existing output file")
    e.add_argument("--report", metavar="JSON",
                   help="write a JSON report: per track frames, sigma, perturbation, fallbacks; timings per stage")
    e.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def _options(a):
    from ideud.stream.pipeline import Options

    if not 0 <= a.scale <= 5:
        raise ValueError("--scale must be between 0 and 5")
    if a.min_face < 0:
        raise ValueError("--min-face must be >= 0")
    if not 0 < a.det_threshold < 1:
        raise ValueError("--det-threshold must be between 0 and 1")
    return Options(scale=a.scale, seed=a.seed, min_face=a.min_face, det_threshold=a.det_threshold,
                   detector=a.detector, restorer=a.restorer, fallback=a.fallback, codec=a.codec, crf=a.crf,
                   preset=a.preset, audio=not a.no_audio, keep_metadata=a.keep_metadata, force=a.force)


def _progress(quiet: bool):
    if quiet:
        return None, None
    from tqdm import tqdm

    holder = []  # made on the first frame, so errors before it print no empty bar

    def on_frame(done: int, total: int):
        if not holder:
            holder.append(tqdm(total=total or None, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr))
        holder[0].update(done - holder[0].n)
    return holder, on_frame


def write_json(path: str, data: dict) -> None:
    from ideud.stream.encode import temp_path_for

    tmp = temp_path_for(path)
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _summary(rep: dict) -> str:
    t = rep.get("tracks", [])
    fb = rep.get("fallback_face_frames", 0)
    ff = rep.get("face_frames", 0)
    fps = rep.get("fps")
    return (f"{rep.get('frames', 0)} frames, {len(t)} face tracks, {ff} face-frames de-identified"
            f"{f' ({fb} obfuscated)' if fb else ''}" + (f", {fps:.1f} fps" if fps else ""))


def run(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    from ideud.stream.pipeline import deidentify

    bars, on_frame = _progress(a.quiet)
    try:
        rep = deidentify(a.input, a.output, _options(a), on_frame=on_frame)
    finally:
        for bar in bars or ():
            bar.close()
    if a.report:
        write_json(a.report, rep)
    if not a.quiet:
        print(f"{a.output}: {_summary(rep)}", file=sys.stderr)
    return EXIT_OK


def demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} demo", description="De-identify a generated clip of a public-domain "
                                "portrait and write original | de-identified side by side.")
    p.add_argument("output", help="side-by-side video to write (.mp4)")
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--frames", type=int, default=75, help="clip length (default 75 frames, 3 s)")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    from ideud.stream.pipeline import Options, UsageError
    from ideud.tools.demo import run_demo

    if os.path.exists(a.output) and not a.force:
        raise UsageError(f"{a.output}: exists; use --force to replace it")
    rep = run_demo(a.output, Options(scale=a.scale, seed=a.seed), frames=a.frames)
    print(f"{a.output}: original | de-identified; {_summary(rep)}", file=sys.stderr)
    return EXIT_OK


def models(argv: list[str]) -> int:
    from ideud.tools import models_cli

    return models_cli.main(argv)


COMMANDS = {"demo": demo, "models": models}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ideud.stream.decode import InputError
    from ideud.stream.encode import OutputError

    try:
        from ideud.stream.pipeline import UsageError
    except ImportError as e:  # a broken install: say what is missing
        print(f"{PROG}: error: cannot load the pipeline ({e})", file=sys.stderr)
        return EXIT_FAIL
    # SIGTERM ends the run like Ctrl-C: the partial output is removed, the input untouched
    signal.signal(signal.SIGTERM, _interrupt)
    cmd = COMMANDS.get(argv[0]) if argv and not os.path.exists(argv[0]) else None
    try:
        return cmd(argv[1:]) if cmd else run(argv)
    except (InputError, UsageError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{PROG}: error: out of memory", file=sys.stderr)
        return EXIT_FAIL
    except Exception as e:  # the user gets one line; IDEUD_DEBUG=1 shows the traceback
        if os.environ.get("IDEUD_DEBUG"):
            raise
        print(f"{PROG}: error: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
