"""The report as a file and as a few lines for a person."""
from __future__ import annotations

import json
from pathlib import Path


def write_json(obj, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    return str(path)


def summary_lines(rep: dict) -> list:
    """A short human summary of a report."""
    p, u, c = rep["privacy"], rep["utility"], rep["consistency"]

    def fmt(v, spec=".2f", suffix=""):
        return "n/a" if v is None else f"{v:{spec}}{suffix}"

    per = 1000.0 * rep["seconds"] / max(1, rep["frames_evaluated"])
    lines = [f"{rep['frames_evaluated']} frame(s) evaluated ({rep['width']}x{rep['height']}, {rep['detector']}): "
             f"{rep['tracks_found']} track(s), {rep['face_frames']} face-frame(s); {rep['seconds']:.1f} s "
             f"({per:.0f} ms/frame)"]
    if not rep["face_frames"]:
        lines.append("no faces found in the original: privacy metrics not available")
    else:
        lines.append(f"privacy:     DIS mean {fmt(p['dis_mean'])} (min {fmt(p['dis_min'])}), "
                     f"leak rate {fmt(p['leak_rate'], '.1%')} (DIS < {p['leak_threshold']:g}); "
                     f"cross-frame min {fmt(p['cross_frame_min'])}, "
                     f"leak {fmt(p['cross_frame_leak_rate'], '.1%')}")
    lines.append(f"utility:     PSNR {fmt(u['psnr'], '.1f', ' dB')} "
                 f"(outside faces {fmt(u['psnr_outside_faces'], '.1f', ' dB')}), "
                 f"SSIM {fmt(u['ssim'], '.3f')} (outside {fmt(u['ssim_outside_faces'], '.3f')})")
    if rep["face_frames"]:
        lines.append(f"             pose error {fmt(u['pose_error_deg_mean'], '.1f', ' deg')} "
                     f"(yaw/pitch/roll {fmt(u['yaw_error_deg'], '.1f')}/{fmt(u['pitch_error_deg'], '.1f')}/"
                     f"{fmt(u['roll_error_deg'], '.1f')}; dlib PnP {fmt(u['pose_error_pnp_deg'], '.1f')}), "
                     f"mouth/eye aperture error {fmt(u['mouth_aperture_error'], '.3f')}/"
                     f"{fmt(u['eye_aperture_error'], '.3f')}, "
                     f"sharpness x{fmt(u['sharpness_ratio'])}, still detected {fmt(u['detection_rate'], '.0%')}")
        lines.append(f"consistency: intra-track {fmt(c['intra_track_mean'])} (max {fmt(c['intra_track_max'])}), "
                     f"inter-track min {fmt(c['inter_track_min'])} "
                     f"(originals: {fmt(c['original_intra_track_mean'])}, {fmt(c['original_inter_track_min'])})")
    return lines

