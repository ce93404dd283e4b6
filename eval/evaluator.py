"""The Evaluator: faces of the original found and linked into tracks, every metric accumulated per frame,
summarised in `report()`; `evaluate()` runs it over a pair of files. Definitions: `ideud.eval`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np

from ideud.eval.media import iter_pair, open_pair
from ideud.eval.metrics import (MeshPose, expression, face_region_mask, face_width, head_pose, hull_mask,
                                laplacian_variance, luma, psnr, relative_rotation, rotation_angle_deg, ssim_map,
                                ssim_mean)
from ideud.eval.numbers import (cdist, evenly_spaced, mean_or_none, mean_pairwise_distance, median_or_none,
                                pairwise_distances, rounded)
from ideud.models.geometry import box_iou, match
from ideud.models.recognizer import FaceRecognizer, THRESHOLD, default_recognizer


@dataclass
class EvalOptions:
    max_frames: Optional[int] = None
    every: int = 1  # evaluate every K-th frame
    cnn: bool = False  # MMOD CNN detector instead of HOG (slow on CPU)
    upsample: int = 1  # dlib detector upsampling (1: faces down to ~40 px)
    min_score: float = 0.3  # detector score kept (HOG margin / MMOD confidence)
    leak_threshold: float = THRESHOLD
    link_iou: float = 0.3  # track linking: IoU ...
    link_dist: float = 1.0  # ... or centre distance <= link_dist x box size (similar size)
    max_gap: int = 2  # evaluated frames a track may miss and go on
    detect_iou: float = 0.4  # "still detected" in the output
    forehead: float = 0.4
    dilate: float = 0.1
    cross_sample: int = 200  # original frames per track for the cross-frame check
    sheet_cols: int = 4  # frames per track on the contact sheet
    sheet_rows: int = 24  # tracks on the contact sheet
    per_face: bool = False  # list every face-frame (distances only) in the report
    mesh_pose: bool = True  # FaceMesh 3D pose error (if mediapipe imports)


_NO_LINK = 1e6


@dataclass
class _Obs:
    frame: int
    box: tuple
    score: float
    e_o: np.ndarray  # in memory only, never reported
    e_d: np.ndarray
    dis: float
    pose_err: Optional[float]  # FaceMesh 3D
    pyr_err: Optional[np.ndarray]  # |d pitch|, |d yaw|, |d roll| (FaceMesh 3D)
    pnp_err: Optional[float]  # dlib 68 + generic model
    mouth_err: float
    eyes_err: float
    sharp: Optional[float]  # output / original
    detected: bool
    track: int = -1


@dataclass
class _Track:
    id: int
    last_box: tuple
    last_seen: int
    obs: list = field(default_factory=list)
    sheet: list = field(default_factory=list)  # (frame, dis, crop_o, crop_d)
    sheet_stride: int = 1


def _crop(rgb: np.ndarray, box, size: int = 96, grow: float = 1.4) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = grow * max(box[2] - box[0], box[3] - box[1], 1.0)
    s = size / side
    m = np.float32([[s, 0, size / 2.0 - s * cx], [0, s, size / 2.0 - s * cy]])
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


class Evaluator:
    """Accumulates metrics frame by frame; ``report()`` at the end.

    ``cache`` (a dict) keeps the per-frame analysis of the original
    (boxes, landmarks, embeddings — in memory only) so that several outputs
    of the same original (a sweep) pay for it once.
    """

    def __init__(self, options: Optional[EvalOptions] = None,
                 recognizer: Optional[FaceRecognizer] = None,
                 keep_crops: bool = False, cache: Optional[dict] = None):
        self.opt = options or EvalOptions()
        self.rec = recognizer or default_recognizer()
        self.keep_crops = keep_crops
        self.cache = cache
        self.tracks: list[_Track] = []
        self.frames_seen = 0
        self.frame_metrics: list[dict] = []
        self.size = None
        self.mesh = MeshPose.create() if self.opt.mesh_pose else None
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- per frame
    def _analyse_original(self, index: int, rgb: np.ndarray) -> list:
        key = (index, self.opt.cnn, self.opt.upsample, self.opt.min_score, self.mesh is not None)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        rec = self.rec
        faces = []
        for box, score in rec.detect_scored(rgb, self.opt.upsample, self.opt.cnn, self.opt.min_score):
            p68 = rec.shape68(rgb, box)
            p5 = rec.shape5(rgb, box)
            faces.append({
                "box": box, "score": score, "p68": p68,
                "e": rec.embed(rgb, box=box, points5=p5),
                "pose": head_pose(p68, rgb.shape[:2]),
                "mesh": self.mesh.points(rgb, box) if self.mesh is not None else None,
                "expr": expression(p68),
            })
        if self.cache is not None:
            self.cache[key] = faces
        return faces

    def add_frame(self, index: int, rgb_o: np.ndarray, rgb_d: np.ndarray) -> None:
        opt, rec = self.opt, self.rec
        hw = rgb_o.shape[:2]
        self.size = (hw[1], hw[0])
        faces = self._analyse_original(index, rgb_o)
        out_boxes = self._detect_near(rgb_d, [f["box"] for f in faces])
        gray_o, gray_d = luma(rgb_o), luma(rgb_d)
        region = np.zeros(hw, bool)
        obs = []
        for f in faces:
            box, p68 = f["box"], f["p68"]
            d68 = rec.shape68(rgb_d, box)
            e_d = rec.embed(rgb_d, box=box, points5=rec.shape5(rgb_d, box))
            dis = rec.distance(f["e"], e_d)
            r_d = head_pose(d68, hw)
            pnp_err = rotation_angle_deg(f["pose"], r_d) if (f["pose"] is not None and r_d is not None) else None
            pose_err = pyr_err = None
            if f["mesh"] is not None:
                q = self.mesh.points(rgb_d, box)
                if q is not None:
                    r = relative_rotation(f["mesh"], q)
                    pose_err = rotation_angle_deg(np.eye(3), r)
                    pyr_err = np.abs(np.array(cv2.RQDecomp3x3(r)[0], np.float64))
            ex_d = expression(d68)
            core = hull_mask(hw, [p68], -0.05 * face_width(p68))
            v_o, v_d = laplacian_variance(gray_o, core), laplacian_variance(gray_d, core)
            sharp = (v_d / v_o) if (v_o is not None and v_d is not None and v_o > 1e-6) else None
            region |= face_region_mask(hw, p68, d68, opt.dilate, opt.forehead)
            detected = any(box_iou(box, b) >= opt.detect_iou for b in out_boxes)
            o = _Obs(index, tuple(float(v) for v in box), f["score"], f["e"], e_d, dis, pose_err, pyr_err, pnp_err,
                     abs(f["expr"]["mouth"] - ex_d["mouth"]), abs(f["expr"]["eyes"] - ex_d["eyes"]),
                     sharp, detected)
            obs.append(o)
        self._link(obs, rgb_o, rgb_d)
        outside = ~region
        smap = ssim_map(gray_o, gray_d)
        self.frame_metrics.append({
            "frame": index,
            "faces": len(faces),
            "psnr": psnr(rgb_o, rgb_d),
            "ssim": ssim_mean(smap),
            "psnr_outside": psnr(rgb_o, rgb_d, outside),
            "ssim_outside": ssim_mean(smap, outside),
            "face_area": float(region.mean()),
        })
        self.frames_seen += 1

    def _detect_near(self, rgb: np.ndarray, boxes: list) -> list:
        """Detections in the output, searched in a window (3x the box) around each original box,
        upsampled so that the face is >= 80 px (dlib's HOG/MMOD window), within ``upsample``+1."""
        found = []
        h, w = rgb.shape[:2]
        for b in boxes:
            bw, bh = b[2] - b[0], b[3] - b[1]
            x0, y0 = int(max(0, b[0] - bw)), int(max(0, b[1] - bh))
            x1, y1 = int(min(w, b[2] + bw)), int(min(h, b[3] + bh))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            up = 0
            while up < self.opt.upsample + 1 and max(bw, bh) * 2 ** up < 80:
                up += 1
            roi = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            for d, _ in self.rec.detect_scored(roi, up, self.opt.cnn, self.opt.min_score):
                found.append((d[0] + x0, d[1] + y0, d[2] + x0, d[3] + y0))
        return found

    def _link_cost(self, a, b) -> float:
        """Normalised centre distance if a and b may be the same face, else _NO_LINK."""
        sa = math.sqrt(max(1e-6, (a[2] - a[0]) * (a[3] - a[1])))
        sb = math.sqrt(max(1e-6, (b[2] - b[0]) * (b[3] - b[1])))
        d = math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / ((sa + sb) / 2)
        if box_iou(a, b) >= self.opt.link_iou or (d <= self.opt.link_dist and 2 / 3 <= sa / sb <= 3 / 2):
            return d
        return _NO_LINK

    def _link(self, obs: list, rgb_o, rgb_d) -> None:
        now = self.frames_seen
        active = [t for t in self.tracks if now - t.last_seen <= self.opt.max_gap + 1]
        assigned = [None] * len(obs)
        if active and obs:
            cost = np.array([[self._link_cost(t.last_box, o.box) for o in obs] for t in active])
            for r, c in match(-cost, min_score=-_NO_LINK / 2):  # a pair that may not link scores -_NO_LINK
                assigned[c] = active[r]
        for o, t in zip(obs, assigned):
            if t is None:
                t = _Track(len(self.tracks), o.box, now)
                self.tracks.append(t)
            t.last_box, t.last_seen = o.box, now
            o.track = t.id
            t.obs.append(o)
            if self.keep_crops and (len(t.obs) - 1) % t.sheet_stride == 0:
                t.sheet.append((o.frame, o.dis, _crop(rgb_o, o.box), _crop(rgb_d, o.box)))
                if len(t.sheet) > 4 * max(1, self.opt.sheet_cols):  # bounded memory: thin out
                    t.sheet = t.sheet[::2]
                    t.sheet_stride *= 2

    # ---------------------------------------------------------------- summary
    def report(self) -> dict:
        opt = self.opt
        thr = opt.leak_threshold
        all_obs = [o for t in self.tracks for o in t.obs]
        tracks_out = []
        cross_mins = []
        intra_d, intra_o, intra_max = [], [], []
        means_d, means_o = [], []
        for t in self.tracks:
            e_o = np.stack([o.e_o for o in t.obs]).astype(np.float64)
            e_d = np.stack([o.e_d for o in t.obs]).astype(np.float64)
            dis = np.array([o.dis for o in t.obs])
            row = {
                "id": t.id,
                "face_frames": len(t.obs),
                "first_frame": t.obs[0].frame,
                "last_frame": t.obs[-1].frame,
                "dis_mean": rounded(dis.mean()),
                "dis_min": rounded(dis.min()),
                "leak_rate": rounded(np.mean(dis < thr)),
                "dis_track_mean": rounded(np.linalg.norm(e_d.mean(0) - e_o.mean(0))),
                "cross_frame_min": None,
                "cross_frame_leak_rate": None,
                "intra_track": None,
                "intra_track_max": None,
                "pose_error_deg": rounded(mean_or_none([o.pose_err for o in t.obs])),
                "detection_rate": rounded(np.mean([o.detected for o in t.obs])),
            }
            means_d.append(e_d.mean(0))
            means_o.append(e_o.mean(0))
            if len(t.obs) >= 2:
                n = len(t.obs)
                gi = evenly_spaced(n, opt.cross_sample)
                d = cdist(e_d, e_o[gi])  # output at t vs originals at sampled t'
                d[np.arange(n)[:, None] == np.asarray(gi)[None, :]] = np.inf  # not the same frame
                m = d.min(1)
                m = m[np.isfinite(m)]
                if m.size:
                    cross_mins.append(m)
                    row["cross_frame_min"] = rounded(m.min())
                    row["cross_frame_leak_rate"] = rounded(np.mean(m < thr))
                si = evenly_spaced(n, 200)
                pw = pairwise_distances(e_d[si])
                row["intra_track"] = rounded(pw.mean())
                row["intra_track_max"] = rounded(pw.max())
                intra_d.append(float(pw.mean()))
                intra_max.append(float(pw.max()))
                intra_o.append(mean_pairwise_distance(e_o[si]))
            tracks_out.append(row)

        inter_d = pairwise_distances(np.array(means_d)) if len(means_d) >= 2 else np.zeros(0)
        inter_o = pairwise_distances(np.array(means_o)) if len(means_o) >= 2 else np.zeros(0)
        dis_all = np.array([o.dis for o in all_obs]) if all_obs else np.zeros(0)
        cm = np.concatenate(cross_mins) if cross_mins else np.zeros(0)
        sharp = [o.sharp for o in all_obs if o.sharp is not None and o.sharp > 0]
        fm = self.frame_metrics

        rep = {
            "tool": "ideud-eval",
            "report_version": 1,
            "frames_evaluated": self.frames_seen,
            "seconds": round(time.perf_counter() - self._t0, 2),
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "options": {k: v for k, v in asdict(opt).items()},
            "detector": "dlib-mmod-cnn" if opt.cnn else "dlib-hog",
            "pose_model": "mediapipe-facemesh-3d" if self.mesh is not None else "dlib-pnp-only",
            "tracks_found": len(self.tracks),
            "face_frames": len(all_obs),
            "privacy": {
                "leak_threshold": thr,
                "dis_mean": rounded(dis_all.mean()) if dis_all.size else None,
                "dis_median": rounded(np.median(dis_all)) if dis_all.size else None,
                "dis_min": rounded(dis_all.min()) if dis_all.size else None,
                "leak_rate": rounded(np.mean(dis_all < thr)) if dis_all.size else None,
                "cross_frame_min": rounded(cm.min()) if cm.size else None,
                "cross_frame_mean_min": rounded(cm.mean()) if cm.size else None,
                "cross_frame_leak_rate": rounded(np.mean(cm < thr)) if cm.size else None,
                "cross_frame_face_frames": int(cm.size),
                "dis_track_mean_min": rounded(min((r["dis_track_mean"] for r in tracks_out), default=None)),
            },
            "utility": {
                "psnr": rounded(mean_or_none([m["psnr"] for m in fm])),
                "ssim": rounded(mean_or_none([m["ssim"] for m in fm])),
                "psnr_outside_faces": rounded(mean_or_none([m["psnr_outside"] for m in fm])),
                "ssim_outside_faces": rounded(mean_or_none([m["ssim_outside"] for m in fm])),
                "face_area_fraction": rounded(mean_or_none([m["face_area"] for m in fm])),
                "pose_error_deg_mean": rounded(mean_or_none([o.pose_err for o in all_obs])),
                "pose_error_deg_median": rounded(median_or_none([o.pose_err for o in all_obs])),
                "pose_error_deg_max": rounded(max((o.pose_err for o in all_obs if o.pose_err is not None),
                                             default=None)),
                "yaw_error_deg": rounded(mean_or_none([o.pyr_err[1] for o in all_obs if o.pyr_err is not None])),
                "pitch_error_deg": rounded(mean_or_none([o.pyr_err[0] for o in all_obs if o.pyr_err is not None])),
                "roll_error_deg": rounded(mean_or_none([o.pyr_err[2] for o in all_obs if o.pyr_err is not None])),
                "pose_face_frames": sum(o.pose_err is not None for o in all_obs),
                "pose_error_pnp_deg": rounded(mean_or_none([o.pnp_err for o in all_obs])),
                "mouth_aperture_error": rounded(mean_or_none([o.mouth_err for o in all_obs])),
                "eye_aperture_error": rounded(mean_or_none([o.eyes_err for o in all_obs])),
                "sharpness_ratio": rounded(math.exp(np.mean(np.log(sharp)))) if sharp else None,
                "detection_rate": rounded(np.mean([o.detected for o in all_obs])) if all_obs else None,
            },
            "consistency": {
                "intra_track_mean": rounded(np.mean(intra_d)) if intra_d else None,
                "intra_track_max": rounded(max(intra_max)) if intra_max else None,
                "inter_track_min": rounded(inter_d.min()) if inter_d.size else None,
                "inter_track_mean": rounded(inter_d.mean()) if inter_d.size else None,
                "original_intra_track_mean": rounded(np.mean(intra_o)) if intra_o else None,
                "original_inter_track_min": rounded(inter_o.min()) if inter_o.size else None,
            },
            "tracks": tracks_out,
        }
        if opt.per_face:
            rep["faces"] = [{
                "frame": o.frame, "track": o.track, "box": [round(v, 1) for v in o.box],
                "dis": rounded(o.dis), "pose_error_deg": rounded(o.pose_err),
                "pose_error_pnp_deg": rounded(o.pnp_err), "mouth_aperture_error": rounded(o.mouth_err),
                "eye_aperture_error": rounded(o.eyes_err), "sharpness_ratio": rounded(o.sharp), "detected": o.detected,
            } for o in all_obs]
            rep["frames"] = [{k: (rounded(v) if isinstance(v, float) else v) for k, v in m.items()} for m in fm]
        return rep

    def close(self) -> None:
        if self.mesh is not None:
            self.mesh.close()
            self.mesh = None

    # ---------------------------------------------------------------- contact sheet
    def contact_sheet(self, path) -> Optional[str]:
        """Before/after PNG (`ideud.eval.sheet`); needs Evaluator(keep_crops=True)."""
        if not self.keep_crops:
            raise RuntimeError("contact sheet needs Evaluator(keep_crops=True)")
        from ideud.eval.sheet import write_contact_sheet

        return write_contact_sheet(self.tracks, self.opt, path)


def evaluate(original, deidentified, options: Optional[EvalOptions] = None, sheet=None,
             recognizer: Optional[FaceRecognizer] = None, cache: Optional[dict] = None,
             progress: Optional[Callable[[int], None]] = None) -> dict:
    """Evaluate a pair of videos/images; returns the report (JSON-ready dict).

    ``sheet``: path of a before/after contact sheet PNG to write (optional).
    Raises EvalInputError on bad input.
    """
    opt = options or EvalOptions()
    a, b = open_pair(original, deidentified, opt.max_frames)  # bad input fails before any model loads
    ev = Evaluator(opt, recognizer, keep_crops=sheet is not None, cache=cache)
    try:
        for i, fo, fd in iter_pair(original, deidentified, opt.max_frames, opt.every):
            ev.add_frame(i, fo, fd)
            if progress is not None:
                progress(ev.frames_seen)
    finally:
        ev.close()
    rep = ev.report()
    rep["original"] = a.path
    rep["deidentified"] = b.path
    rep["kind"] = a.kind
    rep["sheet"] = ev.contact_sheet(sheet) if sheet is not None else None
    return rep

