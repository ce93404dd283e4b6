"""What the front doors (`ideud-video`, its `batch` and `demo` commands) share: exit codes, the
pipeline's arguments with their defaults taken from `Options`, one-line errors, the summary line.

    0 done, 1 failure while processing, 2 bad input or usage, 130 interrupted
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Callable

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TIER_LOGGER = "ideud.tier"  # the one line saying which restorer tier runs (kept by -q, hidden by -qq)


def _defaults():
    from ideud.stream.options import Options

    return {f.name: f.default for f in dataclasses.fields(Options) if f.default is not dataclasses.MISSING}


def add_pipeline_arguments(p: argparse.ArgumentParser, skip: frozenset = frozenset()) -> None:
    """The identity, detection and output options of a file run; `skip`: dests a caller has its own way of."""
    from ideud.stream.detect import DETECTOR_NAMES

    d = _defaults()

    def add(group, *flags, **kw):
        dest = kw.get("dest") or next(f for f in flags if f.startswith("--"))[2:].replace("-", "_")
        if dest not in skip:
            group.add_argument(*flags, **kw)

    g = p.add_argument_group("identity")
    add(g, "--scale", type=float, default=d["scale"], metavar="SIGMA",
        help="standard deviation of the ID-code perturbation; 0.2-0.3 recommended (default %(default)s)")
    add(g, "--seed", type=int, default=d["seed"],
        help="fix the random seed so a re-run gives the same fake identities (default: random per run); "
             "it is never written to a report or manifest")
    add(g, "--restorer", default=d["restorer"],
        help="step II restorer: auto (default: the GAN with fetched weights and a CUDA GPU, else prior), "
             "prior (a new face from the appearance model learned on public-domain portraits), learned "
             "(prior + a small restoration GAN trained here on a CPU; ~1.6x slower), bank (detail from two "
             "donor faces), classic (geometry only), gan (GFPGAN; 'ideud-video models fetch' first), none")
    add(g, "--relink", default="on", choices=["on", "off"],
        help="on: a person who comes back (out of the picture and in again, after a scene cut) gets "
             "the same new face again (recognised by EdgeFace in memory, never written); off: every "
             "face track a new face of its own (default %(default)s)")
    add(g, "--fallback", default=d["fallback"], choices=["pixelate", "blur", "black"],
        help="obfuscation for a face that cannot be de-identified (default %(default)s)")
    add(g, "--privacy", default=d["privacy"], choices=["off", "balanced", "strict"],
        help="privacy guard: a face recogniser checks every person's new face and the change is "
             "escalated (new perturbations, stronger sigma, more re-synthesis, then obfuscation) until "
             "it no longer matches; balanced: distance >= 0.6 (dlib's same-person threshold), "
             "strict: >= 0.7 and checked more often, off: no check (default %(default)s)")
    add(g, "--gan-engine", default=d["gan_engine"],
        choices=["auto", "cudagraphs", "compiled", "eager", "onnxruntime", "tensorrt"],
        help="how the GAN restorer runs on the GPU: auto (TensorRT if installed, else torch fp16 with "
             "CUDA graphs), compiled (torch.compile + CUDA graphs: ~2x faster, ~40 s per batch size "
             "to build at start), eager (torch fp16), onnxruntime, tensorrt (default %(default)s)")
    add(g, "--restore-ahead", type=int, default=d["restore_ahead"], metavar="N",
        help="frames whose faces may wait for the restorer while the next ones are analysed; the "
             "restorer runs on its own thread and batches their faces (default: 2; 0 on a "
             "one-core machine without a GPU)")
    add(g, "--processes", default=d["processes"], metavar="N",
        help="processes of a file run: this one and N-1 workers that detect faces ahead (the same "
             "output as 1); auto: cores - 1, at most 4 (default %(default)s: no workers)")
    add(g, "--restore-processes", type=int, default=d["restore_processes"], metavar="N",
        help="processes that warp each face, cut its occluders out and run the step II restorer, each "
             "track always in the same one (the same output as 0: in this process); default: one per two "
             "cores, at most 4, none for the classic restorer, a GPU restorer or on one core")
    det = p.add_argument_group("detection")
    add(det, "--min-face", type=int, default=d["min_face"], metavar="PX",
        help="faces smaller than this are obfuscated instead of re-rendered (default %(default)s)")
    add(det, "--det-threshold", type=float, default=d["det_threshold"], metavar="P",
        help="face detector confidence threshold; lower finds more faces "
             "(default: the detector's own, 0.3 for CenterFace, tuned for recall)")
    add(det, "--detector", default=d["detector"],
        help=f"face detector: {', '.join(DETECTOR_NAMES)} (default %(default)s)")
    add(det, "--detect-every", type=int, default=d["detect_every"], metavar="N",
        help="files: run the detector on every N-th frame (1-3), and at scene cuts and while no face is "
             "tracked; the face mesh follows the tracked faces between, and a face first found late is "
             "hidden in the frames before. Live streams detect every frame (default %(default)s)")
    out = p.add_argument_group("output")
    add(out, "--codec", default=d["codec"],
        help="video encoder: auto (the default: libx264, libvpx-vp9 for .webm, gif for .gif) or an FFmpeg "
             "encoder such as libx265, libvpx-vp9, ffv1 (lossless)")
    add(out, "--crf", type=int, default=d["crf"],
        help="quality, lower is better: libx264/libx265 0-51 (default 18), libvpx-vp9 0-63 (default 24)")
    add(out, "--preset", default=d["preset"], help="libx264/libx265 speed preset (default %(default)s)")
    add(out, "--no-audio", action="store_true", help="drop the audio streams (default: copied unchanged)")
    add(out, "--keep-metadata", action="store_true",
        help="keep the input's metadata (GPS, device make and model, author, dates); default: stripped. "
             "An image's colour profile and alpha channel are always kept")
    add(out, "--force", action="store_true", help="replace an existing output file")
    add(out, "--report", metavar="JSON",
        help="write a JSON report: per track frames, sigma, fallbacks, the guard's decisions; timings per stage")
    add(out, "-q", "--quiet", action="count", default=0,
        help="no progress bar or summary; twice (-qq): also no line saying which restorer tier runs")


def pipeline_options(a: argparse.Namespace):
    """`Options` from parsed arguments, checked: a bad value is a UsageError (exit 2) before any work."""
    from ideud.stream.cadence import MAX_EVERY
    from ideud.stream.encode import check_encoder_options
    from ideud.stream.errors import UsageError
    from ideud.stream.options import Options

    if not 0 <= a.scale <= 5:
        raise UsageError("--scale must be between 0 and 5")
    if a.min_face < 0:
        raise UsageError("--min-face must be >= 0")
    if a.det_threshold is not None and not 0 < a.det_threshold < 1:
        raise UsageError("--det-threshold must be between 0 and 1")
    if not 1 <= a.detect_every <= MAX_EVERY:
        raise UsageError(f"--detect-every must be between 1 and {MAX_EVERY}")
    if a.restore_ahead is not None and not 0 <= a.restore_ahead <= 64:
        raise UsageError("--restore-ahead must be between 0 and 64")
    restore_processes = getattr(a, "restore_processes", None)
    if restore_processes is not None and not 0 <= restore_processes <= 64:
        raise UsageError("--restore-processes must be between 0 and 64")
    check_encoder_options(a.codec, a.crf, a.preset)
    from ideud.stream.workers import resolve_processes

    processes = getattr(a, "processes", 1)
    resolve_processes(processes)  # a bad value: exit 2 now
    return Options(processes=processes, scale=a.scale, seed=a.seed, min_face=a.min_face, det_threshold=a.det_threshold,
                   restore_ahead=a.restore_ahead, restore_processes=restore_processes, gan_engine=a.gan_engine,
                   detector=a.detector,
                   restorer=a.restorer, fallback=a.fallback, privacy=a.privacy, codec=a.codec, crf=a.crf,
                   preset=a.preset, audio=not a.no_audio, keep_metadata=a.keep_metadata, force=a.force,
                   relink=getattr(a, "relink", "on") == "on", detect_every=a.detect_every)


def log_to_stderr(prog: str, quiet: int) -> None:
    """The library's one-line notices as `PROG: ...` lines: all of them; with -q warnings and the
    restorer tier; with -qq warnings only."""
    log = logging.getLogger("ideud")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger(TIER_LOGGER).setLevel(logging.WARNING if quiet >= 2 else logging.INFO)


def write_json(path: str, data: dict) -> None:
    from ideud.stream.encode import temp_path_for

    tmp = temp_path_for(path)
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(rep: dict) -> str:
    """`60 frames, 3 face tracks (1 of them a person seen before, given the same new face; 1 drawn
    without its surroundings), 60 face-frames: 58 rendered, 2 obfuscated` (plus truncation and speed)."""
    from ideud.stream.decode import looks_short

    frames, face_frames = rep.get("frames", 0), rep.get("face_frames", 0)
    obfuscated = rep.get("fallback_face_frames", 0)
    tracks = rep.get("tracks", [])
    text = f"{plural(frames, 'frame')}, {plural(len(tracks), 'face track')}"
    notes = []
    if rep.get("tracks_relinked"):  # stream/relink.py: tracks that took an earlier track's new face
        notes.append(f"{rep['tracks_relinked']} of them a person seen before, given the same new face")
    privacy = rep.get("privacy") or {}
    filled = privacy.get("tracks_surroundings_filled", 0)
    if filled:  # the guard's last steps: the new face drawn over its surroundings filled flat
        notes.append(f"{filled} drawn without {'its' if filled == 1 else 'their'} surroundings")
    blurred = privacy.get("tracks_surroundings_blurred", 0)
    if blurred:  # the steps before: over its surroundings blurred
        notes.append(f"{blurred} drawn with {'its' if blurred == 1 else 'their'} surroundings blurred")
    if notes:
        text += f" ({'; '.join(notes)})"
    if face_frames:
        text += f", {plural(face_frames, 'face-frame')}: {face_frames - obfuscated} rendered, {obfuscated} obfuscated"
    softened = rep.get("softened_finds", 0)
    if softened:  # stream/soften.py: finds no cue confirmed that could be a heavily blurred face
        text += f"; {plural(softened, 'unconfirmed find')} blurred further (maybe a blurred face)"
    hidden = rep.get("hidden_before_found", 0)
    if hidden:  # stream/look_back.py: a new face's place hidden in the frames just before its first find
        whose = "its" if hidden == 1 else "their"
        text += f"; {plural(hidden, 'face-frame')} hidden just before {whose} face was first found"
    declared = rep.get("input", {}).get("frames_declared") or 0
    written = rep.get("output", {}).get("frames", frames)
    if looks_short(written, declared):
        text += f"; only {written} of {declared} declared frames could be decoded: the input looks truncated"
    fps = rep.get("fps")
    return text + (f", {fps:.1f} fps" if fps else "")


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


def run_guarded(prog: str, entry: Callable[[list], int], argv: list) -> int:
    """Run a command; every error is one line on stderr and its exit code (matched by type)."""
    try:
        from ideud.models.registry import ModelUnavailable
        from ideud.stream.errors import InputError, OutputError, UsageError
    except ImportError as e:  # a broken install: say what is missing
        print(f"{prog}: error: cannot load the pipeline ({e})", file=sys.stderr)
        return EXIT_FAIL
    # SIGTERM ends the run like Ctrl-C: the partial output is removed, the input untouched
    signal.signal(signal.SIGTERM, _interrupt)
    _bound_malloc()
    try:
        return entry(argv)
    except (InputError, UsageError, ValueError, ModelUnavailable) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return EXIT_FAIL
    except Exception as e:  # the user gets one line; IDEUD_DEBUG=1 shows the traceback
        if os.environ.get("IDEUD_DEBUG"):
            raise
        print(f"{prog}: error: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        return EXIT_FAIL
