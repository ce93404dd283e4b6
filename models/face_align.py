"""5-point face alignment to the FFHQ 512 template and paste-back.

The restoration GAN expects faces aligned like FFHQ: a similarity transform
(rotation, uniform scale, translation) maps the eyes, nose tip and mouth
corners onto fixed template positions. The inverse transform travels with the
aligned face (`AlignedFace`) so that the restored face can be put back.

Point order everywhere: image-left eye, image-right eye, nose tip, image-left
mouth corner, image-right mouth corner (for an unmirrored frontal face the
image-left eye is the subject's right eye).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ideud.models.geometry import similarity_matrix

# FFHQ 5-point template for 512x512 crops (the positions GFPGAN/facexlib align to).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# MediaPipe FaceMesh (468) topology. "Right"/"left" are the subject's, as in
# mediapipe.solutions.face_mesh_connections: the subject's right eye is on the
# image left.
MP_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
MP_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
# Vertex 4 is the pronasale (the most forward mesh point, smallest z on a
# frontal face); vertex 1 sits just below it, towards the columella. The
# 5-point detectors FFHQ was aligned with mark the tip, so 4 is used.
MP_NOSE_TIP = 4
MP_MOUTH_RIGHT = 61  # subject's right corner (image left)
MP_MOUTH_LEFT = 291


def five_points_from_facemesh(landmarks: np.ndarray) -> np.ndarray:
    """(468, 2|3) FaceMesh landmarks in pixels -> (5, 2) points in template order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"expected (468, 2) or (468, 3) landmarks, got {lm.shape}")
    lm = lm[:, :2]
    return np.stack(
        [
            lm[list(MP_RIGHT_EYE)].mean(axis=0),
            lm[list(MP_LEFT_EYE)].mean(axis=0),
            lm[MP_NOSE_TIP],
            lm[MP_MOUTH_RIGHT],
            lm[MP_MOUTH_LEFT],
        ]
    )


def facemesh_from_five_points(points5: np.ndarray) -> np.ndarray:
    """(468, 2) landmarks whose eye contours, nose tip and mouth corners give `points5`.

    The inverse of `five_points_from_facemesh` for synthetic faces (tests,
    benchmarks); the other vertices sit at the points' centre.
    """
    p = np.asarray(points5, dtype=np.float64)
    lm = np.tile(p.mean(axis=0), (468, 1))
    lm[list(MP_RIGHT_EYE)] = p[0]
    lm[list(MP_LEFT_EYE)] = p[1]
    lm[MP_NOSE_TIP] = p[2]
    lm[MP_MOUTH_RIGHT] = p[3]
    lm[MP_MOUTH_LEFT] = p[4]
    return lm


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity taking `src` points onto `dst`; 2x3 matrix.

    Closed form instead of cv2.estimateAffinePartial2D: deterministic, and with
    5 points there is nothing for a robust estimator to reject.
    """
    return similarity_matrix(src, dst)


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


@dataclass
class AlignedFace:
    """An aligned face and what is needed to put it back."""

    image: np.ndarray  # (size, size, 3) aligned face
    affine: np.ndarray  # 2x3: source pixels -> aligned pixels
    inverse: np.ndarray  # 2x3: aligned pixels -> source pixels
    source_size: tuple  # (height, width) of the image it came from


def align_face(image: np.ndarray, points5: np.ndarray, size: int = 512, border_mode: int = cv2.BORDER_REFLECT_101) -> AlignedFace:
    """Warp `image` so that `points5` land on the FFHQ template scaled to `size`."""
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    m = similarity_transform(points5, template)
    # Reflecting the border gives the GAN plausible context instead of black
    # wedges when the face is near the crop edge.
    aligned = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border_mode)
    return AlignedFace(aligned, m, invert_affine(m), tuple(image.shape[:2]))


def paste_back(face: AlignedFace, restored: np.ndarray, background: np.ndarray, feather: float = 0.02) -> np.ndarray:
    """Put a restored aligned face back into `background` (same size as the source image).

    Pixels the aligned square does not cover keep `background`. The edge of
    the square is feathered over `feather` x its size so there is no seam.
    """
    h, w = face.source_size
    if background.shape[:2] != (h, w):
        raise ValueError(f"background is {background.shape[:2]}, aligned face came from {(h, w)}")
    size = restored.shape[0]
    back = cv2.warpAffine(restored, face.inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = coverage_mask(face.inverse, size, (h, w), feather)
    if background.dtype == np.uint8 and back.dtype == np.uint8:
        # one pass in OpenCV: 4x faster than the float arithmetic below (a GPU stage is CPU-bound here)
        return cv2.blendLinear(back, background, weight, 1.0 - weight)
    out = background.astype(np.float32) + weight[..., None] * (back.astype(np.float32) - background.astype(np.float32))
    if np.issubdtype(background.dtype, np.integer):
        info = np.iinfo(background.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(background.dtype)


@functools.lru_cache(maxsize=8)
def _feathered_square(size: int, margin: int) -> np.ndarray:
    inner = np.zeros((size, size), np.float32)
    inner[margin:-margin, margin:-margin] = 1.0
    if margin > 1:
        inner = cv2.GaussianBlur(inner, (0, 0), margin / 2.0)
    inner.flags.writeable = False  # shared by every call
    return inner


def coverage_mask(inverse: np.ndarray, size: int, out_hw: tuple, feather: float = 0.02) -> np.ndarray:
    """Float mask (out_hw) of where the aligned `size` square lands, with a soft edge."""
    h, w = out_hw
    margin = max(1, int(round(feather * size)))
    return cv2.warpAffine(_feathered_square(size, margin), inverse, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
