"""EdgeFace, the guard's second recognizer: the shipped ONNX against our torch load of the published
weights, and what it says about real portraits (build split only; never the held-out ones)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from portrait_faces import PORTRAITS, build_portrait_faces

from ideud.eval.portraits import build_names, held_out_names
from ideud.models import edgeface as ef
from ideud.models.recognizers import edge_views

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "models" / "edgeface" / "edgeface_xs_q.pt"


@pytest.fixture(scope="module")
def faces():
    """(rgb, 468 points) of 12 build portraits spread over the list."""
    if PORTRAITS is None:
        pytest.skip("public-domain portraits not found")
    out = build_portrait_faces(12, stride=53)
    assert len(out) >= 10
    return out


def test_onnx_and_calibration_ship_in_the_package():
    assert ef.ONNX_PATH.is_file() and ef.CALIBRATION_PATH.is_file()
    cal = ef.calibration()
    assert cal["split"] == "build_names" and cal["portraits"] >= 600
    t = cal["thresholds"]
    assert t["balanced"] == cal["impostor"]["p99"] and t["strict"] == cal["impostor"]["p95"]
    assert t["strict"] < t["balanced"] < 0.5  # strict calls more faces "the same person"
    assert cal["genuine_worst_view"]["p1"] > t["balanced"] + 0.3
    assert cal["onnx_vs_torch_max_abs_diff"] < 1e-4


def test_runs_without_torch():
    code = ("import sys, numpy as np; from ideud.models import edgeface as ef; "
            "e = ef.EdgeFace().embed_chips(np.zeros((2, 112, 112, 3), np.uint8)); "
            "assert e.shape == (2, 512) and abs(np.linalg.norm(e[0]) - 1) < 1e-4; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_onnx_matches_our_torch_load_of_the_published_weights(faces):
    torch = pytest.importorskip("torch")
    if not WEIGHTS.is_file():
        pytest.skip(f"{WEIGHTS} not found")
    state = ef.load_state(WEIGHTS)
    assert ef.arch_of(state) == {"dims": [32, 64, 100, 192], "depths": [3, 3, 9, 3], "splits": [0, 2, 3, 4]}
    chips = np.stack([ef.align(rgb, ef_points(lm)) for rgb, lm in faces])
    x = ef.normalise(chips)
    with torch.no_grad():
        ref = ef.forward(state, torch.from_numpy(x)).numpy()
    sess = ef.EdgeFace()._get()
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(ref - got).max())
    print(f"EdgeFace ONNX vs torch: max abs diff {diff:.2e} (outputs up to {np.abs(ref).max():.2f})")
    assert diff < 1e-4


def ef_points(lm):
    from ideud.models.face_align import five_points_from_facemesh

    return five_points_from_facemesh(lm)


def test_two_threads_give_the_same_embeddings_bit_for_bit(faces):
    """The guard's sessions run on two threads where the machine has them (models/onnx_cpu.py): its
    decisions, so the output, must not depend on that."""
    chips = np.stack([v for rgb, lm in faces[:4] for v in edge_views(rgb, lm)])
    one, two = ef.EdgeFace(threads=1).embed_chips(chips), ef.EdgeFace(threads=2).embed_chips(chips)
    assert np.array_equal(one, two)


def test_impostors_are_far_and_views_of_one_photo_are_near(faces):
    model = ef.EdgeFace()
    thr = model.threshold("balanced")
    views = [model.embed_chips(np.stack(edge_views(rgb, lm))) for rgb, lm in faces]
    base = np.stack([v[0] for v in views])
    sim = base @ base.T
    impostor = sim[np.triu_indices(len(faces), 1)]
    genuine = np.array([v[1:] @ v[0] for v in views])  # mirror, +-5 % scale, shift, JPEG of one photo
    assert impostor.mean() < 0.1 and impostor.max() < 0.45, impostor
    assert genuine.min() > 0.6 and genuine.mean() > 0.9, genuine
    assert (impostor > thr).mean() <= 0.05  # the 99th percentile, give or take a small sample


def test_calibration_never_saw_the_held_out_portraits():
    if PORTRAITS is None:
        pytest.skip("public-domain portraits not found")
    held, built = set(held_out_names(PORTRAITS)), set(build_names(PORTRAITS))
    assert held and not held & built
    assert ef.calibration()["portraits"] <= len(built)
