"""Recall of the frame's look (stream/verify_frame.py) on real faces small in a large frame.

    python tools/bench/bench_frame_judge.py [--size 1280x720] [--face-sizes 24,28,32,36]
                                            [--portraits 24] [--split held_out] [--grey] [--json F]

The pipeline judges on the frame's own pixels the weak finds that are under 12 px in the detector's
input and `FRAME_JUDGED_MIN_PX` (28) or more in the frame. At 1280x720 the product's detector finds few real faces
that small (its input is 448x252: a 34 px face is 12 px there), so a recall run through the product
path holds almost none of them (bench_false_faces.py --real-size 1280x720 --face-sizes 28,32,36,40,44:
1 of 1,320 faces judged).
Here every real face is given that look as if the detector had found it: the held-out portrait
sets of tests/false_face_sets.py (every variant) and the heavily blurred ones, at `--face-sizes` in
`--size` frames, through the video path (H.264, the pipeline's decoder). The finds are CenterFace's
own on a detector input twice as fine (boxes and keypoints as the detector gives them), scored
under `keep_score` as the weak finds the look is for; each one on a real face is judged by
`FrameJudge.is_false` on the decoded frame. A real face it calls false would be written raw.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (puts the checkout's tests/ on the path)

from bench_false_faces import HEAVY_BLUR_DIVISORS, altered, heavy_blur_faces  # noqa: E402
from false_face_sets import VARIANTS, found, hard_faces, video_detector_inputs  # noqa: E402
from ideud.stream.detect import CenterFaceDetector, make_detector  # noqa: E402
from ideud.stream.verify import VerifyingDetector  # noqa: E402
from ideud.stream.verify_frame import FrameJudge  # noqa: E402


def judged(judge: FrameJudge, fine: CenterFaceDetector, frames, product_scale: tuple) -> dict:
    """frames: (rgb, ground-truth boxes). Per set: real faces found on the finer input, how many of
    them the frame's look calls false (would be lost), the sizes of those; and the same for the finds
    of the sizes the look is for in the product (`FrameJudge.due` at the product's `product_scale`:
    bigger ones the verifier judges in the detector's input)."""
    score = judge.verifier.policy.keep_score - 0.01
    wholes = video_detector_inputs([fr for fr, _ in frames], fine.input_size, whole=True)
    faces = lost = due = due_lost = 0
    lost_px = []
    for (_, gt), whole in zip(frames, wholes):
        finds = [f for f in fine.detect(whole.small, whole.small_scale) if not f.soft]
        for g in gt:
            on = [f for f in finds if found([g], [f.box])[0]]
            if not on:
                continue
            best = max(on, key=lambda f: f.score)
            f = replace(best, score=min(best.score, score))
            faces += 1
            sized = judge.due(f, product_scale)  # a box the look is for in the product
            due += sized
            if judge.is_false(whole, f):
                lost += 1
                due_lost += sized
                lost_px.append(round(f.size, 1))
    return {"faces_judged": faces, "lost": lost, "lost_px": lost_px, "due_sized": due, "due_sized_lost": due_lost}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720", help="frame WIDTHxHEIGHT")
    ap.add_argument("--face-sizes", default="24,28,32,36", help="face sizes, px, comma-separated")
    ap.add_argument("--portraits", type=int, default=24)
    ap.add_argument("--split", choices=("held_out", "build"), default="held_out")
    ap.add_argument("--grey", action="store_true", help="grey the frames (black-and-white footage)")
    ap.add_argument("--json", help="write the numbers here too")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    sizes = tuple(int(v) for v in a.face_sizes.split(","))
    bare = make_detector("centerface", verify=False)
    fine = CenterFaceDetector(input_scale=2 * bare.input_scale)
    verifier = VerifyingDetector(bare)
    verifier.warmup()
    judge = FrameJudge(verifier)
    sets = {f"portraits, {v}": f for v, f in hard_faces(a.portraits, sizes, VARIANTS, w, h, split=a.split).items()}
    sets.update({f"portraits, blur size/{d:g}": [f[:2] for f in heavy_blur_faces(a.portraits, d, a.split, 0, sizes, w, h)]
                 for d in HEAVY_BLUR_DIVISORS})
    if a.grey:
        sets = {f"{k}, grey": [(altered(fr, grey=True), gt) for fr, gt in v] for k, v in sets.items()}
    res = {}
    iw, ih = bare.input_size(w, h)
    print(f"| {a.size}, faces {a.face_sizes} px ({a.split}) | real faces judged on the frame | lost (find px) | "
          f"of them under 12 px in the product's input | lost |\n|---|---|---|---|---|")
    for name, frames in sets.items():
        res[name] = judged(judge, fine, frames, (w / iw, h / ih))
        r = res[name]
        print(f"| {name} | {r['faces_judged']} | {r['lost']} {r['lost_px'] or ''} | {r['due_sized']} | "
              f"{r['due_sized_lost']} |", flush=True)
    keys = ("faces_judged", "lost", "due_sized", "due_sized_lost")
    total = {k: sum(r[k] for r in res.values()) for k in keys}
    print(f"| all | {total['faces_judged']} | **{total['lost']}** | {total['due_sized']} | **{total['due_sized_lost']}** |")
    if a.json:
        Path(a.json).write_text(json.dumps({"sets": res, "total": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
