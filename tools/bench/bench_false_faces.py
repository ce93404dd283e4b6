"""False faces on face-free footage, and recall on hard real faces, before and after the verifier.

    python tools/bench/bench_false_faces.py [--frames 1000] [--portraits 24] [--first 0] [--split build]
                                            [--real-only | --free-only] [--sets pascal,hard,heavy,footage]
                                            [--kinds mandelbrot,...] [--blur SIGMA] [--grey] [--grey-real]
                                            [--no-sharpened] [--no-corroborate] [--no-half-face] [--no-wide-half-face] [--video [--crf N]]
                                            [--size 1280x720]
                                            [--json out.json] [--dump-kept kept.json] [--identify-lost]

Face-free footage (tests/false_face_sets.py, made here, 640x360): a Mandelbrot zoom, patterns,
text pages, textures, animals/objects panned and zoomed; `--frames` of each. Every detection there
is a false face. Real faces: the PASCAL faces (../shared/testdata/faces, native and pasted into a
1280x720 frame), held-out portraits at 24-224 px face size in a 640x360 frame (0.7 x that in the
detector's input; plain, blurred sigma = size/20, turned +-30 degrees in the picture plane, dim,
one side of the face covered, head turned 45 degrees about the neck), heavier blur on the small
ones (32-64 px, sigma = size/14 and size/10: faces like the blurred 22 px one that every cue but
the verifier's tiny views took for the headlamp), and the footage clip of tests/footage.py. A real
face counts as found when a detection lies on it (centre within 0.4 face sizes, size 0.5-2.5x).

"before" is CenterFace int8 alone (make_detector(verify=False)), "after" the default detector
(stream/verify.py around it: the confirmers, the second opinions for blurred, covered and grey
faces, the tiny views for heavily blurred small ones, the sharpened look for heavily blurred
skin-coloured or grey ones, and the veto of CenterFace re-asked plus dlib's CNN on confirmed small
and close-up finds, with a higher bar for sharp small ones; a second cue for what a weak path
alone would keep);
both see the same frames. `--blur SIGMA` / `--grey` blur (Gaussian, pixels of the 640x360 frame)
or grey the face-free footage (defocused or black-and-white footage: harder negatives for the
verifier's blur-aware look); `--grey-real` greys the real-face sets (black-and-white footage of
people: recall must hold there too). `--no-sharpened` sets the sharpened look's bar out of reach
(it is still asked, but never keeps: the verifier's decisions as before the look). "without the
grey checks" counts as the verifier without `grey_small_*`, `grey_cnn_recheck` and
`grey_veto_sharpened` (the grey finds it drops, re-asked without them). `--split build` makes the
portrait sets from the build portraits (what the verifier's numbers were tuned on) instead of the
held-out ones. `--video` sends every set through the product's own video path (H.264 with
libx264's defaults, then the pipeline's decoder, whose swscale copy is the detector's input) instead
of cv2.INTER_AREA on the frames (a set whose frames differ in size, PASCAL native, is skipped);
`--crf` sets libx264's quality there (heavier compression: conditions the verifier was not tuned
on), `--size` the face-free frames' size. `--no-corroborate` judges as the verifier did before the
thirteenth session (a weak path's yes alone keeps a find; `VerifyPolicy.corroborate`).
Besides asking every find afresh (`is_false`), each face-free set also counts what the pipeline's
own call keeps (`detect`, one verifier for the whole set: a find that overlaps one it confirmed in
the last 8 calls is kept unasked), as frames with a false face.
"added ms" is the verifier's time per frame (wall, mean over the frames, and the
slowest frame; one thread; confirmers built beforehand). `--dump-kept` writes the face-free finds
the verifier keeps (kind, alteration, frame index, box in frame pixels, score): replay one with
tests/false_face_sets.py (`face_free`, or `animals_at` / `mandelbrot_at` for one frame) and
`altered` here, without running the whole set again. `--identify-lost` matches every real face
the verifier drops against the held-out people's photos (tools/bench/lost_faces.py): a lost face
over a recognizer's "same person" threshold is a person written raw and identifiable.
A dropped find smooth enough to be a heavily blurred face is kept soft and blurred further in the
output (stream/soften.py): each real set says how many of its lost faces were softened and how
many were written raw ("lost" counts both), each face-free set how many finds were softened per
1,000 frames; `--identify-lost` judges a softened face as the output shows it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (puts the checkout's tests/ on the path)

from face_dataset import load_imglab, paste_on_canvas, read_rgb  # noqa: E402
from false_face_sets import (FACE_FREE_KINDS, FACE_SIZES, LARGE_SIZES, TESTDATA, VARIANTS,  # noqa: E402
                             detector_input, face_free, found, hard_faces, video_detector_inputs)
from clips import background  # noqa: E402
from false_face_sets import _places, build_head  # noqa: E402
from footage import _paste, multi_person, portrait_head  # noqa: E402
from ideud.stream import blend as bl  # noqa: E402
from ideud.stream.detect import make_detector  # noqa: E402
from ideud.stream.soften import change, soften  # noqa: E402
from ideud.stream.types import Crop, Frame  # noqa: E402
from ideud.stream.verify import VerifyingDetector, VerifyPolicy, chroma_spread, face_crop  # noqa: E402
from ideud.stream.verify_frame import FrameJudge  # noqa: E402


class Counter:
    """Runs the bare detector and the verifier on the same frames and counts."""

    def __init__(self, policy: VerifyPolicy = None):
        self.bare = make_detector("centerface", verify=False)
        self.verified = VerifyingDetector(self.bare, policy)
        self.verified.warmup()  # the one-off build is not per-frame cost
        self.sharp_calls: list[tuple[float, float]] = []  # per sharpened look: (score, seconds)
        ask = self.verified.sharp_redetect

        def timed(crop):
            t = time.perf_counter()
            score = ask(crop)
            self.sharp_calls.append((score, time.perf_counter() - t))
            return score

        # object.__setattr__: the verifier passes other attributes on to the detector it wraps
        object.__setattr__(self.verified, "sharp_redetect", timed)
        p = self.verified.policy  # the verifier without its grey-footage checks, as before them
        self.no_grey_checks = VerifyingDetector(self.bare, dataclasses.replace(
            p, grey_small_min_px=p.min_judged_px, grey_cnn_recheck=False, grey_veto_sharpened=False))
        self.no_grey_checks.confirmers = self.verified.confirmers  # the same finders, built once
        self.frame_judge = FrameJudge(self.verified)  # stateless here: `is_false` only
        self.lost_faces = None  # a lost_faces.Gallery: each real face the verifier drops is identified
        self.lost: list[dict] = []
        self.last_soft: list = []  # the last `run`'s dropped finds kept as soft finds (stream/soften.py)

    def run(self, frame: np.ndarray, small: np.ndarray | None = None, whole: Frame | None = None):
        """(faces before, faces after, verifier seconds, finds kept only by the sharpened look, finds
        the verifier without its grey checks keeps) for one full frame (`whole`: as the video path
        decoded it; None: the RGB frame itself). Finds too small in the detector's input to judge there
        are judged on the frame as the pipeline does (stream/verify_frame.py). The fourth: finds the
        sharpened look kept that the verifier without it would have dropped (dlib's CNN, asked next,
        says no). The last: as `after`, but grey finds judged without `grey_small_*`,
        `grey_cnn_recheck` and `grey_veto_sharpened` (colour ones are judged alike; not timed)."""
        h, w = frame.shape[:2]
        iw, ih = self.bare.input_size(w, h)
        if small is None:
            small = detector_input(self.bare, frame)[0]
        scale = (w / iw, h / ih)
        before = self.bare.detect(small, scale)
        t = time.perf_counter()
        after, sharp_only = [], []
        bar = self.verified.policy.sharp_redetect_keep
        for f in before:
            asked = len(self.sharp_calls)
            if not self.verified.is_false(small, f, scale) and not self._false_on_frame(frame, whole, f, scale):
                after.append(f)
                if len(self.sharp_calls) > asked and self.sharp_calls[-1][0] >= bar:
                    sharp_only.append(f)
        secs = time.perf_counter() - t
        sx, sy = scale
        self.last_soft = [f for f in before if not any(f is a for a in after)
                          and self.verified.smooth_enough(small, np.asarray(f.box, np.float64) / [sx, sy, sx, sy])]
        sharp_only = [f for f in sharp_only if not self._cnn_keeps(small, f, scale)]
        kept = {id(f) for f in after}
        no_grey = [f for f in before if (not self.no_grey_checks.is_false(small, f, scale)
                                         if self._grey(small, f, scale) else id(f) in kept)]
        return before, after, secs, sharp_only, no_grey

    def _false_on_frame(self, frame: np.ndarray, whole: Frame | None, f, scale) -> bool:
        if not self.frame_judge.due(f, scale):
            return False
        self.frame_judge.asked += 1
        false = self.frame_judge.is_false(whole if whole is not None else rgb_frame(frame, scale), f)
        self.frame_judge.dropped += false
        return false

    def _grey(self, small: np.ndarray, f, scale) -> bool:
        box = np.asarray(f.box, np.float64) / [scale[0], scale[1], scale[0], scale[1]]
        return chroma_spread(face_crop(small, box)[0]) < self.verified.policy.grey_chroma

    def _cnn_keeps(self, small: np.ndarray, f, scale) -> bool:
        box = np.asarray(f.box, np.float64) / [scale[0], scale[1], scale[0], scale[1]]
        return self.verified.confirmers.run("cnn", face_crop(small, box)[0]) > 0


def rgb_frame(rgb: np.ndarray, scale) -> Frame:
    """An RGB picture as the pipeline's Frame (a still image's), its detector copy `scale` x smaller."""
    fr = Frame(index=0, pts=None, time_base=None, planes=[rgb[..., c] for c in range(3)], pix_fmt="rgb")
    fr.small_scale = tuple(scale)
    return fr


def altered(frame: np.ndarray, blur: float = 0.0, grey: bool = False) -> np.ndarray:
    """The face-free frame greyed (three equal channels) and/or blurred (Gaussian sigma `blur` px)."""
    if grey:
        frame = np.repeat(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2)
    return cv2.GaussianBlur(frame, (0, 0), blur) if blur > 0 else frame


def face_free_numbers(c: Counter, kind: str, n: int, blur: float = 0.0, grey: bool = False,
                      kept: list | None = None, video: bool = False, size=(640, 360), crf: int | None = None) -> dict:
    """The counts for one face-free set; the finds the verifier keeps are added to `kept` (dicts).
    "detect" counts what the pipeline's own call keeps (`VerifyingDetector.detect`, one verifier for
    the set: a find overlapping one it confirmed in the last calls is kept unasked) and the frames
    with a kept find; the other counts ask `is_false` of every find afresh. `size`: the frames' (width,
    height); `crf`: libx264's quality setting for the video path (None: its default, 23)."""
    frames = [altered(f, blur, grey) for f in face_free(kind, n, *size)]
    wholes = video_detector_inputs(frames, c.bare.input_size, crf=crf, whole=True) if video else [None] * len(frames)
    pipeline = VerifyingDetector(c.bare, c.verified.policy)
    pipeline.confirmers = c.verified.confirmers  # the same finders, built once
    judge = FrameJudge(pipeline)  # the pipeline's look at the frame after its detect() call
    before = after = sharp_only = no_grey = detect_kept = detect_frames = softened = 0
    secs, soft_change = [], []
    for i, (fr, wh) in enumerate(zip(frames, wholes)):
        small = wh.small if wh is not None else detector_input(c.bare, fr)[0]
        b, a, s, so, ng = c.run(fr, small, wh)
        h, w = fr.shape[:2]
        iw, ih = c.bare.input_size(w, h)
        d = pipeline.detect(small, (w / iw, h / ih))
        d = judge.faces(wh if wh is not None else rgb_frame(fr, (w / iw, h / ih)), d)
        soft = [f for f in d if f.soft]  # as the pipeline softens them (the verifier's and the frame look's)
        d = [f for f in d if not f.soft]
        softened += len(soft)
        soft_change += [change(fr, f.box) for f in soft]  # in the frame: how much softening shows
        detect_kept, detect_frames = detect_kept + len(d), detect_frames + bool(d)
        if kept is not None:
            kept += [{"kind": kind, "blur": blur, "grey": grey, "video": video, "frames": n, "frame": i,
                      "box": [round(float(v), 2) for v in f.box], "score": round(float(f.score), 4)} for f in a]
        before, after = before + len(b), after + len(a)
        sharp_only, no_grey = sharp_only + len(so), no_grey + len(ng)
        secs.append(s)
    return {"frames": len(frames), "video": video, "false_before": before, "false_after": after,
            "false_without_sharpened": after - sharp_only, "false_without_grey_checks": no_grey,
            "per_1000_before": round(1000 * before / len(frames), 1),
            "per_1000_without_sharpened": round(1000 * (after - sharp_only) / len(frames), 1),
            "per_1000_without_grey_checks": round(1000 * no_grey / len(frames), 1),
            "per_1000_after": round(1000 * after / len(frames), 1),
            "detect_kept": detect_kept, "detect_frames_per_1000": round(1000 * detect_frames / len(frames), 1),
            "softened": softened, "per_1000_softened": round(1000 * softened / len(frames), 1),
            "softened_change_max": round(max(soft_change), 2) if soft_change else None,
            "added_ms_mean": round(1000 * float(np.mean(secs)), 2), "added_ms_max": round(1000 * max(secs), 1)}


def recall_numbers(c: Counter, frames, video: bool = False) -> dict | None:
    """frames: (rgb, ground-truth boxes) pairs. `video`: the frames as one H.264 clip through the
    pipeline's decoder (None for a set whose frames differ in size: no one video holds them)."""
    frames = [(f[0], f[1], f[2] if len(f) > 2 else None) for f in frames]  # (rgb, boxes, who or None)
    if video and len({fr.shape for fr, _, _ in frames}) > 1:
        return None
    wholes = (video_detector_inputs([fr for fr, _, _ in frames], c.bare.input_size, whole=True) if video
              else [None] * len(frames))
    total = hit_b = hit_a = lost = lost_without = lost_grey = softened = 0
    secs = []
    asked, dropped = c.frame_judge.asked, c.frame_judge.dropped
    for (fr, gt, who), wh in zip(frames, wholes):
        b, a, s, so, ng = c.run(fr, None if wh is None else wh.small, wh)
        hb, ha = found(gt, [f.box for f in b]), found(gt, [f.box for f in a])
        hw = found(gt, [f.box for f in a if not any(f is g for g in so)])
        hg = found(gt, [f.box for f in ng])  # as the verifier without the grey checks keeps
        total, hit_b, hit_a = total + len(gt), hit_b + int(hb.sum()), hit_a + int(ha.sum())
        hs = found(gt, [f.box for f in c.last_soft])  # dropped, but blurred further (stream/soften.py)
        lost += int((hb & ~ha).sum())
        softened += int((hb & ~ha & hs).sum())
        if c.lost_faces is not None:
            rgb = fr if wh is None else bl.crop_rgb(wh, Crop(0, 0, wh.width, wh.height))
            gone = np.flatnonzero(hb & ~ha)
            c.lost += lost_identified(c, rgb, [gt[k] for k in gone], b, c.last_soft,
                                      None if who is None else [who[k] for k in gone])
        lost_without += int((hb & ~hw).sum())
        lost_grey += int((hb & ~hg).sum())
        secs.append(s)
    return {"faces": total, "found_before": hit_b, "found_after": hit_a, "lost": lost, "softened": softened,
            "raw": lost - softened,
            "lost_without_sharpened": lost_without, "lost_without_grey_checks": lost_grey,
            "recall_before": round(hit_b / max(total, 1), 3), "recall_after": round(hit_a / max(total, 1), 3),
            "judged_on_frame": c.frame_judge.asked - asked, "dropped_on_frame": c.frame_judge.dropped - dropped,
            "added_ms_mean": round(1000 * float(np.mean(secs)), 2)}


def lost_identified(c: Counter, rgb: np.ndarray, lost_boxes, finds, soft=(), who=None) -> list[dict]:
    """Per real face the verifier dropped (its ground-truth box): the bare find on it, how big, and
    how close it comes to any held-out person (`lost_faces.Gallery.best`), as the output shows it:
    a face kept as a soft find is judged softened (`soften`, as the processor does). `who`: each
    face's person, where the set knows it (`Gallery.best`'s own-person numbers)."""
    out = []
    for i, g in enumerate(lost_boxes):
        f = next(f for f in finds if found([g], [f.box])[0])
        softened = next((s for s in soft if found([g], [s.box])[0]), None)
        shown = rgb
        if softened is not None:
            shown = np.ascontiguousarray(rgb).copy()
            soften(rgb_frame(shown, (1.0, 1.0)), softened.box)
        out.append({"find_frame_px": round(f.size, 1), "score": round(float(f.score), 3),
                    "softened": softened is not None,
                    **c.lost_faces.best(shown, f.keypoints, None if who is None else who[i])})
    return out


def pascal_frames(canvas=None):
    out = []
    for xml in ("training.xml", "testing.xml"):
        for item in load_imglab(TESTDATA / xml):
            img = read_rgb(TESTDATA / item.file)
            boxes = item.boxes[~item.ignore]
            if canvas:
                img, ox, oy = paste_on_canvas(img, *canvas)
                boxes = boxes + [ox, oy, ox, oy]
            out.append((img, list(boxes)))
    return out


HEAVY_BLUR_SIZES = (32, 40, 48, 56, 64)
HEAVY_BLUR_DIVISORS = (14.0, 10.0)  # sigma = face size / this (the hard sets' blur is size/20)


def heavy_blur_faces(portraits: int, divisor: float, split: str = "held_out", first: int = 0,
                     sizes=HEAVY_BLUR_SIZES, width: int = 640, height: int = 360):
    """Frames (width x height) of portrait heads at `sizes` blurred with sigma = size / `divisor`,
    placed as in tests/false_face_sets.py `hard_faces`, with their face boxes and who each face is
    (the portrait's index; held-out ones only: `--identify-lost` knows their photos)."""
    heads = [build_head(first + i, 200) if split == "build" else portrait_head(first + i, 200)
             for i in range(portraits)]
    bg = background(width, height, seed=21)
    frames = []
    for size in sizes:
        scale = size / (0.45 * 200)
        places = _places(size, width, height)
        for p0 in range(0, portraits, len(places)):
            img, boxes = bg.copy(), []
            for j, (cx, cy) in enumerate(places[:portraits - p0]):
                head = cv2.GaussianBlur(heads[p0 + j], (0, 0), max(0.3, size / divisor) / scale)
                boxes.append(_paste(img, head, cx, cy, scale, 0.0))
            who = [first + p0 + j for j in range(len(boxes))] if split == "held_out" else None
            frames.append((img, boxes, who))
    return frames


def table(res: dict) -> str:
    lines = ["| face-free footage (640x360) | frames | false faces / 1,000 frames: bare → without the sharpened "
             "look → without the grey checks → verifier | frames with a false face / 1,000, as the pipeline asks "
             "(`detect`) | soft finds / 1,000 frames (blurred further, stream/soften.py) | added ms / frame |",
             "|---|---|---|---|---|---|"]
    for k, r in res["face_free"].items():
        lines.append(f"| {k} | {r['frames']} | {r['per_1000_before']:g} → {r['per_1000_without_sharpened']:g} → "
                     f"{r['per_1000_without_grey_checks']:g} → **{r['per_1000_after']:g}** | "
                     f"**{r['detect_frames_per_1000']:g}** | {r['per_1000_softened']:g} | "
                     f"{r['added_ms_mean']:.1f} (max {r['added_ms_max']:.0f}) |")
    lines += ["", "| real faces | faces | recall before → after (lost; lost without the sharpened look; lost "
              "without the grey checks) | of the lost: softened, written raw | added ms / frame |",
              "|---|---|---|---|---|"]
    for k, r in res["real"].items():
        lines.append(f"| {k} | {r['faces']} | {r['recall_before']:.3f} → {r['recall_after']:.3f} ({r['lost']}; "
                     f"{r['lost_without_sharpened']}; {r['lost_without_grey_checks']}) | "
                     f"{r['softened']}, **{r['raw']}** | "
                     f"{r['added_ms_mean']:.1f} |")
    if res.get("sharpened_looks"):
        sl = res["sharpened_looks"]
        lines += ["", f"sharpened looks: {sl['asked']} asked, {sl['kept']} kept, {sl['ms_mean']:.1f} ms each "
                      f"(max {sl['ms_max']:.0f})"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames of each face-free kind")
    ap.add_argument("--portraits", type=int, default=24, help="held-out portraits in the hard sets")
    ap.add_argument("--split", choices=("held_out", "build"), default="held_out",
                    help="portraits of the hard sets (build: the ones the verifier was tuned on)")
    ap.add_argument("--first", type=int, default=0, help="index of the first portrait of the hard sets")
    ap.add_argument("--real-only", action="store_true", help="skip the face-free footage")
    ap.add_argument("--free-only", action="store_true", help="only the face-free footage")
    ap.add_argument("--kinds", default=",".join(FACE_FREE_KINDS))
    ap.add_argument("--blur", type=float, default=0.0, help="blur the face-free footage (Gaussian sigma, px)")
    ap.add_argument("--grey", action="store_true", help="grey the face-free footage")
    ap.add_argument("--grey-real", action="store_true", help="grey the real-face sets")
    ap.add_argument("--sets", default="pascal,hard,heavy,footage",
                    help="real-face sets to run (pascal: both PASCAL sets; hard: the portrait variants; "
                         "heavy: the heavier blur sets; footage: the footage clip)")
    ap.add_argument("--no-sharpened", action="store_true",
                    help="the sharpened look's bar out of reach: the verifier's decisions before it")
    ap.add_argument("--no-corroborate", action="store_true",
                    help="a weak path's yes alone keeps a find, colour finds under 16 px are not judged: the "
                         "verifier before the thirteenth session")
    ap.add_argument("--no-half-face", action="store_true",
                    help="no second look at narrow finds as half-hidden faces: the verifier before the "
                         "twenty-fourth session (`VerifyPolicy.half_face_aspect` = 0)")
    ap.add_argument("--no-wide-half-face", action="store_true",
                    help="half-hidden faces looked for only under `half_face_aspect`: the verifier before "
                         "the twenty-sixth session (`VerifyPolicy.half_face_wide_aspect` = 0)")
    ap.add_argument("--video", action="store_true",
                    help="every set through the product's video path (H.264, then the pipeline's decoder and "
                         "its swscale copy for the detector) instead of cv2.INTER_AREA on the frames")
    ap.add_argument("--size", default="640x360", help="face-free frames' WIDTHxHEIGHT")
    ap.add_argument("--real-size", default="640x360",
                    help="the portrait sets' frame WIDTHxHEIGHT (1280x720: small faces under 12 px in the "
                         "detector's input, judged on the frame's pixels)")
    ap.add_argument("--face-sizes", help="the portrait sets' face sizes, px, comma-separated (default: "
                                         "the hard sets' 24-224, the heavy blur sets' own)")
    ap.add_argument("--crf", type=int, help="libx264's CRF for --video (default: libx264's own, 23)")
    ap.add_argument("--json", help="write the numbers here too")
    ap.add_argument("--dump-kept", help="write the face-free finds the verifier keeps here (JSON)")
    ap.add_argument("--identify-lost", action="store_true",
                    help="match each real face the verifier drops against the held-out people's photos "
                         "(EdgeFace xs, and xxs with torch): is it identifiable? (tools/bench/lost_faces.py)")
    a = ap.parse_args(argv)
    sets = set(a.sets.split(","))
    if not sets <= {"pascal", "hard", "heavy", "footage"}:
        print(f"unknown --sets: {a.sets}", file=sys.stderr)
        return 2
    if not (TESTDATA / "training.xml").exists():
        print(f"no training.xml in {TESTDATA}", file=sys.stderr)
        return 2
    policy = VerifyPolicy()
    if a.no_sharpened:
        policy.sharp_redetect_keep = math.inf
    if a.no_corroborate:
        policy.corroborate = False
    if a.no_half_face:
        policy.half_face_aspect = 0.0
    if a.no_wide_half_face:
        policy.half_face_wide_aspect = 0.0
    c = Counter(policy)
    if a.identify_lost:
        from lost_faces import Gallery

        c.lost_faces = Gallery()
    res = {"face_free": {}, "real": {}}
    size = tuple(int(v) for v in a.size.lower().split("x"))
    alteration = (f", blur {a.blur:g} px" if a.blur > 0 else "") + (", grey" if a.grey else "") + (
        ", H.264" if a.video else "") + (f" CRF {a.crf}" if a.video and a.crf is not None else "") + (
        f", {a.size}" if size != (640, 360) else "")
    kept = []
    for kind in [] if a.real_only else a.kinds.split(","):
        res["face_free"][kind + alteration] = face_free_numbers(c, kind, a.frames, a.blur, a.grey, kept,
                                                                a.video, size, a.crf)
        print(kind + alteration, res["face_free"][kind + alteration], file=sys.stderr, flush=True)
    real = {}
    if not a.free_only and "pascal" in sets:
        real.update({"PASCAL": pascal_frames(), "PASCAL in 720p": pascal_frames((1280, 720))})
    given = tuple(int(v) for v in a.face_sizes.split(",")) if a.face_sizes else None
    rw, rh = (int(v) for v in a.real_size.lower().split("x"))
    where = f" in {rw}x{rh}" if (rw, rh) != (640, 360) else ""
    sizes = given or FACE_SIZES + LARGE_SIZES
    if not a.free_only and "hard" in sets:
        real.update({f"portraits {sizes[0]}-{sizes[-1]} px{where}, {v}": f for v, f in hard_faces(
            a.portraits, sizes, VARIANTS, rw, rh, split=a.split, first=a.first).items()})
    sizes = given or HEAVY_BLUR_SIZES
    if not a.free_only and "heavy" in sets:
        for div in HEAVY_BLUR_DIVISORS:
            real[f"portraits {sizes[0]}-{sizes[-1]} px{where}, blur size/{div:g}"] = \
                heavy_blur_faces(a.portraits, div, a.split, a.first, sizes, rw, rh)
    if not a.free_only and "footage" in sets:
        real["footage clip (tests/footage.py)"] = [(f.rgb, f.faces) for f in multi_person()]
    if a.grey_real:
        real = {f"{name}, grey": [(altered(f[0], grey=True), *f[1:]) for f in frames] for name, frames in real.items()}
    for name, frames in real.items():
        r = recall_numbers(c, frames, a.video)
        if r is None:
            print(f"{name}: frames of several sizes, not one video: skipped", file=sys.stderr, flush=True)
            continue
        res["real"][name] = r
        if c.lost_faces is not None:
            r["lost_faces"], c.lost = c.lost, []
        print(name, res["real"][name], file=sys.stderr, flush=True)
    calls = c.sharp_calls
    if calls:
        res["sharpened_looks"] = {
            "asked": len(calls), "kept": sum(sc >= c.verified.policy.sharp_redetect_keep for sc, _ in calls),
            "ms_mean": round(1000 * float(np.mean([t for _, t in calls])), 2),
            "ms_max": round(1000 * max(t for _, t in calls), 1)}
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if a.dump_kept:
        Path(a.dump_kept).write_text(json.dumps(kept, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
