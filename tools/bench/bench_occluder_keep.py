"""Does an obfuscated face that keeps the hand or microphone in front of it still hide the person?
(issue 13, stream/obfuscate_keep.py)

Portraits with a hand (and forearm) or a microphone pasted over the mouth (tests/test_occlusion_judge.py's
`_over_mouth`), obfuscated as the pipeline does (`blend.obfuscate`, strengths 0 and 1) with nothing
kept ("fill"), with the occluder's own pixels kept ("occluder"), with the occluder and the occlusion
stage's margin of 5 % of the face size ("margin": what an obfuscated face keeps where the stage found
the occluder exactly) and with that margin feathered as a rendered face's cut is ("feathered"), the
eyes and brows filled (`obfuscate_keep.trusted`). Each is measured by both recognizers, worst view, against the person
without the occluder and with it (the guard's reference of a face first seen behind a hand), and
against the person behind it with the occluder greyed (stream/guard_occluded_refs.py): the output
as drawn ("masked_ref", what the guard does), the output greyed there too ("masked_both"), and the
occluder inpainted instead of greyed ("inpainted_ref", OpenCV's Telea).

    python tools/bench/bench_occluder_keep.py [--split build|held_out] [--n 30] [--json out.json]

Prints per output and reference: the lowest dlib distance, the highest EdgeFace similarity, and
how many faces a recognizer matched (dlib < 0.6 or EdgeFace > 0.214, balanced), plus the largest
drop of the dlib distance (rise of the EdgeFace similarity) keeping the occluder causes against
the plain fill of the same face, and `missed_vs_clean`: faces the person without the occluder
matched that this reference did not (an under-estimate of how recognisable the output is).

Measured 2026-12-02 (20 portraits each; strength 0 / 1; "clean": the reference without the
occluder, "with": the reference behind it; matched = faces a recognizer matched, of 20):

    build [100:120]     fill        occluder        margin          feathered
    hand, clean         0 / 0       1 / 1           2 / 2           2 / 3
    hand, with          5 / 2       5 / 5           9 / 10          14 / 14
    microphone, clean   0 / 0       0 / 0           1 / 1           1 / 0
    microphone, with    1 / 1       1 / 1           1 / 1           2 / 2
    held out [:20]
    hand, clean         0 / 0       2 / 2           1 / 2           3 / 3
    hand, with          4 / 2       7 / 6           13 / 13         13 / 14
    microphone, clean   0 / 0       0 / 0           1 / 1           2 / 2
    microphone, with    1 / 1       1 / 1           2 / 1           4 / 3

dlib sits ~0.6 from anyone on a face-less fill, so even the plain fill is "matched" against a
reference taken behind the hand (which shares it), and keeping only the occluder's own pixels (no
face pixel) moved dlib up to 0.086 (build; 0.108 held out) closer than the fill, to 0.537 (build;
0.463 held out) at the least. The feather leaks the most (EdgeFace up to +0.26 against the clean
person): an obfuscated face keeps no feather. The margin still leaks a little (1-2 of 20 matched
against the clean person, EdgeFace or dlib): hence the check of every kept face against the
person at run time (stream/guard_views.py `kept_occluder_passes`: dlib >= 0.6 and EdgeFace <=
its limit, no slack; a face refused there is filled whole).

The references behind the occluder with it greyed (2026-12-02, build [100:120]; matched of 20,
strength 0 / 1, in brackets missed_vs_clean):

                        fill            occluder        margin          feathered
    hand, masked_ref    3 / 3 (0/0)     6 / 5 (1/1)     8 / 10 (0/0)    11 / 11 (0/0)
    hand, masked_both   4 / 3 (0/0)     3 / 3 (1/1)     8 / 8 (1/1)     9 / 9 (1/1)
    hand, inpainted     2 / 1 (0/0)     5 / 5 (1/1)     4 / 6 (1/1)     7 / 8 (1/1)
    hand, with          5 / 2 (0/0)     5 / 5 (1/1)     9 / 10 (0/0)    14 / 14 (0/0)
    mic, masked_ref     2 / 0 (0/0)     0 / 0 (0/0)     0 / 0 (1/1)     0 / 0 (1/0)
    mic, masked_both    5 / 0 (0/0)     2 / 0 (0/0)     2 / 3 (0/0)     6 / 8 (0/0)
    mic, inpainted      0 / 0 (0/0)     0 / 0 (0/0)     0 / 0 (1/1)     0 / 0 (1/0)
    mic, with           1 / 1 (0/0)     1 / 1 (0/0)     1 / 1 (0/0)     2 / 2 (0/0)
    held out [:20] (measured after the choice, not used for it)
    hand, masked_ref    6 / 5 (0/0)     7 / 7 (0/0)     9 / 9 (0/1)     11 / 10 (0/1)
    hand, masked_both   7 / 5 (0/0)     7 / 5 (0/0)     10 / 9 (0/1)    10 / 11 (0/1)
    hand, inpainted     2 / 1 (0/0)     4 / 4 (0/0)     4 / 4 (1/2)     6 / 5 (1/1)
    hand, with          4 / 2 (0/0)     7 / 6 (0/0)     13 / 13 (0/0)   13 / 14 (0/0)
    mic, masked_ref     3 / 1 (0/0)     1 / 1 (0/0)     3 / 2 (0/1)     3 / 3 (0/1)
    mic, masked_both    6 / 1 (0/0)     6 / 1 (0/0)     7 / 6 (0/0)     9 / 10 (0/0)
    mic, inpainted      2 / 1 (0/0)     0 / 0 (0/0)     2 / 2 (1/1)     2 / 1 (1/1)
    mic, with           1 / 1 (0/0)     1 / 1 (0/0)     2 / 1 (1/1)     4 / 3 (0/1)

Greying the same region in the output too makes the grey shared content: the plain fill (nothing
kept) is then "matched" 3-5 times (build), and on tools/bench/bench_footage.py's
microphone_from_start clip every kept face sat at dlib 0.49-0.52 from it (filled whole: 1 of 28
kept). Inpainting misses no fewer than grey. Every reference behind the occluder, the old one
with it included, misses 0-1 of 20 faces the clean person matched (build: by dlib at 0.58-0.59):
a check of a face first seen behind its occluder is that much weaker than one against the person
without it; the guard uses masked_ref.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (puts the checkout's tests/ on the path)

from test_occlusion_judge import _over_mouth  # noqa: E402
from ideud.eval.portraits import build_names, held_out_names, portraits_dir  # noqa: E402
from ideud.models import facemesh as fm  # noqa: E402
from ideud.models.recognizers import TwoRecognizers  # noqa: E402
from ideud.stream.detect import make_detector  # noqa: E402
from ideud.stream.guard_policy import POLICIES  # noqa: E402
from ideud.stream.guard_occluded_refs import greyed  # noqa: E402
from ideud.stream.guard_views import obfuscated  # noqa: E402
from ideud.stream.obfuscate_keep import trusted  # noqa: E402
from ideud.stream.types import Crop  # noqa: E402

TAU = 0.6


def stage_like(truth: np.ndarray, lm: np.ndarray, feather: bool) -> np.ndarray:
    """What the occlusion stage leaves original for an occluder `truth` (uint8): it and a margin of 5 %
    of the face size; `feather`: and the feather outwards a rendered face gets (an obfuscated one does not)."""
    size = float(np.ptp(lm[:, :2], 0).max())
    r = max(1, int(round(0.05 * size)))
    grown = cv2.dilate(truth.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    if not feather:
        return grown * 255
    soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), r)
    soft[grown > 0] = 1.0
    return np.clip(soft * 255 + 0.5, 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="build", choices=("build", "held_out"))
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    names = (build_names if a.split == "build" else held_out_names)(portraits_dir())
    names = names[100:100 + a.n] if a.split == "build" else names[:a.n]
    edge_max = POLICIES["balanced"].edge_max
    det, mesh, two = make_detector("centerface"), fm.FaceMesh(), TwoRecognizers()
    rows = []
    try:
        for name in names:
            bgr = cv2.imread(str(portraits_dir() / name), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            found = [f for f in det.detect(rgb) if not f.soft]
            if not found:
                continue
            f = max(found, key=lambda f: f.size)
            roi = fm.roi_from_keypoints(f.box, f.keypoints[0], f.keypoints[1])
            lm = mesh(rgb, roi)
            if lm is None:
                continue
            clean_ref = two.person(rgb, lm[:, :2])
            for kind in ("hand", "microphone"):
                img, truth = _over_mouth(rgb, lm, kind)
                occ_ref = two.person(img, lm[:, :2])
                # the reference behind the occluder with the occluder greyed (stream/guard_views.py
                # `greyed`): compared with the output greyed there too, or the output as drawn
                masked_ref = two.person(greyed(img, truth), lm[:, :2])
                # or with the occluder inpainted from the face about it (Telea)
                hole = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8))
                inpainted_ref = two.person(cv2.inpaint(img, hole, 5, cv2.INPAINT_TELEA), lm[:, :2])
                whole = Crop(0, 0, img.shape[1], img.shape[0])
                box = np.r_[lm[:, :2].min(0), lm[:, :2].max(0)]
                keeps = {"fill": None, "occluder": trusted(truth.astype(np.uint8) * 255, lm[:, :2])[0],
                         "margin": trusted(stage_like(truth, lm, False), lm[:, :2])[0],
                         "feathered": trusted(stage_like(truth, lm, True), lm[:, :2])[0]}
                for strength in (0, 1):
                    for what, keep in keeps.items():
                        out = obfuscated(img, box, strength, keep=None if keep is None else (whole, keep))
                        for ref_name, ref, seen in (("clean", clean_ref, out), ("with_occluder", occ_ref, out),
                                                    ("masked_both", masked_ref, greyed(out, truth)),
                                                    ("masked_ref", masked_ref, out),
                                                    ("inpainted_ref", inpainted_ref, out)):
                            d, s = two.measure(seen, lm[:, :2], np.asarray([ref[0]]), np.asarray([ref[1]]))
                            rows.append(dict(name=name, kind=kind, strength=strength, keep=what, ref=ref_name,
                                             dlib=d, edge=s, kept=keep is not None))
    finally:
        mesh.close()
    res = {"split": a.split, "portraits": len({r["name"] for r in rows}), "edge_max": edge_max, "groups": {}}
    fill = {(r["name"], r["kind"], r["strength"], r["ref"]): r for r in rows if r["keep"] == "fill"}
    clean = {(r["name"], r["kind"], r["strength"], r["keep"]): r for r in rows if r["ref"] == "clean"}

    def matched(r):
        return r["dlib"] is None or r["dlib"] < TAU or r["edge"] > edge_max
    for key in sorted({(r["kind"], r["strength"], r["keep"], r["ref"]) for r in rows}):
        sel = [r for r in rows if (r["kind"], r["strength"], r["keep"], r["ref"]) == key]
        d = np.array([r["dlib"] for r in sel])
        s = np.array([r["edge"] for r in sel])
        base = [fill[(r["name"], r["kind"], r["strength"], r["ref"])] for r in sel]
        res["groups"]["/".join(map(str, key))] = {
            "faces": len(sel), "kept": int(sum(r["kept"] for r in sel)),
            "dlib_min": round(float(np.nanmin(d)), 3), "edgeface_max": round(float(s.max()), 3),
            "matched": int(sum(matched(r) for r in sel)),
            # matched against the person without the occluder, not against this reference: an under-estimate
            "missed_vs_clean": int(sum(matched(clean[(r["name"], r["kind"], r["strength"], r["keep"])])
                                       and not matched(r) for r in sel)),
            "dlib_drop_vs_fill_max": round(float(max(b["dlib"] - r["dlib"] for r, b in zip(sel, base))), 3),
            "edgeface_rise_vs_fill_max": round(float(max(r["edge"] - b["edge"] for r, b in zip(sel, base))), 3)}
    return common.emit_json(res, a.json)


if __name__ == "__main__":
    sys.exit(main())
