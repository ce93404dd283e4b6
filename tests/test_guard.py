"""The privacy guard and the donor-bank restorer, on real models (dlib, FaceMesh) and real photos.

The guard's checks are measured independently here with ideud-eval's own
alignment (dlib's 5-point fit, not the FaceMesh points the guard uses).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from clips import astronaut, moving_faces, write_clip
from portrait_faces import PORTRAITS, build_portrait_faces
from report_checks import assert_nothing_of_the_person
from ideud.models import face_bank as fbk
from ideud.models import facemesh as fm
from ideud.models.recognizers import TwoRecognizers, dlib_views
from ideud.stream import blend as bl
from ideud.models.recognizer import default_recognizer
from ideud.stream import guard as gd
from ideud.stream.pipeline import FaceProcessor, Options, deidentify
from ideud.stream.restore import IdentityRestorer, make_restorer
from ideud.stream.restore_bank import LEVELS, BankRestorer
from ideud.stream.types import Frame

FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
GROUP = FACES / "2008_002506.jpg"  # three men, frontal, ~100 px faces
needs_faces = pytest.mark.skipif(not GROUP.is_file(), reason=f"PASCAL test photos not found in {FACES}")


def frame_of(rgb: np.ndarray, index: int = 0) -> Frame:
    return Frame(index=index, pts=index, time_base=Fraction(1, 25),
                 planes=[np.ascontiguousarray(rgb[..., i]) for i in range(3)], pix_fmt="rgb", full_range=True,
                 time=index / 25)


def processed(rgb: np.ndarray, o: Options, restorer=None) -> tuple[np.ndarray, FaceProcessor]:
    p = FaceProcessor(o, restorer=restorer)
    fr = frame_of(rgb)
    p.process(fr)
    p.close()
    return np.dstack(fr.planes), p


def dis(a: np.ndarray, b: np.ndarray) -> float:
    """ideud-eval's DIS at the original's biggest dlib face."""
    rec = default_recognizer()
    box = max(rec.detect(a), key=lambda x: (x[2] - x[0]) * (x[3] - x[1]))
    return rec.distance(rec.embed(a, box=box), rec.embed(b, box=box))


def portrait() -> np.ndarray:
    return np.ascontiguousarray(astronaut()[10:330, 80:400])


def every_step() -> int:
    """The candidates of every step of a search (fewer a step where the surroundings change)."""
    from ideud.stream.guard_policy import step_candidates
    return sum(step_candidates(gd.POLICIES["balanced"], s) for s in range(len(gd.STEPS)))


# ---------------------------------------------------------------------- the guard
def test_a_face_the_guard_still_recognises_is_escalated_to_obfuscation():
    # sigma 0 and a restorer that changes nothing: every candidate of every step IS the person
    img = portrait()
    out, p = processed(img, Options(seed=1, scale=0.0, restorer="none", privacy="balanced"))
    rep = p.report()
    pv = rep["tracks"][0]["privacy"]
    assert pv["status"] == "obfuscated" and pv["step"] == len(gd.STEPS)
    assert pv["candidates"] == every_step()  # every step was tried
    assert rep["fallback_face_frames"] == 1 and rep["tracks"][0]["fallback_reasons"] == {"privacy": 1}
    assert dis(img, out) > 0.6
    # the same without the guard hands the person back unchanged: the guard is what acted
    out_off, p_off = processed(img, Options(seed=1, scale=0.0, restorer="none", privacy="off"))
    assert p_off.report()["fallback_face_frames"] == 0 and dis(img, out_off) < 0.1
    assert "privacy" not in p_off.report()["tracks"][0]


def test_an_exhausted_search_may_go_on_with_a_seed_of_its_own():
    """stream/relink.py's hook: a linked track for which no candidate of its person's seed passes
    is searched once more under the seed it drew itself before it is obfuscated."""
    p = FaceProcessor(Options(seed=1, scale=0.0, restorer="none", privacy="balanced", relink=False))
    calls = []
    p.guard.exhausted = lambda tid: calls.append(tid) or (12345 if len(calls) == 1 else None)
    p.process(frame_of(portrait()))
    p.close()
    pv = p.report()["tracks"][0]["privacy"]
    assert len(calls) == 2 and calls[0] == calls[1]  # asked at each exhausted search; the second said no
    assert pv["searches"] == 2 and pv["candidates"] == 2 * every_step()
    assert pv["status"] == "obfuscated"  # every candidate is the person here (sigma 0, no restorer)


@needs_faces
def test_escalation_steps_reach_a_face_the_guard_no_longer_matches():
    # sigma 0: geometry cannot help at any step, only the restorer's levels can (or obfuscation)
    group = np.ascontiguousarray(cv2.imread(str(GROUP))[:, :, ::-1])
    out, p = processed(group, Options(seed=1, scale=0.0, restorer="bank", privacy="balanced"))
    tracks = [t["privacy"] for t in p.report()["tracks"]]
    assert len(tracks) == 3 and {t["status"] for t in tracks} <= {"verified", "obfuscated"}
    assert any(t["step"] >= 1 for t in tracks)  # somebody needed more than the first step
    pol = gd.POLICIES["balanced"]
    for t in tracks:  # a verified face passed both recognizers with the margins; the rest are obfuscated
        if t["status"] == "verified":
            assert t["level"] == gd.STEPS[t["step"]][1] and t["distance"] >= pol.tau + pol.margin
            assert t["edgeface"] <= pol.edge_max - pol.edge_margin
        else:
            assert t["step"] == len(gd.STEPS) and t["best_candidate"] is not None
    rec = default_recognizer()
    boxes = rec.detect(group)
    assert len(boxes) == 3
    for b in boxes:  # ideud-eval's alignment agrees: nobody is handed back recognisable
        assert rec.distance(rec.embed(group, box=b), rec.embed(out, box=b)) >= 0.6


def test_guarded_clip_leaks_no_frame_and_reports_per_track(tmp_path):
    from ideud.eval import EvalOptions, evaluate

    src = write_clip(tmp_path / "two.mp4", moving_faces(10, 720, 300, size=260, faces=2), audio=False)
    dst = tmp_path / "o.mkv"
    rep = deidentify(str(src), str(dst), Options(seed=4, restorer="bank", codec="ffv1", audio=False))
    ev = evaluate(str(src), str(dst), EvalOptions(per_face=True))
    assert ev["face_frames"] >= 18
    assert ev["privacy"]["leak_rate"] == 0.0, [f["dis"] for f in ev["faces"]]
    assert rep["privacy"]["mode"] == "balanced" and rep["privacy"]["tracks"] == 2
    for t in rep["tracks"]:
        pv = t["privacy"]
        assert pv["status"] in ("verified", "obfuscated") and pv["checks"] >= 1
        assert pv["fallback_frames"] == t["fallback_frames"]
        if pv["status"] == "verified":
            assert pv["distance"] >= 0.6 and pv["min_distance"] >= 0.6
            assert pv["edgeface"] <= gd.POLICIES["balanced"].edge_max
    assert rep["timing"]["guard"]["calls"] >= 1


def test_report_holds_no_embedding_and_no_id_code():
    p = FaceProcessor(Options(seed=6, restorer="bank", privacy="strict", frame_log=True))
    refs, codes = [], []
    for i, rgb in enumerate(moving_faces(6, 480, 270, size=200)):
        p.process(frame_of(rgb, i))
        for tid, st in p.guard._tracks.items():
            refs += [np.asarray(e) for e in st.refs + st.edge_refs + (list(st.now) if st.now is not None else [])]
            z = p.identity._tracks[tid].z
            codes += [z, np.clip(z + p.identity.noise_of(tid), -1, 1)]
    assert refs and codes, "the guard and the identity stage held nothing to leak"
    rep = p.report()
    p.close()
    assert_nothing_of_the_person(rep, refs + codes)


def test_dropping_a_track_forgets_the_embeddings():
    g = gd.PrivacyGuard("balanced", identity=None, restorer=None)
    st = g._tracks[7] = gd._Track(seed=1, refs=[np.ones(128, np.float32)], ref_poses=[(0.0, 0.0)])
    g.drop(7)
    assert 7 not in g._tracks and st.refs == []
    assert g.track_report(7)["status"] == "pending"  # the numbers stay for the report


def test_modes():
    assert gd.PrivacyGuard.create("off") is None
    with pytest.raises(ValueError):
        gd.PrivacyGuard("lenient", identity=None, restorer=None)
    assert gd.POLICIES["strict"].tau == 0.7 and gd.POLICIES["balanced"].tau == 0.6


# ---------------------------------------------------------------------- the bank restorer
def _item(level=0, seed=0):
    """A real RestoreItem of the astronaut (sigma 0: what the pipeline hands the restorer)."""
    class Grab(IdentityRestorer):
        items: list = []

        def restore(self, items):
            Grab.items = list(items)
            return [it.image for it in items]
    processed(portrait(), Options(seed=0, scale=0.0, restorer="none", privacy="off"), restorer=Grab())
    it = Grab.items[0]
    it.level, it.seed = level, seed
    return it


def test_bank_donors_are_the_public_domain_portraits_only():
    names = {d.name for d in fbk.donors()}
    assert names == {"astronaut", "hopper"}
    assert sum(d.mirrored for d in fbk.donors()) == 2
    mi = fbk.mirror_index()
    assert np.array_equal(mi[mi], np.arange(len(mi)))  # mirroring twice is the identity
    assert make_restorer("bank").name == "bank"


def test_bank_changes_only_the_face_and_is_deterministic_per_seed():
    it = _item()
    a, b = BankRestorer().restore([it, it])
    assert a.shape == it.image.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    outside = it.mask < 1e-3
    assert np.array_equal(a[outside], it.image[outside])
    inside = it.mask > 0.9
    assert np.abs(a[inside].astype(int) - it.image[inside]).mean() > 3
    seeds = {BankRestorer().recipe(s) for s in range(12)}
    assert len(seeds) >= 3  # tracks draw different donors


def test_bank_levels_take_more_of_the_face_and_keep_it_sharp():
    it = _item(seed=1)
    gray = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
    core = it.mask > 0.95
    sharp0 = cv2.Laplacian(gray(it.image), cv2.CV_32F)[core].var()
    diffs = []
    for level in range(len(LEVELS)):
        it.level = level
        out = BankRestorer().restore([it])[0]
        diffs.append(np.abs(out.astype(int) - it.image)[core].mean())
        assert cv2.Laplacian(gray(out), cv2.CV_32F)[core].var() >= 0.6 * sharp0  # not a blur
    assert diffs[0] < diffs[2]


@needs_faces
def test_bank_moves_people_further_than_geometry_alone():
    group = np.ascontiguousarray(cv2.imread(str(GROUP))[:, :, ::-1])
    k = 2.0  # ~200 px faces
    group = cv2.resize(group, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    rec = default_recognizer()
    boxes = rec.detect(group)
    assert len(boxes) >= 3
    res = {}
    for name in ("classic", "bank"):
        out, _ = processed(group, Options(seed=2, restorer=name, privacy="off"))
        res[name] = [rec.distance(rec.embed(group, box=b), rec.embed(out, box=b)) for b in boxes]
    assert np.mean(res["bank"]) > np.mean(res["classic"]) + 0.1, res


def test_a_failing_guard_fails_closed(tmp_path):
    src = write_clip(tmp_path / "f.mp4", moving_faces(24, 480, 270, size=200), audio=False)
    o = Options(seed=1, codec="ffv1", audio=False, frame_log=True, inject_faults={"guard": {0, 3}})
    p = FaceProcessor(o)
    p.guard.policy = gd.Policy(tau=0.05, edge_max=1.0)  # a guard that passes this face: only the faults obfuscate it
    try:
        rep = deidentify(str(src), str(tmp_path / "o.mkv"), o, processor=p)
    finally:
        p.close()
    status = {fr["frame"]: fr["faces"][0]["status"] for fr in rep["frame_log"]}
    assert status == {i: "fallback:error:FaceFault" if i in (0, 3) else "deidentified" for i in range(24)}
    assert rep["tracks"][0]["privacy"]["status"] == "verified"


def _group_clip(tmp_path, n=8):
    group = np.ascontiguousarray(cv2.imread(str(GROUP))[:, :, ::-1])
    group = cv2.resize(group, (group.shape[1] // 2 * 2, group.shape[0] // 2 * 2))
    return write_clip(tmp_path / "group.mp4", [group] * n, audio=False)


@needs_faces
@pytest.mark.parametrize("RESTORER", ["bank", "prior"])
def test_search_spread_over_frames_obfuscates_until_verified(tmp_path, RESTORER):
    src = _group_clip(tmp_path)
    o = Options(seed=1, codec="ffv1", audio=False, frame_log=True, restorer=RESTORER)
    p = FaceProcessor(o)
    p.guard.policy = dataclasses.replace(gd.POLICIES["balanced"], per_frame=2)  # as a live stream would run it
    seen, under_review = [], [None]
    real, real_review = p.guard.two.edge_similarity, p.guard.review

    def reviewing(frame, entries):  # the frame under review (reviews may run before earlier frames are written)
        under_review[0] = frame.index
        return real_review(frame, entries)

    def counting(faces, *a, **kw):  # every candidate goes through EdgeFace's quick pass (the chip) exactly once
        seen.extend([under_review[0]] * len(faces) if kw.get("full", True) is False else [])
        return real(faces, *a, **kw)
    p.guard.review = reviewing
    p.guard.two.edge_similarity = counting
    try:
        rep = deidentify(str(src), str(tmp_path / "o.mkv"), o, processor=p)
    finally:
        p.close()
    tracks = {t["id"]: t["privacy"] for t in rep["tracks"]}
    assert len(tracks) == 3
    assert max(seen.count(f) for f in set(seen)) <= 2 * len(tracks)  # at most 2 candidates per face per frame
    for fr in rep["frame_log"]:
        for f in fr["faces"]:
            pv = tracks[f["track"]]
            if f["status"] == "deidentified":  # handed back only once verified
                assert pv["status"] == "verified"
    # a track whose own candidates do not pass at once is still being searched: obfuscated meanwhile
    assert any(f["status"] == "fallback:privacy" for f in rep["frame_log"][0]["faces"])


@needs_faces
def test_a_choice_made_elsewhere_is_checked_and_kept(tmp_path):
    src = _group_clip(tmp_path, 3)
    o = Options(seed=2, codec="ffv1", audio=False)
    a = FaceProcessor(o)
    # what is tested is handing a choice on; a lenient EdgeFace bound lets today's renders be verified
    lenient = gd.Policy(tau=0.6, edge_max=0.6)
    a.guard.policy = lenient
    deidentify(str(src), str(tmp_path / "a.mkv"), o, processor=a)
    a.close()
    choices = {tid: a.guard.decision(tid) for tid in a.guard._tracks}
    verified = {tid: c for tid, c in choices.items() if c is not None}
    assert verified
    b = FaceProcessor(o)
    b.guard.policy = lenient
    for tid, c in verified.items():
        b.guard.preset(tid, a.guard._tracks[tid].seed, c)
    rep = deidentify(str(src), str(tmp_path / "b.mkv"), o, processor=b)
    b.close()
    for t in rep["tracks"]:
        if t["id"] in verified:
            assert b.guard.decision(t["id"]) == verified[t["id"]]
            assert t["privacy"]["searches"] == 0 and t["privacy"]["status"] == "verified"


# ---------------------------------------------------------------------- two recognizers, and the fallback
needs_portraits = pytest.mark.skipif(PORTRAITS is None, reason="public-domain portraits not found")
_portraits = build_portrait_faces


class DlibSeesSomeoneElse(TwoRecognizers):
    """Both recognizers are real; only dlib's reference for the person is another person's."""

    def __init__(self, other_rgb, other_lm):
        super().__init__()
        self.other = self.dlib.embed_chips(dlib_views(self.dlib, other_rgb, other_lm, full=False))[0]

    def person(self, rgb, landmarks, edge=None):
        _, edge = super().person(rgb, landmarks, edge)
        return self.other, edge


@needs_portraits
def test_a_face_only_dlib_would_let_through_is_refused():
    # sigma 0 and no restorer: every candidate IS the person. dlib compares it with someone else
    # (far: it would pass), EdgeFace with the person (near: it must not).
    other_rgb, other_lm = _portraits(1)[0]
    img = portrait()
    reports = {}
    for name, edge_max in (("both", None), ("dlib_only", 1.01)):
        p = FaceProcessor(Options(seed=1, scale=0.0, restorer="none", privacy="balanced"))
        p.guard.two = DlibSeesSomeoneElse(other_rgb, other_lm)
        if edge_max is not None:  # EdgeFace's bound switched off: what dlib alone decides
            p.guard.policy = dataclasses.replace(p.guard.policy, edge_max=edge_max, edge_margin=0.0)
        fr = frame_of(img)
        p.process(fr)
        reports[name] = p.report()["tracks"][0]["privacy"]
        p.close()
    alone, both = reports["dlib_only"], reports["both"]
    assert alone["status"] == "verified" and alone["distance"] >= 0.64  # dlib alone lets the person through
    assert alone["edgeface"] > 0.9  # while EdgeFace sees the same person
    assert both["status"] == "obfuscated" and both["fallback_why"] == {"no_candidate_passed": 1}
    assert both["best_candidate"]["edgeface"] > 0.9


def _mosaic_matches(faces, sizes, strength=0) -> tuple[float, float]:
    """Worst (dlib distance, EdgeFace similarity) of the default mosaic of each face at each size,
    against the person's own unscaled face, every view of both recognizers."""
    two = TwoRecognizers()
    worst_d, worst_s = 9.0, -1.0
    for rgb, lm in faces:
        dref, eref = two.person(rgb, lm)
        size0 = float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])))
        for size in sizes:
            k = size / size0
            small = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
            pts = lm * k
            out = gd.obfuscated(small, np.r_[pts.min(0), pts.max(0)], strength)
            # the attacker aligns on the true points: stronger than finding the face in the mosaic
            d, s = two.measure(out, pts, dref[None], eref[None])
            worst_d, worst_s = min(worst_d, d), max(worst_s, s)
    return worst_d, worst_s


@needs_portraits
def test_the_mosaic_is_among_different_people_for_both_recognizers_at_every_size():
    worst_d, worst_s = _mosaic_matches(_portraits(5, stride=97), (24, 32, 48, 64, 96, 128, 192, 256))
    assert worst_d >= 0.6 and worst_s <= gd.POLICIES["balanced"].edge_max, (worst_d, worst_s)


@needs_portraits
def test_the_default_mosaic_of_small_faces_holds_for_both_recognizers():
    # every face obfuscated for any reason (too small, no mesh, lost, an error, occluded) gets this
    # fill unchecked; small faces are where the previous 3-block mosaic was still matched
    # (tools/bench/bench_mosaic.py). 12 build portraits, including the one EdgeFace matched at 24-48 px
    # through the head's colour layout alone (B001244) and two whose dlib references sit at dlib's
    # floor for a face-less patch (U000031, M001194).
    from portrait_faces import PORTRAITS as folder, portrait_landmarks, read_rgb
    from ideud.stream.detect import make_detector

    det, mesh = make_detector("centerface"), fm.FaceMesh()
    faces = []
    for name in ("B001244.jpg", "U000031.jpg", "M001194.jpg"):
        rgb = read_rgb(folder / name)
        lm = None if rgb is None else portrait_landmarks(rgb, det, mesh)
        if lm is not None:
            faces.append((rgb, lm[:, :2]))
    mesh.close()
    faces += _portraits(9, stride=71)
    assert len(faces) >= 10
    worst_d, worst_s = _mosaic_matches(faces, (24, 32, 48))
    assert worst_d >= 0.6 and worst_s <= gd.POLICIES["balanced"].edge_max, (worst_d, worst_s)
    # the 3-block mosaic (the previous default) is what these faces were matched through: the test
    # can tell a weak obfuscation from a strong one
    two, edge_max = TwoRecognizers(), gd.POLICIES["balanced"].edge_max
    weak = []
    for rgb, lm in faces[:3]:
        dref, eref = two.person(rgb, lm)
        for size in (24, 32, 48):
            small, pts = _scaled(rgb, lm, size)
            d, s = two.measure(_three_block_mosaic(small, np.r_[pts.min(0), pts.max(0)]), pts, dref[None], eref[None])
            weak.append(d < 0.6 or s > edge_max)
    assert any(weak)


def _scaled(rgb, lm, size):
    k = size / float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])))
    return cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC), lm * k


def _three_block_mosaic(rgb, box, grow=0.25, noise=30.0):
    """The previous default (3 blocks across the face, fixed block noise, a blur of a third of a
    block), drawn on RGB: for comparison only."""
    w, h = box[2] - box[0], box[3] - box[1]
    x0, y0 = int(max(0, box[0] - grow * w)), int(max(0, box[1] - grow * h))
    x1, y1 = int(min(rgb.shape[1], box[2] + grow * w + 1)), int(min(rgb.shape[0], box[3] + grow * h + 1))
    region = rgb[y0:y1, x0:x1]
    block = max(2.0, max(w, h) / 3)
    gw, gh = max(1, round(region.shape[1] / block)), max(1, round(region.shape[0] / block))
    small = cv2.resize(region, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32)
    small += np.random.default_rng(12345).uniform(-noise, noise, (gh, gw))[..., None]
    big = cv2.resize(np.clip(small, 0, 255), region.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    big = cv2.GaussianBlur(big, (0, 0), block / 3.0) if block / 3.0 >= 0.8 else big
    out = rgb.copy()
    out[y0:y1, x0:x1] = np.clip(big + 0.5, 0, 255).astype(np.uint8)
    return out


@needs_portraits
def test_a_mosaic_a_recognizer_still_matches_is_made_stronger():
    rgb, lm = _portraits(1, stride=61)[0]
    box = np.r_[lm.min(0), lm.max(0)]
    g = gd.PrivacyGuard("balanced", identity=None, restorer=None)
    # the person's real references: the default mosaic already holds
    real = gd._Track(seed=1)
    d, e = g.two.person(rgb, lm)
    real.refs, real.edge_refs = [d], [e]
    g._verify_mosaic(real, rgb, lm)
    assert real.mosaic == 0 and real.mosaic_check[0] >= 0.6
    # references that the default mosaic matches (taken from that mosaic itself): escalated
    matched = gd._Track(seed=1)
    d, e = g.two.person(gd.obfuscated(rgb, box, 0), lm)
    matched.refs, matched.edge_refs = [d], [e]
    g._verify_mosaic(matched, rgb, lm)
    assert matched.mosaic >= 1
    dist, sim = matched.mosaic_check  # where it stopped: passing both, or the last (a solid fill)
    assert matched.mosaic == bl.OBFUSCATION_LEVELS - 1 or (dist >= 0.6 and sim <= g.policy.edge_max)


def test_more_of_the_face_left_original_for_an_occluder_is_checked_again():
    # a verified track where only the share of the face the occlusion stage leaves original changes:
    # a misread occluder would leave the person's own face there, so the guard looks again
    from ideud.stream.identity import IdentityStage
    from ideud.stream.types import Crop, Rendered, Rendering

    g = gd.PrivacyGuard("balanced", identity=IdentityStage(), restorer=None)
    lm = np.zeros((468, 3))
    lm[:, :2] = np.random.default_rng(0).uniform(0, 100, (468, 2))
    st = gd._Track(seed=1, status="verified", last_pose=(0.0, 0.0), last_size=float(np.ptp(lm[:, :2], 0).max()))
    r = Rendering(landmarks=lm, target=lm[:, :2], visible=np.ones(468, bool), codes=None, yaw=0.0, pitch=0.0)
    out = Rendered(crop=Crop(0, 0, 100, 100), image=np.zeros((100, 100, 3), np.uint8),
                   mask=np.ones((100, 100), np.float32), target=lm[:, :2], occluded=0.05)
    assert not g._due(st, 1, r, out)
    out.occluded = 0.3
    assert g._due(st, 1, r, out)
    st.last_occluded = 0.3  # what a check at that frame records
    out.occluded = 0.35
    assert not g._due(st, 1, r, out)
