"""The contact sheet: a before/after PNG, one row per track, original | output pairs.

It shows the original faces: it is for the person running the evaluation, never part of a report.
Every text is measured before the canvas is sized, so labels and title are never clipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ideud.eval.numbers import evenly_spaced

CROP = 96  # px, one face crop (Evaluator keeps 96 px crops)
GAP = 6
MARGIN = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE_SCALE, LABEL_SCALE, CAPTION_SCALE = 0.4, 0.42, 0.38
TITLE = ("each pair: original | de-identified", "DIS = dlib distance, < 0.6 = same person")


def text_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height above the baseline + below it) of `text` in px."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    return w, h + base


def put(img: np.ndarray, text: str, x: int, y_top: int, scale: float, color=(0, 0, 0)) -> int:
    """Draw `text` with its top at `y_top`; returns the y below it."""
    (_, h), base = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(img, text, (x, y_top + h), FONT, scale, color, 1, cv2.LINE_AA)
    return y_top + h + base


def track_labels(t, leak_threshold: float) -> list[str]:
    dis = np.array([o.dis for o in t.obs])
    return [f"track {t.id}", f"{len(t.obs)} face-frames", f"DIS {dis.mean():.2f}",
            f"leak {np.mean(dis < leak_threshold):.0%}"]


def write_contact_sheet(all_tracks: list, opt, path) -> Optional[str]:
    """Write the sheet for the Evaluator's tracks (longest `opt.sheet_rows`, `opt.sheet_cols` pairs each)."""
    tracks = sorted((t for t in all_tracks if t.sheet), key=lambda t: -len(t.obs))[: opt.sheet_rows]
    tracks.sort(key=lambda t: t.id)
    cols = max(1, min(opt.sheet_cols, max((len(t.sheet) for t in tracks), default=1)))
    labels = [track_labels(t, opt.leak_threshold) for t in tracks]
    label_w = max((text_size(s, LABEL_SCALE)[0] for ls in labels for s in ls), default=0) + 2 * MARGIN
    label_h = max((sum(text_size(s, LABEL_SCALE)[1] + 4 for s in ls) for ls in labels), default=0)
    caption_h = text_size("f0 DIS 0.00", CAPTION_SCALE)[1] + 4
    row_h = max(CROP + caption_h, label_h) + GAP
    grid_w = label_w + cols * (2 * CROP + GAP) + GAP
    # the title on one line when it fits the grid, else on two; the sheet is never narrower than it
    one = " (".join(TITLE) + ")"
    title = [one] if text_size(one, TITLE_SCALE)[0] + 2 * MARGIN <= grid_w else list(TITLE)
    empty = "no faces found in the original"
    width = max(grid_w, *(text_size(s, TITLE_SCALE)[0] + 2 * MARGIN for s in title),
                text_size(empty, 0.5)[0] + 2 * MARGIN)
    head = MARGIN + sum(text_size(s, TITLE_SCALE)[1] + 3 for s in title) + GAP
    height = head + max(1, len(tracks)) * row_h + GAP
    sheet = np.full((height, width, 3), 255, np.uint8)
    y = MARGIN
    for line in title:
        y = put(sheet, line, MARGIN, y, TITLE_SCALE) + 3
    if not tracks:
        put(sheet, empty, MARGIN, head + 12, 0.5)
    for r, (t, ls) in enumerate(zip(tracks, labels)):
        y0 = head + r * row_h
        y = y0 + 2
        for txt in ls:
            y = put(sheet, txt, MARGIN, y, LABEL_SCALE) + 4
        pick = [t.sheet[i] for i in evenly_spaced(len(t.sheet), cols)]
        for c, (frame, d, crop_o, crop_d) in enumerate(pick):
            x = label_w + c * (2 * CROP + GAP)
            sheet[y0:y0 + CROP, x:x + CROP] = crop_o
            sheet[y0:y0 + CROP, x + CROP:x + 2 * CROP] = crop_d
            color = (200, 0, 0) if d < opt.leak_threshold else (0, 120, 0)
            put(sheet, f"f{frame} DIS {d:.2f}", x + 2, y0 + CROP + 2, CAPTION_SCALE, color)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet[:, :, ::-1]):
        raise OSError(f"cannot write {path}")
    return str(path)
