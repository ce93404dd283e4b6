"""ideud-eval and the dlib recognizer wrapper, on real models and real photos.

Clips are generated at test time (a moving astronaut crop on a background);
"de-identified" versions are made by a crude face swap with a face from the
PASCAL test photos, so that the privacy metrics have a true answer: a
different person (DIS > 0.6) with everything outside the face untouched.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from ideud.models.recognizer import (FACEMESH_POINTS5, IBUG68_POINTS5, THRESHOLD, FaceRecognizer,
                                     default_recognizer)
from ideud import eval as ev
from ideud.models.geometry import box_iou
from ideud.tools.eval import main

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "models" / "data" / "astronaut.jpg"
FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
GROUP = FACES / "2008_002506.jpg"  # three men, frontal, ~100 px faces

needs_faces = pytest.mark.skipif(not GROUP.is_file(), reason=f"PASCAL test photos not found in {FACES}")


def rgb(path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


def save_rgb(path, img) -> str:
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1]))
    return str(path)


@pytest.fixture(scope="module")
def rec() -> FaceRecognizer:
    return default_recognizer()


@pytest.fixture(scope="module")
def astro(rec):
    img = rgb(ASTRONAUT)
    box = rec.detect(img, 1, min_score=0.3)[0]
    return img, box, rec.shape68(img, box)


@pytest.fixture(scope="module")
def donors(rec):
    """(image, [(box, 68 points)]) of the three men in the PASCAL group photo."""
    if not GROUP.is_file():
        pytest.skip("PASCAL test photos not found")
    img = rgb(GROUP)
    boxes = sorted(rec.detect(img, 1), key=lambda b: b[0])
    assert len(boxes) == 3
    return img, [(b, rec.shape68(img, b)) for b in boxes]


def swap_face(dst, d68, src, s68, forehead=0.25):
    """Paste the face of ``src`` (landmarks s68) onto ``dst`` (landmarks d68),
    colour-matched, strictly inside the hull of d68 plus a forehead (eroded) —
    inside the evaluator's face region (forehead 0.4, dilated).  Without the
    forehead, an inner-face swap between similar-looking men can stay under
    0.6 (hair and face outline carry identity)."""
    idx = list(range(17, 68))
    m, _ = cv2.estimateAffinePartial2D(s68[idx].astype(np.float32), d68[idx].astype(np.float32),
                                       method=cv2.LMEDS)
    h, w = dst.shape[:2]
    warped = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((h, w), np.uint8)
    pts = np.concatenate([d68, ev.forehead_points(d68, forehead)])
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 255)
    r = max(1, int(0.04 * np.linalg.norm(d68[16] - d68[0])))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    inside = mask > 0
    lw = cv2.cvtColor(warped, cv2.COLOR_RGB2LAB).astype(np.float32)
    ld = cv2.cvtColor(dst, cv2.COLOR_RGB2LAB).astype(np.float32)
    for c in range(3):
        a, b = lw[..., c][inside], ld[..., c][inside]
        lw[..., c] = (lw[..., c] - a.mean()) / (a.std() + 1e-6) * b.std() + b.mean()
    warped = cv2.cvtColor(np.clip(lw, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(1.0, r / 2))[..., None]
    alpha *= inside[..., None]
    return np.clip(warped * alpha + dst * (1.0 - alpha), 0, 255).astype(np.uint8)


def write_clip(path, frames, fps=10):
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def moving_astronaut(astro, n=10, size=(320, 240), donor_for=None):
    """n frames: the astronaut's head moving/growing over a textured background.

    ``donor_for(i)`` -> (image, 68 points) of a face to swap in at frame i.
    """
    img, _, a68 = astro
    x0, y0, side = 110, 20, 220
    crop = img[y0:y0 + side, x0:x0 + side]
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 140 - 40 * xx / w], -1)
    bg = np.clip(bg + rng.normal(0, 6, bg.shape), 0, 255).astype(np.uint8)
    out = []
    for i in range(n):
        s, tx, ty = 0.55 + 0.01 * i, 20 + 14 * i, 8 + 2 * i
        m = np.float32([[s, 0, tx], [0, s, ty]])
        frame = cv2.warpAffine(crop, m, size, dst=bg.copy(), borderMode=cv2.BORDER_TRANSPARENT)
        if donor_for is not None:
            p68 = (a68 - (x0, y0)) * s + (tx, ty)
            src, s68 = donor_for(i)
            frame = swap_face(frame, p68, src, s68)
        out.append(frame)
    return out


def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def load(path) -> dict:
    return json.loads(Path(path).read_text())


# ============================================================== recognizer
def test_points5_order_matches_ibug68(rec, astro):
    img, box, p68 = astro
    p5 = rec.shape5(img, box)
    assert p5.shape == (5, 2)
    # documented order: image-right eye outer, inner; image-left eye outer, inner; nose bottom
    assert np.abs(p5 - p68[list(IBUG68_POINTS5)]).max() < 3.0
    assert p5[0, 0] > p5[1, 0] > p5[3, 0] > p5[2, 0]
    assert p5[4, 1] > p5[:4, 1].max()


def test_embed_same_person_close_other_people_far(rec, astro, donors):
    img, box, p68 = astro
    e = rec.embed(img, box=box)
    assert e.shape == (128,) and e.dtype == np.float32
    assert np.allclose(rec.embed(img, points5=rec.shape5(img, box)), e)  # same alignment -> same vector
    assert rec.distance(rec.embed(img, points5=p68), e) < 0.1  # 68 points reduced to dlib's 5
    # the same face, smaller and shifted, in another frame: same person
    small = cv2.resize(img, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    small = np.ascontiguousarray(np.roll(small, (17, -23), (0, 1)))
    sbox = rec.detect(small, 1, min_score=0.3)[0]
    assert rec.distance(rec.embed(small, box=sbox), e) < 0.4
    gimg, faces = donors
    es = rec.embed_many(gimg, boxes=[b for b, _ in faces])
    assert es.shape == (3, 128)
    for k in range(3):
        assert rec.distance(es[k], e) > THRESHOLD  # three other people
        assert rec.distance(es[k], rec.embed(gimg, box=faces[k][0])) < 1e-5
    assert min(rec.distance(es[i], es[j]) for i in range(3) for j in range(i + 1, 3)) > THRESHOLD


def test_embed_from_facemesh_points(rec, astro):
    mp = pytest.importorskip("mediapipe")
    img, box, _ = astro
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as fm:
        res = fm.process(img)
    lm = res.multi_face_landmarks[0].landmark
    mesh = np.array([(p.x * img.shape[1], p.y * img.shape[0]) for p in lm])
    e_mesh = rec.embed(img, points5=mesh[list(FACEMESH_POINTS5)])
    assert rec.distance(e_mesh, rec.embed(img, box=box)) < 0.15
    # the order matters: left/right swapped points give a mirrored chip, a worse match
    wrong = mesh[[33, 133, 263, 362, 2]]
    assert rec.distance(rec.embed(img, points5=wrong), rec.embed(img, box=box)) > \
        rec.distance(e_mesh, rec.embed(img, box=box))


def test_embed_threads_agree(rec, astro):
    img, box, _ = astro
    ref = rec.embed(img, box=box)
    got = []

    def work():
        for _ in range(2):
            got.append(rec.embed(img, box=box))

    th = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in th]
    [t.join() for t in th]
    assert len(got) == 4 and all(np.array_equal(g, ref) for g in got)


def test_cnn_detector_finds_the_face(rec, astro):
    img, box, _ = astro
    x0, y0 = 100, 30  # MMOD sees faces >= 80 px at upsample 0; the head is ~90 px: crop, don't shrink
    crop = np.ascontiguousarray(img[y0:y0 + 240, x0:x0 + 240])
    found = rec.detect_scored(crop, 0, cnn=True)
    assert len(found) == 1 and found[0][1] > 0.3
    assert box_iou([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], found[0][0]) > 0.5


# ============================================================== metric primitives
def test_psnr_and_ssim_against_known_values():
    rng = np.random.default_rng(1)
    a = np.clip(cv2.GaussianBlur(rng.integers(0, 256, (64, 80, 3)).astype(np.uint8), (0, 0), 2) * 1.0, 0, 255
                ).astype(np.uint8)
    b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    assert ev.psnr(a, a) == ev.PSNR_CAP
    expect = 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))
    assert ev.psnr(a, b) == pytest.approx(expect, abs=1e-9)
    assert ev.psnr(a, b, np.zeros(a.shape[:2], bool)) is None
    assert ev.ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    s = ev.ssim(a, noisy)
    assert 0.0 < s < 0.95
    skm = pytest.importorskip("skimage.metrics")
    ya, yn = ev.luma(a), ev.luma(noisy)
    ref = skm.structural_similarity(ya, yn, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255)
    assert s == pytest.approx(ref, abs=1e-6)


def test_head_pose_reads_an_in_plane_rotation(rec, astro):
    img, box, p68 = astro
    r0 = ev.head_pose(p68, img.shape[:2])
    assert ev.rotation_angle_deg(r0, r0) == pytest.approx(0.0, abs=1e-6)
    c = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    rot = cv2.warpAffine(img, cv2.getRotationMatrix2D(c, 12, 1.0), img.shape[1::-1])
    r1 = ev.head_pose(rec.shape68(rot, box), img.shape[:2])
    assert 8.0 < ev.rotation_angle_deg(r0, r1) < 16.0
    droll = ev.euler_deg(r1)[2] - ev.euler_deg(r0)[2]
    assert 8.0 < abs(droll) < 16.0
    # FaceMesh 3D (the primary pose error): the rotation between the two point sets
    mesh = ev.MeshPose.create()
    if mesh is None:
        pytest.skip("mediapipe FaceMesh not available")
    p0, p1 = mesh.points(img, box), mesh.points(rot, box)
    mesh.close()
    r = ev.relative_rotation(p0, p1)
    assert ev.rotation_angle_deg(np.eye(3), ev.relative_rotation(p0, p0)) < 1e-3
    assert 11.0 < ev.rotation_angle_deg(np.eye(3), r) < 13.0
    pitch, yaw, roll = np.abs(cv2.RQDecomp3x3(r)[0])
    assert 11.0 < roll < 13.0 and pitch < 1.5 and yaw < 1.5


# ============================================================== ideud-eval on images
def test_identical_image_pair(tmp_path, capsys):
    rc, out, err = run_cli([ASTRONAUT, ASTRONAUT, "--json", tmp_path / "r.json"], capsys)
    assert rc == 0, err
    rep = load(tmp_path / "r.json")
    p, u = rep["privacy"], rep["utility"]
    assert rep["face_frames"] == 1 and rep["tracks_found"] == 1
    assert p["dis_mean"] == pytest.approx(0.0, abs=1e-6)
    assert p["leak_rate"] == 1.0  # the "de-identified" face is recognised as the original
    assert u["psnr"] == ev.PSNR_CAP and u["psnr_outside_faces"] == ev.PSNR_CAP
    assert u["ssim"] == pytest.approx(1.0) and u["detection_rate"] == 1.0
    assert u["pose_error_deg_mean"] == pytest.approx(0.0, abs=1e-3)
    assert u["sharpness_ratio"] == pytest.approx(1.0)
    assert "leak rate 100.0%" in out


@needs_faces
def test_face_swapped_image_is_another_person(tmp_path, capsys, astro, donors):
    img, box, a68 = astro
    gimg, faces = donors
    swapped = swap_face(img, a68, gimg, faces[2][1])
    dst = save_rgb(tmp_path / "swap.png", swapped)
    rc, out, err = run_cli([ASTRONAUT, dst, "--json", tmp_path / "r.json", "--sheet", tmp_path / "s.png"], capsys)
    assert rc == 0, err
    rep = load(tmp_path / "r.json")
    p, u = rep["privacy"], rep["utility"]
    assert rep["face_frames"] == 1
    assert p["dis_mean"] > THRESHOLD and p["leak_rate"] == 0.0
    # only pixels inside the face region changed (PNG: lossless)
    assert u["psnr_outside_faces"] == ev.PSNR_CAP and u["ssim_outside_faces"] > 0.999
    assert u["psnr"] < 45 and u["ssim"] < 0.999
    assert u["detection_rate"] == 1.0
    sheet = cv2.imread(str(tmp_path / "s.png"))
    assert sheet is not None and sheet.shape[0] >= 96 and sheet.shape[1] >= 2 * 96
    assert rep["sheet"] == str(tmp_path / "s.png")


@needs_faces
def test_three_people_all_get_the_same_face(tmp_path, capsys, astro, donors):
    gimg, faces = donors
    out = gimg.copy()
    for k in range(3):  # every man gets the astronaut's face
        out = swap_face(out, faces[k][1], astro[0], astro[2])
    dst = save_rgb(tmp_path / "swap3.png", out)
    orig = save_rgb(tmp_path / "orig3.png", gimg)
    rc, _, err = run_cli([orig, dst, "--json", tmp_path / "r.json"], capsys)
    assert rc == 0, err
    rep = load(tmp_path / "r.json")
    assert rep["tracks_found"] == 3
    assert all(t["dis_mean"] > THRESHOLD for t in rep["tracks"])
    assert rep["privacy"]["leak_rate"] == 0.0
    assert rep["utility"]["psnr_outside_faces"] == ev.PSNR_CAP
    c = rep["consistency"]
    assert c["original_inter_track_min"] > THRESHOLD  # three different men ...
    assert c["inter_track_min"] < c["original_inter_track_min"] - 0.15  # ... now look alike


# ============================================================== ideud-eval on videos
@pytest.fixture(scope="module")
def clips(tmp_path_factory, astro, donors):
    d = tmp_path_factory.mktemp("clips")
    gimg, faces = donors
    one = (gimg, faces[2][1])
    return {
        "orig": write_clip(d / "orig.mp4", moving_astronaut(astro)),
        "swap": write_clip(d / "swap.mp4", moving_astronaut(astro, donor_for=lambda i: one)),
        # a bad de-identifier: a different new identity every other frame
        "flip": write_clip(d / "flip.mp4", moving_astronaut(
            astro, donor_for=lambda i: (gimg, faces[2 if i % 2 else 0][1]))),
        "short": write_clip(d / "short.mp4", moving_astronaut(astro, n=9)),
        "wide": write_clip(d / "wide.mp4", moving_astronaut(astro, n=10, size=(352, 240))),
        "dir": d,
    }


def test_video_identical_pair_leaks_everywhere(clips, capsys, tmp_path):
    rc, out, err = run_cli([clips["orig"], clips["orig"], "--json", tmp_path / "r.json"], capsys)
    assert rc == 0, err
    rep = load(tmp_path / "r.json")
    assert rep["kind"] == "video" and rep["frames_evaluated"] == 10
    assert rep["tracks_found"] == 1 and rep["face_frames"] == 10  # one moving face, one track
    p = rep["privacy"]
    assert p["dis_mean"] == pytest.approx(0.0, abs=1e-6) and p["leak_rate"] == 1.0
    # the same person in the other frames: the cross-frame check flags it too
    assert p["cross_frame_leak_rate"] == 1.0 and p["cross_frame_min"] < 0.4
    assert rep["utility"]["psnr"] == ev.PSNR_CAP


@needs_faces
def test_video_face_swap_private_and_consistent(clips, capsys, tmp_path):
    rc, out, err = run_cli([clips["orig"], clips["swap"], "--json", tmp_path / "r.json",
                            "--sheet", tmp_path / "sheet.png", "--per-face"], capsys)
    assert rc == 0, err
    rep = load(tmp_path / "r.json")
    p, u, c = rep["privacy"], rep["utility"], rep["consistency"]
    assert rep["tracks_found"] == 1 and rep["face_frames"] == 10
    assert p["dis_min"] > THRESHOLD and p["leak_rate"] == 0.0
    assert p["cross_frame_min"] > THRESHOLD and p["cross_frame_leak_rate"] == 0.0
    assert c["intra_track_mean"] < 0.35  # the same new identity in every frame
    assert u["psnr_outside_faces"] > u["psnr"] + 8  # lossy video, but the change is in the faces
    assert len(rep["faces"]) == 10
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None
    assert "contact sheet" in out


@needs_faces
def test_video_inconsistent_identity_is_flagged(clips, tmp_path):
    opt, cache = ev.EvalOptions(max_frames=6), {}  # the original is analysed once
    good = ev.evaluate(clips["orig"], clips["swap"], opt, cache=cache)
    bad = ev.evaluate(clips["orig"], clips["flip"], opt, cache=cache)
    assert bad["frames_evaluated"] == 6 and bad["privacy"]["leak_rate"] == 0.0
    # two people take turns: the worst pair of frames is two different people
    assert bad["consistency"]["intra_track_max"] > THRESHOLD > good["consistency"]["intra_track_max"]
    assert bad["consistency"]["intra_track_mean"] > 2 * good["consistency"]["intra_track_mean"]


def test_every_and_max_frames(clips):
    rep = ev.evaluate(clips["orig"], clips["orig"], ev.EvalOptions(max_frames=7, every=3))
    assert rep["frames_evaluated"] == 3  # frames 0, 3, 6
    assert rep["tracks_found"] == 1 and rep["face_frames"] == 3


# ============================================================== privacy of the report
def _walk(o, path=""):
    yield path, o
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _walk(v, f"{path}[{i}]")


@needs_faces
def test_report_holds_no_identity_data(clips, tmp_path, capsys):
    rc, _, err = run_cli([clips["orig"], clips["swap"], "--json", tmp_path / "r.json", "--per-face",
                          "--max-frames", "3"], capsys)
    assert rc == 0, err
    text = (tmp_path / "r.json").read_text()
    rep = json.loads(text)
    banned = ("embed", "descriptor", "z_id", "zid", "landmark", "shape", "feature", "vector", "code")
    for path, v in _walk(rep):
        key = path.rsplit("/", 1)[-1].split("[")[0].lower()
        assert not any(b in key for b in banned), path
        if isinstance(v, list):
            nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
            assert len(nums) < 16, f"{path}: a list of {len(nums)} numbers"
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    # and the self-check can fail: an embedding would be caught
    rep["tracks"][0]["extra"] = [0.01] * 128
    assert any(isinstance(v, list) and len(v) >= 16 for _, v in _walk(rep))


# ============================================================== bad input
@pytest.mark.parametrize("case", ["missing", "size", "frames", "kind", "corrupt", "every"])
def test_bad_input_exits_2_with_one_line(case, clips, capsys, tmp_path):
    d = clips["dir"]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    args = {
        "missing": [tmp_path / "nope.mp4", clips["orig"]],
        "size": [clips["orig"], clips["wide"]],
        "frames": [clips["orig"], clips["short"]],
        "kind": [ASTRONAUT, clips["orig"]],
        "corrupt": [clips["orig"], junk],
        "every": [clips["orig"], clips["orig"], "--every", "0"],
    }[case]
    rc, out, err = run_cli(args, capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("ideud-eval: error:")
    assert "Traceback" not in err + out
    assert d.exists()


def test_console_entry_point_bad_input(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ideud.tools.eval", str(tmp_path / "a.png"), str(ASTRONAUT)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"ideud-eval: error: no such file: {tmp_path / 'a.png'}"]


def test_frame_count_mismatch_when_only_seen_while_decoding(clips, tmp_path):
    # a container that does not state its frame count (raw h264 stream)
    import av

    raw = tmp_path / "short.h264"
    with av.open(clips["short"]) as src, av.open(str(raw), "w", format="h264") as dst:
        s = dst.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for f in src.decode(video=0):
            for p in s.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")):
                dst.mux(p)
        for p in s.encode():
            dst.mux(p)
    assert ev.probe(raw).frames == 0
    with pytest.raises(ev.EvalInputError, match="frame count mismatch"):
        ev.evaluate(clips["orig"], raw, ev.EvalOptions(every=5))


# ============================================================== sweep
def blur_run(src: str, dst: str, scale: float) -> None:
    """A toy 'de-identifier': blur the whole picture, stronger with scale."""
    img = cv2.imread(src)
    if scale > 0:
        img = cv2.GaussianBlur(img, (0, 0), 40 * scale)
    assert cv2.imwrite(dst, img)


def test_sweep_with_a_toy_run_function(tmp_path):
    res = ev.sweep(ASTRONAUT, [0, 0.05, 0.3], blur_run, tmp_path / "sw")
    rows = res["rows"]
    assert [r["scale"] for r in rows] == [0, 0.05, 0.3]
    assert rows[0]["dis_mean"] == pytest.approx(0.0, abs=1e-6) and rows[0]["psnr"] == ev.PSNR_CAP
    assert rows[0]["dis_mean"] < rows[1]["dis_mean"] < rows[2]["dis_mean"]
    assert rows[2]["dis_mean"] > THRESHOLD and rows[2]["leak_rate"] == 0.0
    assert rows[0]["psnr"] > rows[1]["psnr"] > rows[2]["psnr"]
    assert rows[1]["sharpness_ratio"] < 0.5
    doc = load(res["json"])
    assert [r["scale"] for r in doc["rows"]] == [0, 0.05, 0.3]
    lines = Path(res["csv"]).read_text().splitlines()
    assert lines[0].startswith("scale,dis_mean") and len(lines) == 4
    if res["plot"] is not None:
        png = cv2.imread(res["plot"])
        assert png is not None and png.shape[1] > 400
        assert res["note"] is None
    assert (tmp_path / "sw" / "scale_0.3.png").is_file()


def test_sweep_without_matplotlib_writes_json_and_csv(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    res = ev.sweep(ASTRONAUT, [0], blur_run, tmp_path / "sw")
    assert res["plot"] is None and "matplotlib" in res["note"]
    assert Path(res["json"]).is_file() and Path(res["csv"]).is_file()
    assert not (tmp_path / "sw" / "sweep.png").exists()


def test_sweep_cli_bad_input(tmp_path, capsys):
    rc, _, err = run_cli(["sweep", tmp_path / "nope.mp4"], capsys)
    assert rc == 2 and err.strip().splitlines() == [f"ideud-eval: error: no such file: {tmp_path / 'nope.mp4'}"]
    rc, _, err = run_cli(["sweep", ASTRONAUT, "--scales", "0,x"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--scales" in err


def test_sweep_cli_without_the_pipeline(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ideud.stream.pipeline", None)  # import -> ImportError
    rc, out, err = run_cli(["sweep", ASTRONAUT, "--scales", "0", "--out", tmp_path / "o"], capsys)
    assert rc == 1 and "ideud.stream.pipeline" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


# ============================================================== the contact sheet and the package's independence
def test_contact_sheet_labels_and_title_are_not_clipped(tmp_path):
    """Long labels (a 5-digit face-frame count) and the title stay inside the sheet, clear of the crops."""
    import types

    from ideud.eval.sheet import write_contact_sheet

    blue = (0, 0, 255)  # RGB crops of one colour no text uses, to find where the crops start

    def track(i, n, pairs):
        obs = [types.SimpleNamespace(dis=0.3 + 0.5 * (k % 2)) for k in range(n)]
        crops = [(f, 0.5, np.full((96, 96, 3), blue, np.uint8), np.full((96, 96, 3), blue, np.uint8))
                 for f in range(pairs)]
        return types.SimpleNamespace(id=i, obs=obs, sheet=crops)

    for tracks, cols in (([track(12, 12345, 1)], 4), ([track(1, 200, 8), track(123, 99999, 3)], 4)):
        path = write_contact_sheet(tracks, ev.EvalOptions(sheet_cols=cols), tmp_path / "s.png")
        img = cv2.imread(path)[:, :, ::-1].astype(int)
        is_blue = (img == blue).all(2)
        ys, xs = np.nonzero(is_blue)
        ink = (img < 200).any(2) & ~is_blue  # text (anti-aliased dark pixels)
        assert not ink[:, -2:].any() and not ink[-2:, :].any(), "text runs off the sheet's right or bottom edge"
        assert not ink[: ys.min()].any(0)[-3:].any()
        left = xs.min()  # the first crop column: labels must end before it
        assert not ink[ys.min():, left - 3:left].any(), "a track label runs into the crops"
        assert ink[: ys.min()].any(), "no title drawn"
        assert ink[ys.min():, :left].sum() > 200, "no labels drawn"


def test_evaluator_imports_nothing_of_the_pipeline():
    code = ("import sys, ideud.eval as ev; [getattr(ev, n) for n in ev.__all__]; import ideud.tools.eval; "
            "print(' '.join(m for m in sys.modules if m.startswith('ideud.stream')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", f"ideud.eval imported {p.stdout.strip()}"
