"""Paste-back: read a face crop as RGB, write it back into the YUV planes.

The frame stays in the decoder's planar YUV; only the face crop is turned
into RGB for processing and blended back through the feathered mask, plane by
plane. Where the mask is 0 the planes are not written at all, so every pixel
outside the face masks is bit-identical to the decoded input.

Also here: obfuscation of a box (the fail-closed fallback).
"""
from __future__ import annotations

import functools
from typing import Optional

import cv2
import numpy as np

from ideud.models import facemesh as fm
from ideud.stream.types import Crop, Frame

# (Kr, Kb) of the YUV matrices
_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


def _subsampling(frame: Frame) -> tuple[int, int]:
    y, u = frame.planes[0], frame.planes[1]
    return (2 if u.shape[1] < y.shape[1] else 1), (2 if u.shape[0] < y.shape[0] else 1)


def _chroma_box(frame: Frame, crop: Crop) -> tuple[int, int, int, int, int, int]:
    sx, sy = _subsampling(frame)
    return crop.x0 // sx, crop.y0 // sy, -(-crop.x1 // sx), -(-crop.y1 // sy), sx, sy


@functools.lru_cache(maxsize=8)
def _rgb_from_yuv_matrix(matrix: str, full_range: bool) -> np.ndarray:
    """3x4 affine (for cv2.transform) taking (Y, U, V) to (R, G, B); read-only."""
    kr, kb = _MATRICES.get(matrix, _MATRICES["bt601"])
    kg = 1 - kr - kb
    m = np.array([[1, 0, 2 * (1 - kr)],
                  [1, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
                  [1, 2 * (1 - kb), 0]], np.float64)
    if not full_range:
        m = m @ np.diag([255 / 219, 255 / 224, 255 / 224])
        offset = np.array([16, 128, 128], np.float64)
    else:
        offset = np.array([0, 128, 128], np.float64)
    out = np.hstack([m, (-m @ offset)[:, None]]).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _yuv_from_rgb_matrix(matrix: str, full_range: bool) -> np.ndarray:
    """The inverse of `_rgb_from_yuv_matrix`, 3x4 float32; read-only."""
    fwd = _rgb_from_yuv_matrix(matrix, full_range).astype(np.float64)
    inv = np.linalg.inv(np.vstack([fwd, [0, 0, 0, 1]]))[:3].astype(np.float32)
    inv.flags.writeable = False
    return inv


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str, full_range: bool) -> np.ndarray:
    rgb = cv2.transform(cv2.merge([y, u, v]).astype(np.float32), _rgb_from_yuv_matrix(matrix, full_range))
    rgb += 0.5  # in place: the crop's float copies are the cost here
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8)


def rgb_to_yuv(rgb: np.ndarray, matrix: str, full_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float Y, U, V planes (not rounded: the blend rounds once)."""
    return cv2.split(cv2.transform(rgb.astype(np.float32), _yuv_from_rgb_matrix(matrix, full_range)))


def crop_rgb(frame: Frame, crop: Crop) -> np.ndarray:
    """The crop of the frame as RGB uint8 (chroma upsampled bilinearly)."""
    if frame.is_rgb:
        return np.dstack([p[crop.y0:crop.y1, crop.x0:crop.x1] for p in frame.planes])
    y = frame.planes[0][crop.y0:crop.y1, crop.x0:crop.x1]
    cx0, cy0, cx1, cy1, sx, sy = _chroma_box(frame, crop)
    h, w = y.shape
    u = frame.planes[1][cy0:cy1, cx0:cx1]
    v = frame.planes[2][cy0:cy1, cx0:cx1]
    if u.shape != y.shape:
        u = cv2.resize(u, (u.shape[1] * sx, u.shape[0] * sy), interpolation=cv2.INTER_LINEAR)[:h, :w]
        v = cv2.resize(v, (v.shape[1] * sx, v.shape[0] * sy), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return yuv_to_rgb(y, u, v, frame.matrix, frame.full_range)


def affine_rgb(frame: Frame, affine: np.ndarray, size: int) -> np.ndarray:
    """A size x size RGB window cut from the frame through a 2x3 affine (black past the edges), for analysis."""
    if frame.is_rgb:
        planes = [cv2.warpAffine(p, affine, (size, size), flags=cv2.INTER_LINEAR) for p in frame.planes]
        return cv2.merge(planes)
    sx, sy = _subsampling(frame)
    chroma = affine.astype(np.float64) @ np.diag([sx, sy, 1.0])  # chroma pixel -> luma pixel first
    y = cv2.warpAffine(frame.planes[0], affine, (size, size), flags=cv2.INTER_LINEAR,
                       borderValue=0 if frame.full_range else 16)
    u, v = (cv2.warpAffine(p, chroma.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR, borderValue=128)
            for p in frame.planes[1:])
    # for analysis only (the face mesh): OpenCV's integer full-range BT.601 conversion is 5x
    # cheaper, and a slight colour shift does not move landmarks
    return cv2.cvtColor(cv2.merge([y, v, u]), cv2.COLOR_YCrCb2RGB)


def frame_rgb(frame: Frame) -> np.ndarray:
    return crop_rgb(frame, Crop(0, 0, frame.width, frame.height))


def match_colour(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel mean/std of `image` inside the mask matched to `reference`'s."""
    step = max(1, min(mask.shape) // 96)  # statistics from a sparse grid are as good and 10x cheaper
    sel = (mask[::step, ::step] > 0.5).astype(np.uint8)
    if cv2.countNonZero(sel) < 16:
        return image
    # OpenCV's masked statistics: ~10x faster than numpy's on the selected pixels
    mean_a, std_a = cv2.meanStdDev(np.ascontiguousarray(image[::step, ::step]), mask=sel)
    mean_b, std_b = cv2.meanStdDev(np.ascontiguousarray(reference[::step, ::step]), mask=sel)
    gain = np.clip(std_b[:, 0] / np.maximum(std_a[:, 0], 1e-3), 0.7, 1.4)
    shift = mean_b[:, 0] - mean_a[:, 0] * gain
    lut = np.clip(np.arange(256, dtype=np.float64)[:, None] * gain + shift + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image), lut.reshape(256, 1, 3))  # a 3-channel table: each channel its own


def _blend_plane(plane: np.ndarray, new: np.ndarray, mask: np.ndarray) -> None:
    """plane += mask * (new - plane), rounded; pixels where mask == 0 are not written."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = mask[r0:r1, c0:c1]
    old = plane[r0:r1, c0:c1]
    mixed = old.astype(np.float32)
    mixed += m * (new[r0:r1, c0:c1] - mixed)
    out = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    np.copyto(old, out, where=m > 0)


def paste_rgb(frame: Frame, crop: Crop, rgb: np.ndarray, mask: np.ndarray) -> None:
    """Blend an RGB crop into the frame's planes through `mask` (in place)."""
    frame.touched.append(crop)
    if frame.is_rgb:
        for i, plane in enumerate(frame.planes):
            _blend_plane(plane[crop.y0:crop.y1, crop.x0:crop.x1], rgb[..., i].astype(np.float32), mask)
        return
    y, u, v = rgb_to_yuv(rgb, frame.matrix, frame.full_range)
    _blend_plane(frame.planes[0][crop.y0:crop.y1, crop.x0:crop.x1], y, mask)
    cx0, cy0, cx1, cy1, sx, sy = _chroma_box(frame, crop)
    if (sx, sy) != (1, 1):
        cw, ch = cx1 - cx0, cy1 - cy0
        pad = ((0, ch * sy - mask.shape[0]), (0, cw * sx - mask.shape[1]))
        m = cv2.resize(np.pad(mask, pad), (cw, ch), interpolation=cv2.INTER_AREA)
        u = cv2.resize(np.pad(u, pad, mode="edge"), (cw, ch), interpolation=cv2.INTER_AREA)
        v = cv2.resize(np.pad(v, pad, mode="edge"), (cw, ch), interpolation=cv2.INTER_AREA)
    else:
        m = mask
    _blend_plane(frame.planes[1][cy0:cy1, cx0:cx1], u, m)
    _blend_plane(frame.planes[2][cy0:cy1, cx0:cx1], v, m)


FALLBACKS = ("pixelate", "blur", "black")


def obfuscate(frame: Frame, box: np.ndarray, mode: str = "pixelate", grow: float = 0.25, strength: int = 0,
              keep: Optional[tuple[Crop, np.ndarray]] = None, occluder_edge: bool = True,
              edge_keep: Optional[tuple[Crop, np.ndarray]] = None) -> None:
    """Destroy the identity in a box (grown by `grow` each side), in place.

    `keep`: (crop, uint8 or float mask on it) of pixels in front of the face to leave as they are
    (a hand, a microphone: stream/obfuscate_keep.py): 255 (or 1.0) keeps a pixel, 0 fills it,
    between blends. The fill colour is taken from the pixels not kept at all, so neither the
    occluder's colour goes into the fill nor the face's into the occluder; next to the kept pixels
    the fill is the nearest kept pixel's colour (`_occluder_edge`; `occluder_edge=False`: not;
    `edge_keep`: only next to these of the kept pixels, the occluder, where `keep` holds more).

    pixelate: at strength 0 (what every face obfuscated for any reason gets, unchecked) the box
    becomes one block of its own mean colour: a mosaic of a single block. Finer mosaics leave
    recognizers something (tools/bench/bench_mosaic.py, 40 build portraits x 24..256 px, both
    recognizers, worst view): 3 blocks with fixed block noise were matched in 4 of 320 cases
    (EdgeFace at 24-48 px reads the head's colour layout; dlib at 24 px), shuffled 5 blocks in 5
    (dlib: block texture reads as some people's faces), low-contrast versions in 2-10; the one-
    block fill in none, and in none of 320 on 40 held-out portraits (the 3-block mosaic: 11,
    dlib, at every size). dlib's margin is thin (worst 0.605): a face-less patch sits ~0.6-0.74
    from anyone, whatever fills it. Strength 1 (the privacy guard's next step for a track a recognizer still
    matches): a box grown twice as much, filled with neutral grey (not even the skin tone left).
    """
    if mode == "pixelate" and strength >= 1:
        grow, strength = 2 * grow, min(strength, OBFUSCATION_LEVELS - 1)
    w, h = box[2] - box[0], box[3] - box[1]
    x0 = int(max(0, np.floor(box[0] - grow * w)))
    y0 = int(max(0, np.floor(box[1] - grow * h)))
    x1 = int(min(frame.width, np.ceil(box[2] + grow * w)))
    y1 = int(min(frame.height, np.ceil(box[3] + grow * h)))
    if x1 <= x0 or y1 <= y0:
        return
    crop = Crop(x0 - x0 % 2, y0 - y0 % 2, x1, y1)
    frame.touched.append(crop)
    cx0, cy0, cx1, cy1, sx, sy = _chroma_box(frame, crop)
    block = max(2.0, float(max(w, h)) / BLUR_BLOCKS)
    kept = _kept_planes(frame, crop, keep) if keep is not None else None
    if kept is not None:
        edge = None if edge_keep is None else _kept_planes(frame, crop, edge_keep)  # None: none of it here
        reach = max(1.0, OCCLUDER_REACH * float(max(w, h))) if occluder_edge and (edge_keep is None or edge) else 0.0
        _obfuscate_keeping(frame, crop, mode, strength, kept, (cx0, cy0, cx1, cy1, sx), block, reach, edge)
        return
    for i, (plane, box_p, blk) in enumerate([
        (frame.planes[0], (crop.y0, crop.y1, crop.x0, crop.x1), block),
        (frame.planes[1], (cy0, cy1, cx0, cx1), block / sx),
        (frame.planes[2], (cy0, cy1, cx0, cx1), block / sx),
    ]):
        r0, r1, c0, c1 = box_p
        region = plane[r0:r1, c0:c1]
        if region.size == 0:
            continue
        if mode == "black":
            region[:] = 0 if frame.is_rgb or (i == 0 and frame.full_range) else (16 if i == 0 else 128)
        elif mode == "blur":
            b = max(1, int(blk))
            k = max(3, b * 2 + 1)
            small = cv2.resize(region, (max(1, region.shape[1] // b), max(1, region.shape[0] // b)), interpolation=cv2.INTER_AREA)
            region[:] = cv2.GaussianBlur(cv2.resize(small, region.shape[::-1], interpolation=cv2.INTER_LINEAR), (k | 1, k | 1), 0)
        elif strength == 0:
            region[:] = int(region.mean() + 0.5)  # one block: the mean colour, plane by plane
        else:
            region[:] = 128  # neutral grey (luma mid-range; chroma: no colour)


def _kept_planes(frame: Frame, crop: Crop, keep: tuple[Crop, np.ndarray]) -> Optional[list[np.ndarray]]:
    """`keep` on the obfuscated region, float32 0..1, per plane (chroma: the share of its luma
    pixels kept, so a chroma sample is only kept whole where all of them are); None: nothing kept."""
    kc, k = keep
    k = k.astype(np.float32) / (255.0 if k.dtype == np.uint8 else 1.0)
    h, w = crop.shape
    luma = np.zeros((h, w), np.float32)
    x0, y0, x1, y1 = max(crop.x0, kc.x0), max(crop.y0, kc.y0), min(crop.x1, kc.x1), min(crop.y1, kc.y1)
    if x1 <= x0 or y1 <= y0:
        return None
    luma[y0 - crop.y0:y1 - crop.y0, x0 - crop.x0:x1 - crop.x0] = k[y0 - kc.y0:y1 - kc.y0, x0 - kc.x0:x1 - kc.x0]
    if not (luma > 0).any():
        return None
    sx, sy = _subsampling(frame)
    if frame.is_rgb or (sx, sy) == (1, 1):
        return [luma] * 3
    cx0, cy0, cx1, cy1, _, _ = _chroma_box(frame, crop)
    cw, ch = cx1 - cx0, cy1 - cy0
    padded = np.pad(luma, ((0, ch * sy - h), (0, cw * sx - w)))  # past the box: not kept
    chroma = cv2.resize(padded, (cw, ch), interpolation=cv2.INTER_AREA)
    return [luma, chroma, chroma]


def _kept_regions(frame: Frame, crop: Crop, kept: list, chroma_box: tuple):
    """(plane index, the plane's view of `crop`, its keep mask cut to it) for each plane the crop is not empty in."""
    cx0, cy0, cx1, cy1 = chroma_box[:4]
    for i, (plane, (r0, r1, c0, c1), k) in enumerate([
        (frame.planes[0], (crop.y0, crop.y1, crop.x0, crop.x1), kept[0]),
        (frame.planes[1], (cy0, cy1, cx0, cx1), kept[1]),
        (frame.planes[2], (cy0, cy1, cx0, cx1), kept[2]),
    ]):
        region = plane[r0:r1, c0:c1]
        if region.size:
            yield i, region, k[:region.shape[0], :region.shape[1]]


def _obfuscate_keeping(frame: Frame, crop: Crop, mode: str, strength: int, kept: list, chroma_box: tuple,
                       block: float, reach: float, edge_kept: Optional[list] = None) -> None:
    """`obfuscate` of the region `crop` with the pixels of `kept` (per plane, 0..1) left as they are,
    and the fill next to them (within `reach` luma pixels; next to those of `edge_kept` only, where
    given) in the colour of the nearest kept pixel."""
    sx = chroma_box[4]
    edges = {}  # `_occluder_edge`'s geometry per keep mask: the planes that share one (chroma; RGB) share it
    edge_src = kept if edge_kept is None else edge_kept
    edge_of = {i: k for i, _, k in _kept_regions(frame, crop, edge_src, chroma_box)}
    for i, region, k in _kept_regions(frame, crop, kept, chroma_box):
        free = k <= 0.0  # not the occluder nor its margin: what the fill colour is taken from
        mean = float(region[free].mean()) if free.sum() >= 4 else float(region.mean())
        if mode == "black":
            fill = np.full(region.shape, 0 if frame.is_rgb or (i == 0 and frame.full_range) else (16 if i == 0 else 128),
                           np.float32)
        elif mode == "blur":
            b = max(1, int(block if i == 0 else block / sx))
            src = np.where(free, region, np.uint8(int(mean + 0.5)))  # the occluder's colour does not bleed in
            small = cv2.resize(src, (max(1, region.shape[1] // b), max(1, region.shape[0] // b)),
                               interpolation=cv2.INTER_AREA)
            kk = max(3, b * 2 + 1) | 1
            fill = cv2.GaussianBlur(cv2.resize(small, region.shape[::-1], interpolation=cv2.INTER_LINEAR),
                                    (kk, kk), 0).astype(np.float32)
        else:
            fill = np.full(region.shape, float(int(mean + 0.5)) if strength == 0 else 128.0, np.float32)
        old = region.astype(np.float32)
        fill = _toward_occluder(fill, old, edges, (id(edge_src[i]), region.shape), edge_of[i],
                                reach if i == 0 else reach / sx)
        out = np.clip(fill + k * (old - fill) + 0.5, 0, 255).astype(np.uint8)
        np.copyto(region, out, where=k < 1.0)  # the occluder's own pixels are not written at all


def _occluder_edge(k: np.ndarray, reach: float) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Where the fill borders the kept occluder (`k` >= 0.5) and takes that occluder's colour:
    (the kept pixels, each pixel's nearest kept one as a label, the weight of its colour there:
    1 within `reach`, fading out over the next `reach`), or None. The occlusion stage's outline
    runs a pixel or three inside the occluder's (its rim is kept thin, as that margin is the
    person's skin), and a flat fill there was most of a kept hand's error
    (tools/bench/bench_footage.py multi_person: 92 % of it within 3 px of a kept pixel). Only kept
    pixels, which are shown as they are anyway, are copied outward: no face pixel is shown."""
    core = k >= 0.5
    if reach <= 0.0 or not core.any() or core.all():
        return None
    dist, labels = cv2.distanceTransformWithLabels((~core).astype(np.uint8), cv2.DIST_L2, 3,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    return core, labels, np.clip(2.0 - dist / max(reach, 1e-3), 0.0, 1.0)


def _toward_occluder(fill: np.ndarray, old: np.ndarray, edges: dict, key: tuple, k: np.ndarray,
                     reach: float) -> np.ndarray:
    """`fill` taking the colour of the nearest kept occluder pixel of `old` (`k` >= 0.5) within `reach`
    of it (`_occluder_edge`, its geometry kept in `edges` under `key`: the planes that share a keep mask,
    chroma or RGB, share it)."""
    if key not in edges:
        edges[key] = _occluder_edge(k, reach)
    if edges[key] is None:
        return fill
    core, labels, weight = edges[key]
    colour = np.zeros(int(labels.max()) + 1, np.float32)
    colour[labels[core]] = old[core]  # DIST_LABEL_PIXEL: each kept pixel its own label
    return fill + weight * (colour[labels] - fill)


def surroundings(crop: Crop, target: np.ndarray, width: int, height: int,
                 occluder: Optional[tuple[Crop, np.ndarray]] = None) -> tuple[Crop, np.ndarray]:
    """Where a face drawn without its surroundings (stream/guard_policy.py `surroundings_mode`) is
    filled: the box of its points (`target`, in `crop`) grown by SURROUNDINGS (hair and ears above
    and beside, the neck below), and in it the face oval below the hairline (the render's mask
    without its occluder cuts), feathered, as a keep factor: (box, keep). `occluder`: (crop, mask)
    of what the occlusion stage found in front of the face this frame (a hand reaching past the
    oval), kept too, as an obfuscated face keeps it."""
    box, keep, _ = _surroundings_held(crop, target, width, height, occluder)
    return box, keep


def _surroundings_held(crop: Crop, target: np.ndarray, width: int, height: int,
                       occluder: Optional[tuple[Crop, np.ndarray]]) -> tuple[Crop, np.ndarray, Optional[np.ndarray]]:
    """`surroundings`, and the occluder alone on its box (`occluder_on`: what the fill and the blur
    colour next to)."""
    pts = np.asarray(target, np.float64)[:, :2] + crop.offset
    lo, hi = pts.min(0), pts.max(0)
    (w, h), (left, top, right, bottom) = hi - lo, SURROUNDINGS
    x0, y0 = int(max(0, np.floor(lo[0] - left * w))), int(max(0, np.floor(lo[1] - top * h)))
    x1, y1 = int(min(width, np.ceil(hi[0] + right * w))), int(min(height, np.ceil(hi[1] + bottom * h)))
    box = Crop(x0 - x0 % 2, y0 - y0 % 2, max(x1, x0 - x0 % 2 + 2), max(y1, y0 - y0 % 2 + 2))
    face = fm.face_polygon_mask(box.shape, pts - box.offset).astype(np.float32)
    keep = cv2.GaussianBlur(face, (0, 0), max(1.0, 0.015 * float(max(w, h))))
    held = occluder_on(box, occluder)
    return box, keep if held is None else np.maximum(keep, held), held


def occluder_on(box: Crop, occluder: Optional[tuple[Crop, np.ndarray]]) -> Optional[np.ndarray]:
    """The occluder (crop, mask) as a float keep (0..1) on `box`, or None where it is not there."""
    if occluder is None:
        return None
    oc, om = occluder
    x0, y0, x1, y1 = max(box.x0, oc.x0), max(box.y0, oc.y0), min(box.x1, oc.x1), min(box.y1, oc.y1)
    if x1 <= x0 or y1 <= y0 or om.shape != oc.shape:
        return None
    out = np.zeros(box.shape, np.float32)
    out[y0 - box.y0:y1 - box.y0, x0 - box.x0:x1 - box.x0] = om[y0 - oc.y0:y1 - oc.y0, x0 - oc.x0:x1 - oc.x0] / (
        255.0 if om.dtype == np.uint8 else 1.0)
    return out


def fill_surroundings(frame: Frame, crop: Crop, target: np.ndarray,
                      occluder: Optional[tuple[Crop, np.ndarray]] = None) -> None:
    """The surroundings of a face (`surroundings`) filled flat in their own mean colour, in place, as
    `obfuscate` fills a box (strength 0); the face oval (and `occluder`) kept for the new face to be
    pasted over."""
    box, keep, held = _surroundings_held(crop, target, frame.width, frame.height, occluder)
    # next to a kept occluder the fill takes its colour, as an obfuscated face's does (the stage's outline
    # ends at the face oval and runs inside the hand's own: a hand's rim below the jaw was filled flat,
    # 32 dB; tests/test_surroundings.py), never next to the face oval, whose pixels the new face covers
    obfuscate(frame, np.array([box.x0, box.y0, box.x1, box.y1], float), "pixelate", grow=0.0, strength=0,
              keep=(box, keep), occluder_edge=held is not None, edge_keep=None if held is None else (box, held))


def blur_surroundings(frame: Frame, crop: Crop, target: np.ndarray,
                      occluder: Optional[tuple[Crop, np.ndarray]] = None) -> None:
    """The surroundings of a face (`surroundings`) blurred, in place: a Gaussian of SURROUNDINGS_BLUR
    x the face's size over the pixels outside the face oval (and `occluder`) only, so neither the
    face nor the occluder bleeds into them; it fades in from the box's edge over SURROUNDINGS_FADE
    x that size (no seam where it ends). Hair, ears, jaw line and background keep their colours and
    lose their shapes: the milder way the guard tries before `fill_surroundings`. Next to a kept
    occluder they take its colour, as the fill does (the stage's outline runs inside the hand's own:
    its rim below the jaw was blurred into the background, 34 dB on bench_footage.py's multi_person)."""
    box, keep, held = _surroundings_held(crop, target, frame.width, frame.height, occluder)
    pts = np.asarray(target, np.float64)[:, :2]
    size = float(np.ptp(pts, 0).max())
    kept = _kept_planes(frame, box, (box, keep)) or [np.zeros(box.shape, np.float32)] * 3
    fade = _box_fade(box, frame.width, frame.height, max(1.0, SURROUNDINGS_FADE * size))
    frame.touched.append(box)
    chroma_box = _chroma_box(frame, box)
    sx = chroma_box[4]
    held = None if held is None else _kept_planes(frame, box, (box, held))
    edge_of = {} if held is None else {i: k for i, _, k in _kept_regions(frame, box, held, chroma_box)}
    reach, edges = max(1.0, OCCLUDER_REACH * float(max(box.shape))), {}  # as the fill's (`obfuscate` of the box)
    for i, region, k in _kept_regions(frame, box, kept, chroma_box):
        f = fade if i == 0 or frame.is_rgb else cv2.resize(fade, region.shape[::-1], interpolation=cv2.INTER_AREA)
        free = (1.0 - k).astype(np.float32)
        src = np.clip(1.0 - 2.0 * k, 0.0, 1.0).astype(np.float32)  # no pixel of the face (k >= 0.5 inside its edge)
        sigma = max(0.5, SURROUNDINGS_BLUR * size / (1 if i == 0 or frame.is_rgb else sx))
        num, den = _low_pass(region.astype(np.float32) * src, sigma), _low_pass(src, sigma)
        mean = float((region * src).sum() / max(float(src.sum()), 1e-6))
        blurred = np.where(den > 1e-3, num / np.maximum(den, 1e-3), mean)
        w = free * f[:region.shape[0], :region.shape[1]]
        old = region.astype(np.float32)
        if i in edge_of:
            blurred = _toward_occluder(blurred, old, edges, (id(held[i]), region.shape), edge_of[i],
                                       reach if i == 0 else reach / sx)
        out = np.clip(old + w * (blurred - old) + 0.5, 0, 255).astype(np.uint8)
        np.copyto(region, out, where=w > 0.0)


def _low_pass(x: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian of `sigma` px, run at a scale where it is ~4 px (at full size the 720p speed clip's
    guard took 30.9 % of the run, 27.3 % so; one run each): what it leaves is smooth enough for the
    linear resize back."""
    f = max(1.0, sigma / 4.0)
    if f < 1.5:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    h, w = x.shape
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _box_fade(box: Crop, width: int, height: int, ramp: float) -> np.ndarray:
    """1 inside the box, easing to 0 at its sides over `ramp` px; a side on the frame's edge does not fade."""
    h, w = box.shape
    x = np.arange(w, dtype=np.float32) + 0.5
    y = np.arange(h, dtype=np.float32) + 0.5
    fx = np.minimum(np.clip(x / ramp, 0, 1) if box.x0 > 0 else 1.0, np.clip((w - x) / ramp, 0, 1) if box.x1 < width else 1.0)
    fy = np.minimum(np.clip(y / ramp, 0, 1) if box.y0 > 0 else 1.0, np.clip((h - y) / ramp, 0, 1) if box.y1 < height else 1.0)
    f = np.outer(np.broadcast_to(fy, (h,)), np.broadcast_to(fx, (w,))).astype(np.float32)
    return f * f * (3.0 - 2.0 * f)


def redraw_surroundings(frame: Frame, crop: Crop, target: np.ndarray, mode: Optional[str],
                        occluder: Optional[tuple[Crop, np.ndarray]] = None) -> None:
    """A face's surroundings as a guard step draws them (guard_policy.surroundings_mode): "blur", "fill", or None (kept)."""
    if mode == "blur":
        blur_surroundings(frame, crop, target, occluder)
    elif mode == "fill":
        fill_surroundings(frame, crop, target, occluder)


SURROUNDINGS = (0.3, 0.5, 0.3, 0.3)  # a filled face's box: its points' box grown left, up, right, down
SURROUNDINGS_BLUR = 0.2  # the blur's sigma, share of the face's size (tools/bench/bench_surroundings.py)
SURROUNDINGS_FADE = 0.1  # ... fading in from the box's edge over this share (0.25: softer, 2 more obfuscated of 100 build portraits)
OCCLUDER_REACH = 0.03  # share of the face size a kept occluder's colour reaches into the fill
OBFUSCATION_LEVELS = 2  # pixelate strengths: 0 one block of the box's mean colour, 1 grey over a larger box
BLUR_BLOCKS = 3  # `blur`: the face is first reduced to this many blocks across
