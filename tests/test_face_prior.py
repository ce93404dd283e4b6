"""The face-appearance prior (models/face_prior.py) and its restorer (stream/restore_prior.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ideud.eval.portraits import build_names, held_out_names, portraits_dir
from ideud.models import face_prior as fp
from ideud.stream.types import RestoreItem
from report_checks import assert_no_way_back

PORTRAITS = portraits_dir()
needs_portraits = pytest.mark.skipif(PORTRAITS is None, reason="shared portraits not found")


def build_script():
    """tools/build/build_face_prior.py from the checkout (build scripts are not in the wheel)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "build" / "build_face_prior.py"
    spec = importlib.util.spec_from_file_location("build_face_prior", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def faces():
    """Two held-out portraits with their FaceMesh landmarks (measured on, never built from)."""
    if PORTRAITS is None:
        pytest.skip("shared portraits not found")
    import cv2

    portrait_landmarks = build_script().portrait_landmarks

    names = held_out_names(PORTRAITS)[:2]
    marks = portrait_landmarks([PORTRAITS / n for n in names])
    out = []
    for n in names:
        rgb = np.ascontiguousarray(cv2.imread(str(PORTRAITS / n))[:, :, ::-1])
        out.append((rgb, marks[n]))
    return out


def item(rgb, lm, seed, track=1, level=0):
    return RestoreItem(image=rgb, original=rgb, mask=np.ones(rgb.shape[:2], np.float32), landmarks=lm,
                       track_id=track, seed=seed, level=level)


def face_diff(a, b, lm) -> float:
    """Mean absolute difference inside the face oval."""
    region = fp.face_region(lm, a.shape[:2], fp.face_width(lm)) > 0.5
    return float(np.abs(a.astype(float) - b.astype(float))[region].mean())


def test_shipped_model_loads_and_is_small():
    prior = fp.default_prior()
    path = Path(fp.__file__).parent / "data" / "face_prior.npz"
    assert path.stat().st_size < 10e6
    assert prior.basis.shape == (prior.k, prior.mean.size)
    assert prior.k >= 50 and len(prior.donor_codes) >= fp.MIN_DONORS
    assert prior.digest == fp.digest({n: np.load(path)[n] for n in fp.ARRAYS})


@needs_portraits
def test_build_is_reproducible(tmp_path):
    build = build_script().build

    names = build_names(PORTRAITS)
    assert not set(names) & set(held_out_names(PORTRAITS))
    a, stats = build(tmp_path / "a.npz", limit=14, components=6, log=lambda *_: None)
    b, _ = build(tmp_path / "b.npz", limit=14, components=6, log=lambda *_: None)
    assert a == b
    assert hashlib.sha256((tmp_path / "a.npz").read_bytes()).digest() == \
        hashlib.sha256((tmp_path / "b.npz").read_bytes()).digest()
    assert stats["portraits"] == 14 and stats["basis"] >= 5
    assert fp.load(tmp_path / "a.npz").digest == a


def test_sigma_zero_returns_own_code_within_reconstruction_error(faces):
    from ideud.stream.restore_prior import PriorRestorer

    rgb, lm = faces[0]
    prior = fp.default_prior()
    own = fp.canvas_reflectance(rgb, lm)
    z = prior.encode(own)
    restorer = PriorRestorer(sigma=0.0)
    t = restorer.target(item(rgb, lm, seed=7))
    np.testing.assert_allclose(t, z, atol=1e-5)
    # decoding it gives the person's reflectance up to what the basis cannot hold
    recon = np.linalg.norm(prior.decode(t) - own)
    assert recon < 0.75 * np.linalg.norm(own - prior.mean)
    # and the picture stays much closer to the person than the default (σ = 0.25) new face
    same = restorer.restore([item(rgb, lm, seed=7)])[0]
    new = PriorRestorer().restore([item(rgb, lm, seed=7)])[0]
    assert face_diff(same, rgb, lm) < 0.5 * face_diff(new, rgb, lm)


def test_same_seed_same_face_different_seeds_different_faces(faces):
    from ideud.stream.restore_prior import PriorRestorer

    rgb, lm = faces[0]
    r = PriorRestorer()
    first = r.restore([item(rgb, lm, seed=11)])[0]
    # a later frame of the same track: a little brighter, the landmarks a pixel off
    later = np.clip(rgb.astype(int) + 4, 0, 255).astype(np.uint8)
    again = r.restore([item(later, lm + 0.7, seed=11)])[0]
    # other seeds: the median of a few (one pair alone can land on two alike faces: all share the
    # person's facial hair and brows, face_prior.pick_farthest)
    others = [r.restore([item(rgb, lm, seed=s, track=s)])[0] for s in range(12, 17)]
    assert np.array_equal(r.target(item(later, lm + 0.7, seed=11)), r.target(item(rgb, lm, seed=11)))
    assert face_diff(first, again, lm) < 6.0
    assert np.median([face_diff(first, o, lm) for o in others]) > 2 * face_diff(first, again, lm)
    # a fresh restorer (another process) makes the same face for the same seed
    assert np.array_equal(PriorRestorer().restore([item(rgb, lm, seed=11)])[0], first)
    # two people under one seed still get different new faces' codes apart from each other
    t1 = fp.target_code(None, 11, 0.25, 120)
    t2 = fp.target_code(None, 12, 0.25, 120)
    assert np.linalg.norm(t1 - t2) > 5.0


def test_no_donor_is_used_alone():
    from ideud.stream.restore_prior import PriorRestorer

    prior = fp.default_prior()
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = rng.standard_normal(prior.k).astype(np.float32)
        idx, w = prior.donors_for(z)
        assert len(set(idx.tolist())) >= fp.MIN_DONORS
        assert w.max() / w.sum() <= 1.0 / fp.MIN_DONORS + 1e-6
        # the detail is exactly that mix, not one donor's
        mix = (w[:, None] * prior.donor_detail[idx].astype(np.float32)).sum(0)
        np.testing.assert_allclose(prior.detail(z), mix, atol=1e-5)
        for i in idx:
            assert np.linalg.norm(prior.detail(z) - prior.donor_detail[i].astype(np.float32)) > 0
    with pytest.raises(ValueError):
        prior.donors_for(np.zeros(prior.k, np.float32), k=2)
    with pytest.raises(ValueError):
        PriorRestorer(donors=1)


def test_new_face_code_holds_nothing_of_the_person(faces):
    """At the default σ the target is one of the seed's own prior draws: the person's code is not in it."""
    from ideud.stream.restore_prior import PriorRestorer

    prior = fp.default_prior()
    r = PriorRestorer()
    for k, (rgb, lm) in enumerate(faces):
        t = r.target(item(rgb, lm, seed=5, track=k))
        draws = [fp.sample_code(5, prior.k, i) for i in range(r.candidates)]
        assert any(np.array_equal(t, d) for d in draws)
    assert all("track" in line and "[" not in line for line in r.log)


def clean_shaven_code(prior) -> np.ndarray:
    """A synthetic person: the mean face with no moustache, beard or brow darkness to speak of
    (1.5 prior SDs lighter there than the mean face, which is mostly men's)."""
    return (-1.5 * prior.trait_axes.sum(0) / np.linalg.norm(prior.trait_axes.sum(0))).astype(np.float32)


def test_new_face_shares_the_persons_facial_hair_and_brows():
    """A person without moustache darkness never gets a candidate with a strong one when a compatible
    candidate is among the seed's draws; among the compatible ones the farthest is taken."""
    prior = fp.default_prior()
    z, axes, tol = clean_shaven_code(prior), prior.trait_axes, np.broadcast_to(fp.TRAIT_TOL, (len(fp.TRAITS),))
    checked = old_mismatched = 0
    for seed in range(30):
        cands = np.stack([fp.sample_code(seed, prior.k, i) for i in range(32)])
        off = np.abs((cands - z) @ axes.T) / tol
        ok = (off <= 1.0).all(1)
        if ok.sum() < fp.TRAIT_KEEP:
            continue
        checked += 1
        pick = fp.pick_farthest(z, seed, prior.k, 32, trait_axes=axes)
        assert ok[pick], seed
        dist = np.linalg.norm(cands - z, axis=1)
        assert dist[pick] == dist[ok].max()
        assert fp.pick_farthest(z, seed, prior.k, 32, trait_axes=axes) == pick  # a pure function of z and seed
        t = fp.target_code(z, seed, 0.25, prior.k, 32, trait_axes=axes)
        assert np.array_equal(t, cands[pick])
        old_mismatched += not ok[fp.pick_farthest(z, seed, prior.k, 32)]
    assert checked >= 5
    assert old_mismatched >= checked // 2  # the farthest whatever its traits: mostly a darker, male face
    # none compatible: the closest few in traits are kept, the farthest of them taken
    few = fp.pick_farthest(z, 3, prior.k, 32, trait_axes=axes, tol=1e-6)
    cands = np.stack([fp.sample_code(3, prior.k, i) for i in range(32)])
    closest = np.argsort(np.abs((cands - z) @ axes.T).max(1), kind="stable")[:fp.TRAIT_KEEP]
    assert few in closest


def test_trait_axes_are_the_decoded_faces_darkness():
    """trait_axes is the linear map of a code to its decoded face's darkness (in prior SDs)."""
    prior = fp.default_prior()
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, prior.k)).astype(np.float32)
    lin = (prior.traits(prior.decode(z1)) - prior.traits(prior.decode(z2)))
    scale = np.linalg.norm((fp.trait_weights() @ prior.basis.T) * prior.sd, axis=1)
    np.testing.assert_allclose(lin / scale, prior.trait_axes @ (z1 - z2), rtol=1e-3, atol=1e-4)


def test_escalated_faces_hold_nothing_of_the_person_either(faces):
    """Every privacy-guard escalation level takes its new face from the seed's own draws too (no share
    of the person's code subtracted: mirroring the output's code would bring that share back); a
    higher level only widens the shading scale, so less of the person's mid-scale shading stays."""
    from ideud.stream import restore_prior as rp

    prior = fp.default_prior()
    r = rp.PriorRestorer()
    rgb, lm = faces[0]
    draws = [fp.sample_code(5, prior.k, i) for i in range(r.candidates)]
    outs = []
    for level in range(len(rp.LEVEL_SIGMA_LOW)):
        t = r.target(item(rgb, lm, seed=5, level=level))
        assert any(np.array_equal(t, d) for d in draws), level
        outs.append(r.restore([item(rgb, lm, seed=5, level=level)])[0])
    assert list(rp.LEVEL_SIGMA_LOW) == sorted(rp.LEVEL_SIGMA_LOW)
    # the same new face's code at every level: what differs is the person's shading kept, less and
    # less of it (held-out portrait: 0, 4.3, 7.1, 11.5, 14.6 grey levels from level 0's face)
    apart = [face_diff(outs[0], o, lm) for o in outs[1:]]
    assert apart[0] > 1.0 and all(b > a for a, b in zip(apart, apart[1:]))


@needs_portraits
def test_pipeline_report_holds_no_code_of_the_person(tmp_path, faces):
    from ideud.stream.pipeline import Options, deidentify
    from ideud.stream.restore import make_restorer

    assert make_restorer("prior").name == "prior"
    src = PORTRAITS / held_out_names(PORTRAITS)[0]
    dst = tmp_path / "out.png"
    rep = deidentify(str(src), str(dst), Options(seed=3, restorer="prior", privacy="off", force=True,
                                                 audio=False, frame_log=True))
    assert rep["face_frames"] == 1 and dst.exists()
    text = json.dumps(rep, default=str)

    def long_float_lists(x):
        if isinstance(x, list):
            if len(x) >= 16 and all(isinstance(v, float) for v in x):
                yield x
            for v in x:
                yield from long_float_lists(v)
        elif isinstance(x, dict):
            for v in x.values():  # the track's noise too: with it Step I could be undone
                yield from long_float_lists(v)

    assert not list(long_float_lists(json.loads(text)))
    assert_no_way_back(rep)  # nor a seed, a perturbation or any code-sized list
    import cv2

    out = cv2.imread(str(dst))[:, :, ::-1]
    rgb, lm = faces[0]
    assert out.shape == rgb.shape and face_diff(out, rgb, lm) > 4.0
