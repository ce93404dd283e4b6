"""The measuring instrument: privacy and utility metrics of a de-identified output against its original
(``ideud-eval``).

Independent of the pipeline it measures: nothing here imports `ideud.stream` (only `ideud.models`).
One job per module: `media` (reading a pair), `metrics` (PSNR/SSIM, face region, pose, expression,
sharpness), `evaluator` (faces, tracks, the report), `report` (JSON, summary lines), `scale_sweep` (against
the scale, with a plot), `sheet` (the before/after contact sheet), `portraits` (the shared portrait split).
The names below are importable from `ideud.eval` directly (loaded on first use).

Compares an ORIGINAL with its DE-IDENTIFIED version (two videos of the same
size and frame count, or two images), frame by frame.  Faces are found in
the original with dlib (HOG, or the MMOD CNN) — deliberately a detector the
pipeline does not use — and linked into tracks (box IoU >= 0.3, or a box of
similar size whose centre moved less than its size, Hungarian assignment; a
track survives 2 evaluated frames without its face).  Every number below is
measured at the original's face boxes; the landmarks are fitted again on the
output inside the same box.

Privacy
  DIS          L2 distance between dlib's 128-d embeddings of the original
               face and the output face at the same place (dlib calls two
               faces the same person below 0.6).
  leak rate    share of face-frames with DIS < ``leak_threshold`` (0.6).
  cross-frame  output face of track A at frame t vs the ORIGINAL faces of
               track A at the other frames (at most ``cross_sample`` of
               them): the minimum distance, per face-frame; its leak rate is
               the share of face-frames whose minimum is < 0.6.
  track-mean   distance between the mean output and the mean original
               embedding of a track (an attacker who averages frames).

Utility
  PSNR, SSIM   whole frame, and outside the face regions (all faces of the
               frame; frames without faces count whole).  PSNR over the
               RGB values, capped at 100 dB (= identical).  SSIM of Wang et
               al. 2004 on luma (BT.601 Y), 11x11 Gaussian window sigma 1.5,
               K1 = 0.01, K2 = 0.03, 5-pixel border left out (matches
               skimage's structural_similarity(gaussian_weights=True,
               use_sample_covariance=False, data_range=255)).  Per frame,
               then averaged over the evaluated frames.
  face region  per face: convex hull of the 68 landmarks of the original
               AND of the output, each with a forehead added (the 10 brow
               points moved up by ``forehead`` (0.4) x the brow-to-chin
               vector), dilated by ``dilate`` (0.1) x the face width
               (landmark 0 to 16).
  pose error   MediaPipe FaceMesh (468 3D points) on the same crop around
               the original's box in both frames; the rotation between the
               two point sets (least squares, Kabsch, scale allowed) in
               degrees, and per axis |pitch|, |yaw|, |roll| of that rotation.
               Needs no generic head model, so a new face with other
               proportions moves it little.  Secondary, independent of the
               pipeline's landmarker: ``pose_error_pnp_deg``, cv2.solvePnP
               (SQPnP) of 12 of dlib's 68 points on a generic 3D face, focal
               = frame width, angle of R_orig^T R_out — its pitch absorbs
               face proportions (see POSE_MODEL), read it with care.
  expression   mouth aperture (inner-lip gap / inner mouth width) and eye
               aperture (EAR: lid gaps / eye width, both eyes): mean
               absolute difference original vs output.
  sharpness    variance of the Laplacian of luma inside the original's
               landmark hull (eroded by 5 % of the face width), output /
               original; geometric mean over face-frames.
  detection    share of face-frames where the same dlib detector still finds
               a face in the output (IoU >= 0.4 with the original box).

Consistency
  intra-track  mean (and max) pairwise distance of the output embeddings of
               a track (the new identity should stay put: small; a max above
               0.6 means two frames of one track look like two people).
  inter-track  distance between the tracks' mean output embeddings (people
               should stay apart: large).  The same two numbers on the
               original embeddings are given as the reference.

Nothing derived from the real identity (embeddings, landmarks, crops) goes
into the report: only distances, angles, ratios and counts.  The contact
sheet (``sheet=``) is an explicit before/after picture for the person
running the evaluation and does show original faces.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "media": ("EvalInputError", "IMAGE_SUFFIXES", "MediaInfo", "iter_frames", "iter_pair", "open_pair", "probe"),
    "metrics": ("PSNR_CAP", "MeshPose", "euler_deg", "expression", "face_region_mask", "face_width",
                "forehead_points", "head_pose", "laplacian_variance", "luma", "psnr", "relative_rotation",
                "rotation_angle_deg", "ssim", "ssim_map", "ssim_mean"),
    "evaluator": ("EvalOptions", "Evaluator", "evaluate"),
    "report": ("summary_lines", "write_json"),
    "scale_sweep": ("SWEEP_COLUMNS", "plot_sweep", "sweep"),
    "sheet": ("write_contact_sheet",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """`from ideud.eval import evaluate` without importing cv2/dlib for `ideud.eval.portraits` users."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
