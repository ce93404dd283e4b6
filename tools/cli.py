"""`ideud-video`: the command line.

    ideud-video IN OUT [options]      de-identify a video, image or live stream
    ideud-video demo OUT.mp4          original | de-identified, from a bundled portrait
    ideud-video batch INPUTS... --out DIR   many files / long videos on Ray
    ideud-video models list|fetch|verify   GAN-tier weights (optional)

Errors are one line on stderr and a non-zero exit (2: bad input or usage,
1: failure while processing, 130: interrupted); the input is never modified,
and a failed run leaves no output file behind.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from typing import Optional

# Our matrices are tiny (Kalman 7x7, 12x468x3 bases): a BLAS thread pool only fights the
# decoder, detector and encoder threads for the cores. Set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

PROG = "ideud-video"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Give every face in a video (or image) a new identity that stays the same for that person, "
                    "keeping pose, expression, lighting, hair, clothes and background. "
                    f"Other commands: '{PROG} demo OUT.mp4', '{PROG} batch INPUTS... --out DIR', "
                    f"'{PROG} models list|fetch|verify'.",
    )
    p.add_argument("input", help="input video or image: a file, a stream URL (rtsp://, rtmp://, http(s)://, udp://, "
                                 "srt://), a webcam (/dev/video0) or - for stdin")
    p.add_argument("output", help="output path; its extension picks the container (.mp4, .mkv, .mov, .jpg, .png); "
                                  "for a live input also a URL (rtsp://, rtmp://, udp://) or - for stdout (MPEG-TS)")
    g = p.add_argument_group("identity")
    g.add_argument("--scale", type=float, default=0.25, metavar="SIGMA",
                   help="standard deviation of the ID-code perturbation; 0.2-0.3 recommended (default 0.25)")
    g.add_argument("--seed", type=int, default=None,
                   help="fix the random seed so a re-run gives the same fake identities (default: random per run)")
    g.add_argument("--restorer", default="auto",
                   help="step II restorer: auto (default: the GAN with fetched weights and a CUDA GPU, else the "
                        "embedded tier), bank (no weights: face detail from a public-domain donor bank), classic "
                        "(no weights, geometry only), gan (GFPGAN; 'ideud-video models fetch' first), none")
    g.add_argument("--fallback", default="pixelate", choices=["pixelate", "blur", "black"],
                   help="obfuscation for a face that cannot be de-identified (default pixelate)")
    g.add_argument("--privacy", default="balanced", choices=["off", "balanced", "strict"],
                   help="privacy guard: a face recogniser checks every person's new face and the change is "
                        "escalated (new perturbations, stronger sigma, more re-synthesis, then obfuscation) until "
                        "it no longer matches; balanced: distance >= 0.6 (dlib's same-person threshold), "
                        "strict: >= 0.7 and checked more often, off: no check (default balanced)")
    g.add_argument("--gan-engine", default="auto",
                   choices=["auto", "cudagraphs", "compiled", "eager", "onnxruntime", "tensorrt"],
                   help="how the GAN restorer runs on the GPU: auto (TensorRT if installed, else torch fp16 with "
                        "CUDA graphs), compiled (torch.compile + CUDA graphs: ~2x faster, ~40 s per batch size "
                        "to build at start), eager (torch fp16), onnxruntime, tensorrt (default auto)")
    g.add_argument("--restore-ahead", type=int, default=None, metavar="N",
                   help="frames whose faces may wait for the restorer while the next ones are analysed; the "
                        "restorer runs on its own thread and batches their faces (default: 2 with a GPU "
                        "restorer, 0 on the CPU)")
    d = p.add_argument_group("detection")
    d.add_argument("--min-face", type=int, default=12, metavar="PX",
                   help="faces smaller than this are obfuscated instead of re-rendered (default 12)")
    d.add_argument("--det-threshold", type=float, default=None, metavar="P",
                   help="face detector confidence threshold; lower finds more faces "
                        "(default: the detector's own, 0.3 for CenterFace, tuned for recall)")
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
    lv = p.add_argument_group("live streams (automatic for URL and webcam inputs; - streams stdin/stdout)")
    lv.add_argument("--live", action="store_true",
                    help="live mode: bounded latency (frames are dropped before processing when behind, and counted), "
                         "no B-frames, crash-safe output (Matroska, fragmented MP4) that plays if the run is killed; "
                         "a file input is played in real time")
    lv.add_argument("--reconnect", type=float, default=30, metavar="SECONDS",
                    help="reconnect a lost source with exponential backoff up to this wait; 0: stop instead (default 30)")
    lv.add_argument("--rtsp-transport", default="tcp", choices=["tcp", "udp", "udp_multicast", "http"],
                    help="RTSP transport (default tcp)")
    lv.add_argument("--open-timeout", type=float, default=10, metavar="SECONDS", help="connect timeout (default 10)")
    lv.add_argument("--read-timeout", type=float, default=5, metavar="SECONDS",
                    help="a source silent this long is lost (default 5)")
    lv.add_argument("--wait-for-source", default="0", metavar="DURATION",
                    help="a network source that is not up at start is retried (exponential backoff) this long, "
                         "e.g. 5m, or 'forever'; default 0: fail at once")
    lv.add_argument("--segment", metavar="DURATION",
                    help="rolling output files of this length (e.g. 10m), named OUT-YYYYmmdd-HHMMSS.ext "
                         "(or by strftime codes in OUT)")
    lv.add_argument("--duration", metavar="DURATION", help="stop after this long (e.g. 30s, 2h); default: until "
                                                           "Ctrl-C/SIGTERM, which flush and close the output")
    lv.add_argument("--stats", action="store_true",
                    help="print input/output fps, dropped frames and p50/p95 latency every 5 s and at the end")
    lv.add_argument("--input-format", metavar="FMT", help="FFmpeg demuxer for the input (e.g. mpegts for stdin)")
    lv.add_argument("--output-format", metavar="FMT", help="FFmpeg muxer for the output (default: from URL/extension)")
    lv.add_argument("--debug-delay-ms", type=float, default=0, help=argparse.SUPPRESS)  # test hook: a slow pipeline
    return p


def _live_options(a):
    from ideud.stream.live import LiveOptions, is_live_source, parse_duration

    if a.reconnect < 0 or a.open_timeout <= 0 or a.read_timeout <= 0:
        raise ValueError("--reconnect must be >= 0 and the timeouts > 0")
    return LiveOptions(reconnect=a.reconnect, rtsp_transport=a.rtsp_transport, open_timeout=a.open_timeout,
                       read_timeout=a.read_timeout, segment=parse_duration(a.segment) if a.segment else None,
                       duration=parse_duration(a.duration) if a.duration else None, stats=a.stats,
                       start_wait=math.inf if a.wait_for_source.strip().lower() in ("forever", "inf")
                       else parse_duration(a.wait_for_source),
                       input_format=a.input_format, output_format=a.output_format, delay_ms=a.debug_delay_ms,
                       # stdin is read at its own pace (every frame) unless --live says it is a live feed
                       realtime=a.live or (is_live_source(a.input) and a.input != "-"))


def _options(a):
    from ideud.stream.pipeline import Options

    if not 0 <= a.scale <= 5:
        raise ValueError("--scale must be between 0 and 5")
    if a.min_face < 0:
        raise ValueError("--min-face must be >= 0")
    if a.det_threshold is not None and not 0 < a.det_threshold < 1:
        raise ValueError("--det-threshold must be between 0 and 1")
    if a.restore_ahead is not None and not 0 <= a.restore_ahead <= 64:
        raise ValueError("--restore-ahead must be between 0 and 64")
    return Options(scale=a.scale, seed=a.seed, min_face=a.min_face, det_threshold=a.det_threshold,
                   restore_ahead=a.restore_ahead, gan_engine=a.gan_engine,
                   detector=a.detector, restorer=a.restorer, fallback=a.fallback, privacy=a.privacy,
                   codec=a.codec, crf=a.crf,
                   preset=a.preset, audio=not a.no_audio, keep_metadata=a.keep_metadata, force=a.force)


def _log_to_stderr(quiet: bool) -> None:
    """The library's one-line notices (tier chosen, outages) as `ideud-video: ...` lines."""
    import logging

    log = logging.getLogger("ideud")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


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
    _log_to_stderr(a.quiet)
    from ideud.stream.live import is_live_output, is_live_source
    from ideud.stream.pipeline import deidentify

    if a.live or is_live_source(a.input) or is_live_output(a.output):
        return _run_live(a)
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


def _run_live(a) -> int:
    """A stream: runs until the source ends, --duration, or Ctrl-C/SIGTERM (output closed and playable)."""
    import logging

    from ideud.stream.live import format_summary, run_live

    if a.stats:  # asked for: shown even with --quiet (through the handler of _log_to_stderr)
        logging.getLogger("ideud.live").setLevel(logging.INFO)
    try:
        rep = run_live(a.input, a.output, _options(a), _live_options(a))
    except KeyboardInterrupt:  # before the stream started, or a second Ctrl-C while the output was finished
        partial = a.segment or os.path.isfile(a.output)
        print(f"{PROG}: interrupted; " + ("the output may lack its last frames" if partial else "no output written"),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if a.report:
        write_json(a.report, rep)
    if not a.quiet:
        files = rep["output"]["files"]
        where = a.output if len(files) <= 1 else f"{len(files)} files"
        print(f"{where}: {_summary(rep)}; {format_summary(rep['live'])} ({rep['live']['stopped_by']})", file=sys.stderr)
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
    # the privacy guard is off here: the demo portrait is one of the embedded restorer's two donor
    # faces, so the guard (rightly) could not clear her and would show a pixelated face
    rep = run_demo(a.output, Options(scale=a.scale, seed=a.seed, privacy="off"), frames=a.frames)
    print(f"{a.output}: original | de-identified (privacy guard off for this bundled portrait: it is a donor "
          f"face of the embedded restorer); {_summary(rep)}", file=sys.stderr)
    return EXIT_OK


def models(argv: list[str]) -> int:
    from ideud.tools import models_cli

    return models_cli.main(argv)


def batch(argv: list[str]) -> int:
    from ideud.tools import batch as batch_cli

    return batch_cli.main(argv)


COMMANDS = {"demo": demo, "models": models, "batch": batch}


def _bound_malloc() -> None:
    """Big frames cross threads: with glibc's sliding mmap threshold, freed 12 MB 4K planes stay in
    per-thread heaps and peak memory doubles from run to run. A fixed threshold hands them back."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: buffers >= 1 MB are mapped and unmapped
        libc.mallopt(-8, 4)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ideud.models.registry import ModelUnavailable
    from ideud.stream.decode import InputError
    from ideud.stream.encode import OutputError

    try:
        from ideud.stream.pipeline import UsageError
    except ImportError as e:  # a broken install: say what is missing
        print(f"{PROG}: error: cannot load the pipeline ({e})", file=sys.stderr)
        return EXIT_FAIL
    # SIGTERM ends the run like Ctrl-C: the partial output is removed, the input untouched
    signal.signal(signal.SIGTERM, _interrupt)
    _bound_malloc()
    cmd = COMMANDS.get(argv[0]) if argv and not os.path.exists(argv[0]) else None
    try:
        return cmd(argv[1:]) if cmd else run(argv)
    except (InputError, UsageError, ValueError, ModelUnavailable) as e:
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
