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
import math
import os
import sys
from typing import Optional

# Our matrices are tiny (Kalman 7x7, 12x468x3 bases): a BLAS thread pool only fights the
# decoder, detector and encoder threads for the cores. Set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from ideud.tools.frontdoor import (  # noqa: E402
    EXIT_INTERRUPTED, EXIT_OK, add_pipeline_arguments, log_to_stderr, pipeline_options, run_guarded, summary,
    write_json,
)

PROG = "ideud-video"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Give every face in a video (or image) a new identity that stays the same for that person, "
                    "keeping pose, expression, lighting, hair, clothes and background. "
                    f"Other commands: '{PROG} demo OUT.mp4', '{PROG} batch INPUTS... --out DIR', "
                    f"'{PROG} models list|fetch|verify'.",
    )
    p.add_argument("input", help="input video or image: a file, a stream URL (rtsp://, rtmp://, http(s)://, udp://, "
                                 "srt://), a webcam (/dev/video0) or - for stdin")
    p.add_argument("output", help="output path; its extension picks the container (.mp4, .mkv, .mov; .jpg, .png "
                                  "for an image input); for a live input also a URL (rtsp://, rtmp://, udp://) or - "
                                  "for stdout (MPEG-TS)")
    add_pipeline_arguments(p)
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


def _progress(quiet: int):
    if quiet:
        return None, None
    from tqdm import tqdm

    holder = []  # made on the first frame, so errors before it print no empty bar

    def on_frame(done: int, total: int):
        if not holder:
            holder.append(tqdm(total=total or None, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr))
        holder[0].update(done - holder[0].n)
    return holder, on_frame


def run(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    log_to_stderr(PROG, a.quiet)
    from ideud.stream import restore_processes

    options = pipeline_options(a)
    restore_processes.start_early(options)  # they import while this process does (below)
    try:
        return _run(a, options)
    finally:
        restore_processes.stop_early()


def _run(a, options) -> int:
    from ideud.stream.decode import is_image
    from ideud.stream.encode import check_output_path
    from ideud.stream.live import is_live_output, is_live_source, is_recording
    from ideud.stream.pipeline import deidentify

    if a.live or (is_live_source(a.input) and not is_recording(a.input)) or is_live_output(a.output):
        return _run_live(a, options)
    check_output_path(a.output, video_input=not is_image(a.input), codec=a.codec)
    bars, on_frame = _progress(a.quiet)
    try:
        rep = deidentify(a.input, a.output, options, on_frame=on_frame)
    finally:
        for bar in bars or ():
            bar.close()
    if a.report:
        write_json(a.report, rep)
    if not a.quiet:
        print(f"{a.output}: {summary(rep)}", file=sys.stderr)
    return EXIT_OK


def _run_live(a, options) -> int:
    """A stream: runs until the source ends, --duration, or Ctrl-C/SIGTERM (output closed and playable)."""
    import logging

    from ideud.stream.live import format_summary, run_live

    if a.stats:  # asked for: shown even with --quiet (through the handler of log_to_stderr)
        logging.getLogger("ideud.live").setLevel(logging.INFO)
    try:
        rep = run_live(a.input, a.output, options, _live_options(a))
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
        print(f"{where}: {summary(rep)}; {format_summary(rep['live'])} ({rep['live']['stopped_by']})", file=sys.stderr)
    return EXIT_OK


def demo(argv: list[str]) -> int:
    from ideud.tools import demo as demo_cli

    return demo_cli.main(argv)


def models(argv: list[str]) -> int:
    from ideud.tools import models_cli

    return models_cli.main(argv)


def batch(argv: list[str]) -> int:
    from ideud.tools import batch as batch_cli

    return batch_cli.main(argv)


COMMANDS = {"demo": demo, "models": models, "batch": batch}


def dispatch(argv: list[str]) -> int:
    # a file named like a command is an input; a folder never is (`models` in a checkout)
    cmd = COMMANDS.get(argv[0]) if argv and not os.path.isfile(argv[0]) else None
    return cmd(argv[1:]) if cmd else run(argv)


def main(argv: Optional[list[str]] = None) -> int:
    return run_guarded(PROG, dispatch, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
