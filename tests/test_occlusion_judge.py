"""The occlusion reference's judgement (stream/occlusion_judge.py) on build portraits: a clean face
is judged clean and almost nothing of it is shown to be an occluder; a microphone or a hand over
the mouth keeps the frame from being keyed, and what is shown to be the occluder is mostly it."""
import cv2
import numpy as np
import pytest

from footage import hand_shape, hand_texture, microphone_shape, microphone_texture
from ideud.eval.portraits import build_names, portraits_dir
from ideud.models import face_prior as fp
from ideud.models import facemesh as fm
from ideud.stream.detect import make_detector
from ideud.stream.occlusion import WORK
from ideud.stream.occlusion_judge import judge

PORTRAITS = slice(100, 112)  # build portraits (never the held-out ones)


def _work_crop(img: np.ndarray, lm: np.ndarray):
    """The face's crop at the occlusion stage's work size, its landmarks and a face mask there."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    pad = 0.35 * (hi - lo).max()
    x0, y0 = np.maximum((lo - pad).astype(int), 0)
    x1, y1 = (hi + pad).astype(int)
    k = WORK / max(y1 - y0, x1 - x0)
    crop = cv2.resize(img[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    lm2 = (lm[:, :2] - [x0, y0]) * k
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(fm.face_polygon(lm2)).astype(np.int32)], 255)
    return crop, lm2, cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 2), (x0, y0, k)


def _over_mouth(rgb: np.ndarray, lm: np.ndarray, kind: str):
    """The portrait with a hand (and its forearm, down out of the picture) or a microphone over the mouth."""
    size = int(0.9 * fp.face_width(lm))
    shape, tex = (hand_shape(size), hand_texture(size)) if kind == "hand" else \
        (microphone_shape(size), microphone_texture(size))
    x0, y0 = int(lm[13, 0] - size / 2), int(lm[13, 1] - 0.35 * size)
    img, truth = rgb.copy(), np.zeros(rgb.shape[:2], bool)
    ys, xs = np.nonzero(shape)
    ok = (ys + y0 >= 0) & (ys + y0 < img.shape[0]) & (xs + x0 >= 0) & (xs + x0 < img.shape[1])
    img[ys[ok] + y0, xs[ok] + x0] = tex[ys[ok], xs[ok]]
    truth[ys[ok] + y0, xs[ok] + x0] = True
    if kind == "hand":  # each column of the forearm goes on as the palm's row where it starts
        top, left, right = y0 + int(0.7 * size), x0 + int(0.3 * size), x0 + int(0.7 * size)
        cols = np.arange(max(0, left), min(img.shape[1], right))
        if top < img.shape[0] and len(cols):
            img[max(0, top):, cols] = tex[int(0.7 * size), cols - x0][None]
            truth[max(0, top):, cols] = True
    return img, truth


@pytest.fixture(scope="module")
def faces():
    det, mesh = make_detector("centerface"), fm.FaceMesh()
    out = []
    try:
        for name in build_names(portraits_dir())[PORTRAITS]:
            bgr = cv2.imread(str(portraits_dir() / name), cv2.IMREAD_COLOR)
            found = det.detect(np.ascontiguousarray(bgr[:, :, ::-1])) if bgr is not None else []
            if not found:
                continue
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            f = max(found, key=lambda f: f.size)
            roi = fm.roi_from_keypoints(f.box, f.keypoints[0], f.keypoints[1])
            lm = mesh(rgb, roi)
            if lm is None:
                continue
            covered = {}
            for kind in ("hand", "microphone"):
                img, truth = _over_mouth(rgb, lm, kind)
                lm_o = mesh(img, roi)
                if lm_o is not None:
                    covered[kind] = (img, lm_o, truth)
            out.append((rgb, lm, covered))
    finally:
        mesh.close()
    assert len(out) >= 10
    return out


def test_a_clean_face_is_judged_clean_and_nearly_nothing_of_it_is_cut(faces):
    clean, flagged = [], []
    for rgb, lm, _ in faces:
        crop, lm2, mask, _ = _work_crop(rgb, lm)
        verdict = judge(crop, lm2, mask)
        face = mask > 0.5
        clean.append(verdict.clean)
        flagged.append((verdict.occluder & face).sum() / face.sum())
    print(f"clean faces judged clean {np.mean(clean):.0%}, share of the face shown as occluder max {max(flagged):.3f}")
    assert np.mean(clean) >= 0.6  # one read as not clean goes without a reference: rendered whole (the safe side)
    assert max(flagged) < 0.05  # what is left original on a face with nothing in front of it


@pytest.mark.parametrize("kind", ["microphone", "hand"])
def test_an_occluder_over_the_mouth_is_not_keyed_and_what_is_cut_is_mostly_it(faces, kind):
    judged, precision = [], []
    for _, _, covered in faces:
        if kind not in covered:
            continue
        img, lm, truth = covered[kind]
        crop, lm2, mask, (x0, y0, k) = _work_crop(img, lm)
        verdict = judge(crop, lm2, mask)
        judged.append(not verdict.clean)
        h, w = crop.shape[:2]
        window = truth[y0:y0 + int(round(h / k)), x0:x0 + int(round(w / k))].astype(np.uint8)
        truth_here = cv2.resize(window, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        shown = verdict.occluder & (mask > 0.5)
        if shown.any():
            precision.append((shown & truth_here).sum() / shown.sum())
    print(f"{kind}: judged not clean {np.mean(judged):.0%}, delineated {len(precision)}/{len(judged)}, "
          f"precision min {min(precision, default=1):.2f}")
    assert len(judged) >= 10 and np.mean(judged) >= 0.8
    assert precision, "never delineated"
    assert min(precision) >= 0.7  # what is shown to be the occluder (left original) is mostly it
