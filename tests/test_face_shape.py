"""The learned 3D face-shape model (models/face_shape.py) and its build (tools/build/build_face_shape.py)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ideud.eval.portraits import build_names, held_out_names, portraits_dir
from ideud.models import face_shape as fsh
from ideud.models import meshhead as mh

PORTRAITS = portraits_dir()
BUILD = Path(__file__).resolve().parents[1] / "tools" / "build"


def build_script():
    """tools/build/build_face_shape.py from the checkout (build scripts are not in the wheel)."""
    sys.path.insert(0, str(BUILD))
    spec = importlib.util.spec_from_file_location("build_face_shape", BUILD / "build_face_shape.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_model_loads_and_is_a_face():
    m = fsh.default_shape()
    assert m.k == fsh.COMPONENTS and np.all(np.diff(m.sd) <= 0)
    mean = m.shape(np.zeros(m.k))
    # the portraits' mean face, aligned to the canonical face: close to it (mm)
    assert np.sqrt(((mean - mh.canonical()) ** 2).sum(1).mean()) < 5.0
    # closing a mouth moves the lips together and leaves the eyes alone
    from ideud.models import facemesh as fm
    opened = mean.copy()
    opened[[fm.LOWER_LIP_INNER, fm.LOWER_LIP_BOTTOM, fm.CHIN]] += [0, 8, 0]
    shut = m.closed(opened)
    assert fsh.gap_mm(shut) == pytest.approx(m.gap_closed, abs=1.5)
    assert np.abs(shut[fm.LEFT_EYE_INNER] - mean[fm.LEFT_EYE_INNER]).max() < 1.0
    # orthonormal modes: a code goes to a shape and back
    z = np.random.default_rng(1).normal(size=m.k)
    assert np.allclose(m.code(m.shape(z)), z, atol=1e-4)


def test_corrupt_model_is_refused(tmp_path):
    m = fsh.default_shape()
    arrays = {"mean": m.mean.astype(np.float32), "basis": m.basis.astype(np.float32), "sd": m.sd.astype(np.float32),
              "open_dir": m.open_dir.astype(np.float32), "gap_closed": np.float32(m.gap_closed)}
    path = tmp_path / "s.npz"
    fsh.save(arrays, path, {})
    assert fsh.load(path).digest == fsh.digest(arrays)
    with np.load(path) as z:
        bad = {k: z[k] for k in z.files}
    bad["sd"] = bad["sd"] * 1.01
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError):
        fsh.load(tmp_path / "bad.npz")


@pytest.mark.skipif(PORTRAITS is None, reason="shared portraits not found")
def test_build_is_reproducible_and_reads_no_held_out_portrait(tmp_path, monkeypatch):
    mod = build_script()
    read = []
    real = mod.portrait_landmarks

    def spy(paths, cache=None, dims=2):
        read.extend(p.name for p in paths)
        return real(paths, cache, dims)

    monkeypatch.setattr(mod, "portrait_landmarks", spy)
    a, stats = mod.build(tmp_path / "a.npz", limit=24, components=6, log=lambda *_: None)
    b, _ = mod.build(tmp_path / "b.npz", limit=24, components=6, log=lambda *_: None)
    assert a == b and (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert fsh.load(tmp_path / "a.npz").digest == a and stats["components"] == 6 and stats["basis"] >= 8
    assert read and not set(read) & set(held_out_names(PORTRAITS)) and set(read) <= set(build_names(PORTRAITS))
