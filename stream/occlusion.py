"""Occluders in front of a face (a hand, a microphone) keep their original pixels.

Per track a reference of the face's own appearance is kept: the crop of a frame with nothing in
front of the face, in a face-aligned square (the similarity that maps that frame's landmarks onto
it). In each later frame the reference is warped onto the current face (the similarity, then
piecewise-affine over part of the mesh, so head motion and expression follow) and compared with
the original crop, after a per-channel offset for light changes, tolerant of a few pixels of
misregistration. Pixels that differ strongly form occluder seeds; only broad regions that lie
partly outside the face outline count (hands and microphones come in from outside, while an
opening mouth or a blink changes the face inside it). Seeds of one colour grow into pixels that
look more like them than like the face there (a skin-coloured hand over a cheek), and last
frame's occluder is kept where it still looks like it. The result, with a margin, is cut out of
the paste-back mask. All of it runs at `WORK` px (~8 ms a face on one core).

Every reference is judged before it is keyed (stream/occlusion_judge.py), against what does not
come from the person: the face prior's mean mouth and nose (erased under a hand or a microphone)
and the face's own skin colour (a microphone, a sleeve). A track whose frame is not clean has no
reference: each frame is judged on its own, what the judgement shows to be an occluder is cut
out, and the reference is keyed once the frames have been clean for `REKEY_CLEAR` in a row (an
occluder there from a track's first frame is not taken for face). The reference is re-keyed on
clean frames without an occluder when the head has turned or after `REKEY_FRAMES`; when the head
has turned by more than `YAW_CHANGE` (a head coming back from profile) and the comparison finds
anything, the reference no longer fits: it is dropped and the frame judged afresh, so the turn is
not taken for an occluder; an occluder found for `STUCK_FRAMES` on end re-keys on a clean-judged
frame too (a missed hand in the reference makes the face it uncovers read as an occluder). The
judgement costs about as much as the comparison (~4 ms) and runs only while a track has no
reference and when a re-key is due. A face whose occluded share is above `MAX_SHARE` is
obfuscated instead (fail closed: that much change is more likely a failed alignment than a hand).
Each `cut` also leaves for `take_occluder` what an obfuscated face may keep original in that frame
(stream/obfuscate_keep.py): less than a rendered face leaves, only the occluder's pixels at least
`KEEP_DIFF` off the face there (the colour growth takes in skin only a few levels off the
reference: 19-46 % of the face outline besides the hand on tools/bench/bench_footage.py's
multi_person clip, 16-33 % with `KEEP_DIFF`), or without a reference the judgement's own outline;
its small enclosed holes filled (`_holes_filled`), with a rim of KEEP_MARGIN, not the margin and
the feather a rendered face's cut adds (that margin is face: `_keep_found`), and only its regions
that reach into the face (`_reaching_in`).
Limits: a
skin-coloured hand that leaves the mouth and nose visible from the first frame (over the chin or a
cheek) is still taken for face; an occluder the judgement cannot delineate is rendered over; the
mesh the hand pulls shifts the reference a little (tools/bench/bench_footage.py has the numbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.models.geometry import similarity_matrix
from ideud.stream.occlusion_judge import judge, yaw_position as _yaw
from ideud.stream.render import warp_anchors, warp_field
from ideud.stream.types import Crop

WORK = 112  # px: crops are compared at most this big
SIDE = 128  # px of the face-aligned reference square (the face ~70 px, as sharp as the work size)
FACE_SHARE = 0.55  # the landmarks' extent as a share of SIDE
DIFF = 30.0  # grey levels (max over channels, blurred) by which a pixel leaves the reference's local range
STRONG_DIFF = 60.0  # grey levels of plain (not tolerant) difference that also make a seed
GROW_DIFF = 6.0  # grey levels: the least difference a pixel grown into an occluder must show
MAX_SPREAD = 40.0  # grey levels: colour spread of an occluder region that may grow (one colour)
MIN_OUTSIDE = 0.15  # share of an occluder region that must lie outside the face outline
CARRIED_OVERLAP = 0.5  # ... or inside the last frame's occluder (a hand that came in and stays)
MAX_HOLE = 0.15  # share of the face size: a hole in a kept occluder up to this side squared is filled (`_holes_filled`)
KEEP_DIFF = DIFF  # grey levels off the face there (the seeds' own) an occluder pixel needs to be kept in an obfuscated face
KEEP_INNER = 0.12  # share of the face size the face outline is shrunk by to give its inside (`_reaching_in`)
KEEP_THIN = 0.045  # share of the face size: thinner strips of an occluder are not kept (`_reaching_in`)
KEEP_INSIDE = 0.2  # share of an occluder region's pixels that must lie there for an obfuscated face to keep it
KEEP_MARGIN = 0.015  # share of the face size an obfuscated face's kept occluder is grown by (a rendered face's: 0.05)
MAX_SHARE = 0.6  # occluded share of the face mask above which the face is obfuscated instead
REKEY_FRAMES = 25
JUDGE_EVERY = 5  # frames between judgements of a frame for a re-key, after one that was not clean
REKEY_CLEAR = 5  # frames in a row without an occluder before the reference may be taken again
REKEY_TURN = 0.06  # change of the landmark layout (mean residual / face size) that re-keys
STUCK_FRAMES = 25  # frames in a row with an occluder after which a clean-judged frame re-keys anyway
YAW_CHANGE = 0.06  # change of `_yaw` past which the reference no longer fits: what differs is the turn
# (a hand pulling the mesh moved it <= 0.03 in tests/footage.py's clips, a 5-degree turn ~0.04)


@dataclass
class _Reference:
    image: np.ndarray  # SIDE x SIDE x 3 float32, face-aligned
    points: np.ndarray  # (468, 2) landmarks in the aligned square
    age: int = 0
    clear: int = 0  # frames in a row without an occluder
    occluder: Optional[np.ndarray] = None  # last frame's occluder, face-aligned (SIDE x SIDE uint8)
    occluder_colour: tuple = (0.0, 0.0)  # its mean colour and spread
    yaw: float = 0.5  # `_yaw` of the keyed frame
    wait: int = 0  # frames before a re-key may be judged again
    flagged: int = 0  # frames in a row with an occluder


def _channel_max(x: np.ndarray) -> np.ndarray:
    """x.max(-1) of an (H, W, 3) array, the same values ~20x faster (numpy's reduction over a
    length-3 last axis is slow)."""
    return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])


def _ring(points2d: np.ndarray, scale: float) -> np.ndarray:
    """The face oval grown about the face centre: fixed anchors of the non-rigid warp."""
    oval = points2d[fm.FACE_OVAL]
    centre = points2d.mean(0)
    return centre + (oval - centre) * scale


def _reaching_in(occluder: np.ndarray, lm2: np.ndarray) -> np.ndarray:
    """The regions of `occluder` (bool) that reach into the face (KEEP_INSIDE of their pixels on the
    face outline shrunk by KEEP_INNER): what the comparison finds along the face's edge alone (a
    sliver at the jaw line, the ear, where the head turned or the light moved) is face, not a hand
    in front of it."""
    size = float(np.ptp(lm2, 0).max())
    t = int(round(KEEP_THIN * size))
    m = occluder.astype(np.uint8)
    if t > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * t + 1,) * 2))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return m > 0
    inner = fm.face_polygon_mask(occluder.shape, lm2)
    r = int(round(KEEP_INNER * size))
    if r > 0:
        inner = cv2.erode(inner, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    inside = np.bincount(labels[inner > 0], minlength=n)
    reaching = inside >= KEEP_INSIDE * stats[:, cv2.CC_STAT_AREA]
    reaching[0] = False
    return reaching[labels]


def _holes_filled(occluder: np.ndarray, size: float) -> np.ndarray:
    """`occluder` (bool) with its small enclosed holes filled: pixels of a hand that happen to look
    like the face behind them (KEEP_DIFF) are inside the hand, and filled there they came out as a
    seam across a finger (tools/bench/bench_footage.py's multi_person, a hand over an obfuscated face)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~occluder).astype(np.uint8), connectivity=4)
    if n <= 2:
        return occluder
    h, w = occluder.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    enclosed = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h) & (area <= (MAX_HOLE * size) ** 2)
    enclosed[0] = False  # label 0: the occluder itself
    return occluder | enclosed[labels]


def _aligned_points(lm2: np.ndarray) -> np.ndarray:
    lo, hi = lm2.min(0), lm2.max(0)
    size = max(float((hi - lo).max()), 1e-6)
    return (lm2 - (lo + hi) / 2) * (FACE_SHARE * SIDE / size) + SIDE / 2


class OcclusionStage:
    """`visible_mask(track, crop_rgb, landmarks_in_crop, mask)` -> (mask without occluders, occluded share)."""

    def __init__(self, diff: float = DIFF):
        self.diff = diff
        self._refs: dict[int, _Reference] = {}
        self.failures = 0
        self.judged = 0  # frames judged without a reference (stream/occlusion_judge.py)
        self._clean_since: dict[int, int] = {}  # clean judgements in a row since one that was not
        self._found: dict[int, np.ndarray] = {}  # per track, the last `cut`'s occluder to keep (`take_occluder`)

    def cut(self, track_id: int, crop_rgb: np.ndarray, landmarks: Optional[np.ndarray], crop: Crop,
            mask: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
        """(the paste-back mask of a rendered face without its occluders, the occluded share of the
        face); None: obfuscate it instead.

        `landmarks` are this frame's measured (unsmoothed) ones in frame pixels: the smoothed ones
        trail a moving face by pixels, which would read as change."""
        self._found.pop(track_id, None)  # only this frame's occluder may ever be taken
        if landmarks is None:
            return mask, 0.0
        try:
            out, share = self.visible_mask(track_id, crop_rgb, landmarks[:, :2] - crop.offset, mask)
        except (ValueError, cv2.error):  # degenerate geometry (a sliver of a face at the edge)
            self.failures += 1
            self._refs.pop(track_id, None)
            return mask, 0.0  # the face is still rendered, only over whatever is in front of it
        return None if share > MAX_SHARE else (out, share)

    def take_occluder(self, track_id: int) -> Optional[np.ndarray]:
        """What an obfuscated face may keep original after the last `cut` of this track, in its crop's
        pixels (uint8: 255 the occluder and its margin, 0 the rest), or None where it found nothing; once."""
        return self._found.pop(track_id, None)

    def drop(self, track_id: int) -> None:
        self._found.pop(track_id, None)
        self._refs.pop(track_id, None)
        self._clean_since.pop(track_id, None)

    def visible_mask(self, track_id: int, crop_rgb: np.ndarray, lm: np.ndarray,
                     mask: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = crop_rgb.shape[:2]
        # worked out at WORK px: a hand is broad, and the cost must not grow with the face
        k = min(1.0, WORK / max(h, w, 1))
        lm2 = np.asarray(lm, np.float64)[:, :2] * k
        if k < 1.0:
            size = (max(1, round(w * k)), max(1, round(h * k)))
            crop_rgb = cv2.resize(crop_rgb, size, interpolation=cv2.INTER_AREA)
            small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        else:
            small_mask = mask
        ref = self._refs.get(track_id)
        if ref is None:
            return self._unkeyed(track_id, crop_rgb, lm2, small_mask, mask)
        occluder, strict = self._occluder(ref, crop_rgb, lm2, small_mask)
        face = small_mask > 0.5
        share = float((occluder & face).sum() / max(face.sum(), 1))
        ref.age += 1
        ref.clear = ref.clear + 1 if share == 0.0 else 0
        ref.flagged = ref.flagged + 1 if share > 0.0 else 0
        yawed = abs(_yaw(lm2) - ref.yaw) > YAW_CHANGE
        turned = yawed or self._turned(ref, lm2)
        if share > 0.0 and yawed:
            # the reference no longer fits this pose (a head back from profile): what differs is the
            # turn, not a hand. Judged afresh, without the reference
            self._refs.pop(track_id, None)
            return self._unkeyed(track_id, crop_rgb, lm2, small_mask, mask)
        # never right after an occluder: one missed frame must not make the hand part of the face;
        # and only on a frame judged clean on its own (a hand there all along is in neither)
        if ref.wait > 0:
            ref.wait -= 1
        elif (ref.clear >= REKEY_CLEAR and (ref.age >= REKEY_FRAMES or turned)) or ref.flagged >= STUCK_FRAMES:
            # (an occluder found for STUCK_FRAMES on end: a reference keyed with a hand the judgement
            # missed reads the face it uncovers as an occluder, left original, until re-keyed)
            if judge(crop_rgb, lm2, small_mask).clean:
                self._key(track_id, crop_rgb, lm2)
            else:
                ref.wait = JUDGE_EVERY  # (a face read as not clean, e.g. a moustache: not judged every frame)
        self._keep_found(track_id, strict, mask.shape, lm2)
        return self._cut(mask, occluder, lm2)[0], share

    def _unkeyed(self, track_id: int, crop_rgb: np.ndarray, lm2: np.ndarray, small_mask: np.ndarray,
                 mask: np.ndarray) -> tuple[np.ndarray, float]:
        """No reference yet: the frame is judged on its own (stream/occlusion_judge.py) and keyed
        only when clean; else what the judgement shows to be an occluder is cut out."""
        verdict = judge(crop_rgb, lm2, small_mask)
        self.judged += 1
        if verdict.clean:
            # after an occluder, only once it has been gone for a few frames: one that is leaving
            # (below the mouth already, still over the chin) must not become part of the face
            n = self._clean_since.get(track_id, REKEY_CLEAR - 1) + 1
            if n >= REKEY_CLEAR:
                self._clean_since.pop(track_id, None)
                self._key(track_id, crop_rgb, lm2)
                return mask, 0.0
            self._clean_since[track_id] = n
        else:
            self._clean_since[track_id] = 0
        # not keyed: what the judgement shows (a microphone leaving, below the mouth now) is cut out
        face = small_mask > 0.5
        share = float((verdict.occluder & face).sum() / max(face.sum(), 1))
        self._keep_found(track_id, verdict.occluder, mask.shape, lm2)  # the judgement's own outline: a flood fill
        return self._cut(mask, verdict.occluder, lm2)[0], share

    def _keep_found(self, track_id: int, occluder: np.ndarray, shape: tuple, lm2: np.ndarray) -> None:
        """What an obfuscated face keeps original (`take_occluder`): the occluder's own pixels at
        full size with a thin rim (`KEEP_MARGIN`), not the margin a rendered face's cut adds. That
        margin is face: between the fingers of a hand and along the face's edge it showed the
        person's own skin (tools/bench/bench_footage.py's multi_person near face, in the 22 frames it
        is obfuscated behind the hand: 12.0 % of the face oval raw with it, 6.3 % without; of the hand's
        pixels 100 % kept with it, 94 % without). Only the parts that reach into the face are kept
        (`_reaching_in`): strips along the jaw line and the ear that the comparison finds when the
        head moves are face (there 5.0 -> 3.2 % of the oval raw, 93 % of the hand kept; they also
        flickered: the still frames' output steps 1.77 -> 0.64 x the input's)."""
        occluder = _reaching_in(occluder, lm2)
        if not occluder.any():
            return
        size = float(np.ptp(lm2, 0).max())
        occluder = _holes_filled(occluder, size)
        m = occluder.astype(np.uint8) * 255
        r = int(round(KEEP_MARGIN * size))
        if r > 0:  # a pixel or two: the stage's outline, worked out smaller, misses the rim
            m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        if m.shape != tuple(shape[:2]):
            m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        self._found[track_id] = np.where(m >= 128, 255, 0).astype(np.uint8)

    @staticmethod
    def _cut(mask: np.ndarray, occluder: np.ndarray, lm2: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """`mask` (full size) without `occluder` (work size) and a margin about it, and that cut-out
        region (full size, 1 on the occluder and its margin, feathered outwards; None: nothing cut)."""
        if not occluder.any():
            return mask, None
        h, w = mask.shape[:2]
        r = max(1, int(round(0.05 * float(np.ptp(lm2, 0).max()))))  # a margin: better a little face kept than hand pasted over
        grown = cv2.dilate(occluder.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        # feathered outwards: the occluder itself keeps exactly its pixels
        soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), r)
        soft[grown > 0] = 1.0
        if occluder.shape != (h, w):
            soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
            hard = cv2.resize(grown * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 0
            soft[hard] = 1.0
        out = mask * (1.0 - soft)
        out[out < 1.0 / 255.0] = 0.0
        return out.astype(np.float32), soft

    # ------------------------------------------------------------------
    def _key(self, track_id: int, crop_rgb: np.ndarray, lm2: np.ndarray) -> None:
        pts = _aligned_points(lm2)
        s = similarity_matrix(lm2, pts)
        img = cv2.warpAffine(crop_rgb, s, (SIDE, SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        self._refs[track_id] = _Reference(img.astype(np.float32), pts, yaw=_yaw(lm2))

    @staticmethod
    def _turned(ref: _Reference, lm2: np.ndarray) -> bool:
        pts = _aligned_points(lm2)
        s = similarity_matrix(pts, ref.points)
        moved = pts @ s[:, :2].T + s[:, 2] - ref.points
        return float(np.linalg.norm(moved, axis=1).mean()) / (FACE_SHARE * SIDE) > REKEY_TURN

    def _occluder(self, ref: _Reference, crop_rgb: np.ndarray, lm2: np.ndarray,
                  mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = crop_rgb.shape[:2]
        # the reference onto the current face: similarity, then the mesh's non-rigid rest
        s = similarity_matrix(ref.points, lm2)
        sim = cv2.warpAffine(ref.image, s, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ref_here = ref.points @ s[:, :2].T + s[:, 2]
        anchors = warp_anchors(_ring(lm2, 1.5), w, h)
        keep = np.zeros(len(lm2), bool)
        keep[fm.FACE_OVAL] = True
        keep[::6] = True  # a sixth of the mesh follows expression well enough, at a sixth of the cost
        map_x, map_y = warp_field((h, w), ref_here[keep], lm2[keep], anchors)
        expected = cv2.remap(sim, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        size = float(np.ptp(lm2, 0).max())
        sigma = max(0.8, 0.01 * size)
        cur = cv2.GaussianBlur(crop_rgb.astype(np.float32), (0, 0), sigma)
        expected = cv2.GaussianBlur(expected, (0, 0), sigma)
        face = mask > 0.5
        if face.sum() < 16:
            return np.zeros((h, w), bool), np.zeros((h, w), bool)
        # tolerant of a few pixels of misregistration: the distance to the range the expected
        # image takes around each pixel (edges of eyes, glasses, hairline do not light up)
        k = max(3, int(round(0.06 * size)) | 1)
        kernel = np.ones((k, k), np.uint8)
        lo, hi = cv2.erode(expected, kernel), cv2.dilate(expected, kernel)
        cur_o = cur - _light_offset(cur - expected, face)
        d_ref = _channel_max(np.maximum(np.maximum(lo - cur_o, cur_o - hi), 0))
        # looked for in a band around the face only: past it, hair and background move on their own
        r = max(1, int(round(0.025 * size)))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
        band = cv2.dilate((mask > 0.05).astype(np.uint8), disc, iterations=2)
        # a plain difference far above the tolerant one's threshold counts too: next to a smile's
        # teeth the tolerant range takes in any light hand
        plain = _channel_max(np.abs(cur_o - expected))
        cand = (((d_ref > self.diff) | (plain > STRONG_DIFF)) & (band > 0)).astype(np.uint8)
        # thick regions only: misregistration leaves thin slivers along edges, a hand is broad
        cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, disc)
        occluder = _reaching(cand, mask)
        to_face = plain
        if ref.occluder is not None:
            # what was occluder in the last frame stays so while it still looks like it: the mesh
            # the hand itself pulls can make the comparison lose the hand's far end
            prev = cv2.warpAffine(ref.occluder, s, (w, h), flags=cv2.INTER_NEAREST) > 0
            # and a region that differs from the face where last frame's occluder was is that
            # occluder still, also once it no longer reaches past the outline within the band (a hand
            # moved up over the mouth: its part below the chin is out of the band)
            occluder |= _overlapping(cand, prev, CARRIED_OVERLAP)
            mu, sd = ref.occluder_colour
            occluder |= (prev & (_channel_max(np.abs(cur - mu)) < 2.5 * sd) & (to_face > GROW_DIFF) & (band > 0)
                         & _touching(prev, occluder))
        if occluder.any():
            # grown into pixels that look like the occluder rather than like the face there: a
            # skin-coloured hand over a cheek is only a few levels off the face it hides. Only from
            # regions of one colour (a hand, a microphone): misaligned face detail is many colours.
            n, labels = cv2.connectedComponents(occluder.astype(np.uint8), connectivity=8)
            grown = occluder.copy()
            for i in range(1, n):
                occ = cur[labels == i]
                mu, sd = occ.mean(0), occ.std(0).max() + 4.0
                if sd > MAX_SPREAD:
                    continue
                to_occ = _channel_max(np.abs(cur - mu))
                grown |= (to_occ < 2.5 * sd) & (to_face > GROW_DIFF) & (to_face > to_occ)
            grown = cv2.morphologyEx((grown & (band > 0)).astype(np.uint8), cv2.MORPH_OPEN, disc)
            n, labels = cv2.connectedComponents(grown, connectivity=8)
            ids = np.unique(labels[occluder])
            occluder = np.isin(labels, ids[ids > 0])
            # holes in a hand (texture that happens to match) are hand too
            occluder = cv2.morphologyEx(occluder.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
        # what an obfuscated face may keep: only the occluder's pixels that are far from the face
        # there (the growth above also takes in skin that is only a few levels off the reference)
        strict = (occluder & (to_face > KEEP_DIFF)).astype(np.uint8)
        strict = cv2.morphologyEx(strict, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        strict = (cv2.morphologyEx(strict, cv2.MORPH_OPEN, disc) > 0) & occluder
        ref.occluder = None
        if occluder.any():
            occ = cur[occluder]
            ref.occluder_colour = (occ.mean(0), float(occ.std(0).max()) + 4.0)
            ref.occluder = cv2.warpAffine(occluder.astype(np.uint8), similarity_matrix(lm2, ref.points), (SIDE, SIDE),
                                          flags=cv2.INTER_NEAREST)
        return occluder, strict


def _light_offset(plain: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The per-channel shift a light change gives the whole face: the median difference of the
    face quarter that changed least (a hand over the mouth shifts the median of the whole)."""
    ys, xs = np.nonzero(face)
    cy, cx = ys.mean(), xs.mean()
    # the quarters (row < cy or not, column < cx or not) as slices: no gather of coordinates
    ry, rx = int(np.ceil(cy)), int(np.ceil(cx))
    best = None
    for rows, cols in ((slice(0, ry), slice(0, rx)), (slice(0, ry), slice(rx, None)),
                       (slice(ry, None), slice(0, rx)), (slice(ry, None), slice(rx, None))):
        sel = face[rows, cols]
        if np.count_nonzero(sel) < 16:
            continue
        m = _channel_median(plain[rows, cols][sel])
        if best is None or np.abs(m).sum() < np.abs(best).sum():
            best = m
    return best if best is not None else np.median(plain[face], axis=0)


def _channel_median(values: np.ndarray) -> np.ndarray:
    """np.median(values, axis=0) of (n, channels) values, the same numbers at ~half the cost (one
    partition of each channel's contiguous row)."""
    t = np.ascontiguousarray(values.T)
    k = t.shape[1] // 2
    if t.shape[1] % 2:
        return np.partition(t, k, axis=1)[:, k]
    return np.mean(np.partition(t, (k - 1, k), axis=1)[:, k - 1:k + 1], axis=1)


def _touching(prev: np.ndarray, now: np.ndarray) -> np.ndarray:
    """The regions of `prev` that overlap `now` (a kept region must still be attached to a found one)."""
    n, labels = cv2.connectedComponents(prev.astype(np.uint8), connectivity=8)
    ids = np.unique(labels[prev & now])
    return np.isin(labels, ids[ids > 0])


def _overlapping(cand: np.ndarray, prev: np.ndarray, share: float) -> np.ndarray:
    """The regions of `cand` with at least `share` of their area inside `prev`."""
    n, labels = cv2.connectedComponents(cand, connectivity=8)
    if n <= 1:
        return np.zeros(cand.shape, bool)
    area = np.bincount(labels.ravel(), minlength=n)
    inside = np.bincount(labels[prev & (cand > 0)], minlength=n)
    ids = np.flatnonzero(inside >= share * np.maximum(area, 1))
    return np.isin(labels, ids[ids > 0])


def _reaching(cand: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Candidate regions that reach past the face outline: occluders come in from outside."""
    n, labels = cv2.connectedComponents(cand, connectivity=8)
    if n <= 1:
        return np.zeros(cand.shape, bool)
    area = np.bincount(labels.ravel(), minlength=n)
    out_area = np.bincount(labels[(mask < 0.05) & (cand > 0)], minlength=n)
    ids = np.flatnonzero(out_area >= MIN_OUTSIDE * np.maximum(area, 1))
    return np.isin(labels, ids[ids > 0])
