"""Faces written raw before their first find (stream/look_back.py), on clips of held-out portraits.

    python tools/bench/bench_look_back.py [--people 12] [--first 0] [--json out.json]

Three kinds of clip, one measured held-out portrait each, 640x360, 25 fps, H.264 (libx264's defaults, as a
user's file), through `deidentify` at default settings (FFV1 out, so the output is what was drawn):
- `enter`: the head walks in from the left edge at 8 px a frame (heads of 200 and 110 px: faces of
  ~90 and ~50 px), 30 frames;
- `enter_beside`: the same 200 px head walking in while another held-out person stands at the right
  from the first frame (a face is tracked, so the detector skips frames: `--detect-every`);
- `focus`: the head sits in the picture out of focus and comes into focus (Gaussian sigma 16 px
  falling to 0 over 10 frames; heads of 200 px), 16 frames.
Per frame the face's place is known (the face box `portrait_head` centres, ~45 % of the head); a
face-frame counts where at least a quarter of that box is inside the picture. A face-frame is
**raw** where nine in ten of its visible box's pixels are as they came (within 2 levels). Counted:
raw face-frames before the face's first find (the look-back's ground) and after it, face-frames
hidden by the look-back, and frames hidden by it where no face was visible (the price). For the
`focus` clips, the raw face-frames before the first find are also judged by EdgeFace against the
clip's last (sharp) frame, at its FaceMesh points (the head does not move), worst of the five
views: `identifiable` counts those over its balanced threshold.
Run it with PYTHONPATH set to another tree's package to compare (the report's count is missing
there: 0).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from clips import read_frames, write_clip  # noqa: E402
from footage import mesh_of, portrait_head  # noqa: E402
from ideud.stream.options import Options  # noqa: E402
from ideud.stream.runner import deidentify  # noqa: E402

W, H = 640, 360
FACE_SHARE = 0.45  # the face box's side, as a share of portrait_head's square


def _bg() -> np.ndarray:
    f = np.empty((H, W, 3), np.uint8)
    f[:] = (90, 120, 150)
    return f


def enter_clip(head: np.ndarray, step: int = 8, n: int = 30, still: Optional[np.ndarray] = None):
    """Frames and per-frame face boxes (x0, y0, x1, y1, may reach outside the picture) of `head`;
    `still`: another head standing at the right from the first frame (tracked all along)."""
    s = head.shape[0]
    y = (H - s) // 2
    frames, boxes = [], []
    for i in range(n):
        x = -s + step * (i + 1)  # the head square's left edge
        f = _bg()
        if still is not None:
            t = still.shape[0]
            f[(H - t) // 2:(H - t) // 2 + t, W - t - 20:W - 20] = still
        a, b = max(0, x), min(W, x + s)
        if b > a:
            f[y:y + s, a:b] = head[:, a - x:b - x]
        frames.append(f)
        c, half = x + s / 2, FACE_SHARE * s / 2
        boxes.append((c - half, y + s / 2 - half, c + half, y + s / 2 + half))
    return frames, boxes


def focus_clip(head: np.ndarray, n: int = 16, sigma0: float = 16.0, steps: int = 10):
    s = head.shape[0]
    x, y = (W - s) // 2, (H - s) // 2
    frames, boxes = [], []
    for i in range(n):
        sigma = sigma0 * max(0.0, 1 - i / steps)
        f = _bg()
        f[y:y + s, x:x + s] = cv2.GaussianBlur(head, (0, 0), sigma) if sigma > 0.3 else head
        frames.append(f)
        half = FACE_SHARE * s / 2
        boxes.append((x + s / 2 - half, y + s / 2 - half, x + s / 2 + half, y + s / 2 + half))
    return frames, boxes


class Identify:
    """EdgeFace of a raw face-frame against the clip's sharp last frame (the same place)."""

    def __init__(self):
        from ideud.models import facemesh as fm
        from ideud.models.edgeface import default_edgeface
        from ideud.models.recognizers import TwoRecognizers, edge_views
        from ideud.stream.detect import make_detector

        self.two, self.views, self.limit = TwoRecognizers(), edge_views, default_edgeface().threshold("balanced")
        self.det, self.mesh = make_detector("centerface"), fm.FaceMesh()  # one of each for the whole run

    def __call__(self, sharp: np.ndarray, frames: list) -> int:
        lm = mesh_of(sharp, self.det, self.mesh)
        if lm is None or not frames:
            return 0
        ref = self.two.chip_embeddings(np.stack(self.views(sharp, lm, full=False)))
        return int((self.two.edge_similarity([(f, lm) for f in frames], ref) > self.limit).sum())


def _meets(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def judge(src, out, boxes, log, identify=None) -> dict:
    # found: a face processed where this face is (a clip's other face, standing apart, does not count)
    found = [i for i, e in enumerate(log) if any(_meets(f["box"], boxes[i]) for f in e["faces"])]
    first = found[0] if found else len(src)
    counts = dict(face_frames=0, raw_before_first=0, raw_after=0, before_first=0, hidden=0, hidden_no_face=0)
    raw_first = []
    for i, (a, b, box) in enumerate(zip(src, out, boxes)):
        x0, y0, x1, y1 = box
        cx0, cy0, cx1, cy1 = max(0, int(x0)), max(0, int(y0)), min(W, int(np.ceil(x1))), min(H, int(np.ceil(y1)))
        visible = (cx1 > cx0 and cy1 > cy0 and (cx1 - cx0) * (cy1 - cy0) >= 0.25 * (x1 - x0) * (y1 - y0))
        hidden = bool(log[i].get("hidden_before_found"))
        counts["hidden"] += hidden and visible
        counts["hidden_no_face"] += hidden and not visible
        if not visible:
            continue
        counts["face_frames"] += 1
        d = np.abs(a[cy0:cy1, cx0:cx1].astype(int) - b[cy0:cy1, cx0:cx1].astype(int)).max(2)
        raw = float((d <= 2).mean()) >= 0.9
        if i < first:
            counts["before_first"] += 1
            counts["raw_before_first"] += raw
            if raw:
                raw_first.append(b)
        else:
            counts["raw_after"] += raw
    if identify is not None:
        counts["identifiable"] = identify(src[-1], raw_first)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--first", type=int, default=0, help="the first held-out portrait")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    kinds = {"enter_200": (200, enter_clip), "enter_110": (110, enter_clip), "focus_200": (200, focus_clip),
             "enter_beside_200": (200, enter_clip)}
    totals: dict = {}
    identify = Identify()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.first, a.first + a.people):
            for kind, (size, make) in kinds.items():
                # beside: another held-out person (none of the measured ones) stands there all along
                extra = dict(still=portrait_head(k + a.people, 200)) if "beside" in kind else {}
                frames, boxes = make(portrait_head(k, size), **extra)
                src = write_clip(str(Path(tmp) / "in.mp4"), frames, audio=False)
                out = str(Path(tmp) / "out.mkv")
                rep = deidentify(src, out, Options(codec="ffv1", seed=1, audio=False, frame_log=True, force=True))
                c = judge(read_frames(src), read_frames(out), boxes, rep["frame_log"],
                          identify if kind.startswith("focus") else None)
                t = totals.setdefault(kind, {})
                for key, v in c.items():
                    t[key] = t.get(key, 0) + int(v)
                print(k, kind, c, flush=True)
    for kind, t in totals.items():
        print(f"{kind}: {t}")
    if a.json:
        Path(a.json).write_text(json.dumps(totals, indent=1))


if __name__ == "__main__":
    main()
