"""`ideud-video demo OUT.mp4`: see it work without a video of your own.

Animates a public-domain portrait shipped in the package (models/data/demo_portrait.jpg, a
held-out portrait: no restorer uses it as a donor and nothing was tuned on it) into a short
clip, de-identifies it at the default settings (privacy guard on), and writes
original | de-identified side by side.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from fractions import Fraction
from typing import Iterator, Optional

import av
import cv2
import numpy as np

PROG = "ideud-video demo"
WIDTH, HEIGHT, FPS = 640, 400, 25


def animate(n: int, height: int = 330) -> Iterator[np.ndarray]:
    """RGB frames: the portrait drifting, scaling and turning slightly over a soft background."""
    from ideud.stream.warmup import shipped_portrait

    head = shipped_portrait()
    head = cv2.resize(head, (round(head.shape[1] * height / head.shape[0]), height), interpolation=cv2.INTER_CUBIC)
    h, w = head.shape[:2]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    bg = np.stack([70 + 50 * np.sin(xx / 41.0), 85 + 40 * np.cos(yy / 29.0), 105 + 35 * np.sin((xx + yy) / 57.0)], -1)
    bg = bg.astype(np.uint8)
    for i in range(n):
        t = i / max(n - 1, 1)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 7 * math.sin(2 * math.pi * t), 1 + 0.08 * math.sin(2 * math.pi * t))
        m[:, 2] += [WIDTH / 2 + 60 * math.sin(2 * math.pi * t) - w / 2, HEIGHT / 2 + 8 * math.cos(2 * math.pi * t) - h / 2]
        mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (WIDTH, HEIGHT)) > 0
        img = bg.copy()
        img[mask] = cv2.warpAffine(head, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)[mask]
        yield img


def _encode(out, frames) -> None:
    vs = None
    for i, img in enumerate(frames):
        if vs is None:
            vs = out.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            vs.options = {"crf": "18", "preset": "veryfast"}
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = i, Fraction(1, FPS)
        for p in vs.encode(vf):
            out.mux(p)
    if vs is not None:
        for p in vs.encode(None):
            out.mux(p)


def side_by_side(left: str, right: str, dst: str) -> None:
    """original | de-identified, one frame per input frame."""
    with av.open(left) as a, av.open(right) as b, av.open(dst, "w") as out:
        _encode(out, (np.hstack([fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24")])
                      for fa, fb in zip(a.decode(video=0), b.decode(video=0))))


def run_demo(dst: str, options, frames: int = 75) -> dict:
    from ideud.stream.encode import temp_path_for
    from ideud.stream.pipeline import deidentify

    with tempfile.TemporaryDirectory(prefix="ideud-demo-") as tmp:
        src = os.path.join(tmp, "original.mp4")
        out = os.path.join(tmp, "deidentified.mp4")
        with av.open(src, "w") as c:
            _encode(c, animate(frames))
        options.force = True
        report = deidentify(src, out, options)
        part = temp_path_for(dst)
        try:
            side_by_side(src, out, part)
            os.replace(part, dst)
        finally:
            if os.path.exists(part):
                os.remove(part)
    return report


def main(argv: Optional[list[str]] = None) -> int:
    from ideud.stream.encode import check_output_path
    from ideud.stream.errors import UsageError
    from ideud.stream.options import Options
    from ideud.tools.frontdoor import EXIT_OK, log_to_stderr, summary, write_json

    p = argparse.ArgumentParser(prog=PROG, description="De-identify a generated clip of a public-domain portrait "
                                "at the default settings and write original | de-identified side by side.")
    p.add_argument("output", help="side-by-side video to write (.mp4)")
    p.add_argument("--seed", type=int, default=None, help="fix the new identity (default: random per run)")
    p.add_argument("--frames", type=int, default=75, help="clip length (default %(default)s frames, 3 s)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--report", metavar="JSON", help="write the de-identification report")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    log_to_stderr("ideud-video", 0)
    if not 1 <= a.frames <= 10_000:
        raise UsageError("--frames must be between 1 and 10000")
    if os.path.exists(a.output) and not a.force:
        raise UsageError(f"{a.output}: exists; use --force to replace it")
    check_output_path(a.output, video_input=True)
    rep = run_demo(a.output, Options(seed=a.seed), frames=a.frames)
    if a.report:
        write_json(a.report, rep)
    print(f"{a.output}: original | de-identified at the default settings; {summary(rep)}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    from ideud.tools.frontdoor import run_guarded

    sys.exit(run_guarded(PROG, main, sys.argv[1:]))
