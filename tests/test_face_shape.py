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


def build_script(name: str = "build_face_shape"):
    """tools/build/NAME.py from the checkout (build scripts are not in the wheel)."""
    sys.path.insert(0, str(BUILD))
    spec = importlib.util.spec_from_file_location(name, BUILD / f"{name}.py")
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
    assert stats["modes"] == "portraits"
    # the ICT-FaceKit modes instead (measured, not shipped): reproducible too, and another model
    c, ict = mod.build(tmp_path / "c.npz", limit=24, cache=tmp_path / "lm.npz", components=6, log=lambda *_: None,
                       basis="ict")
    d, _ = mod.build(tmp_path / "d.npz", limit=24, cache=tmp_path / "lm.npz", components=6, log=lambda *_: None,
                     basis="ict")
    assert c == d and c != a and ict["modes"] == "ict" and fsh.load(tmp_path / "c.npz").k == 6


def test_ict_facekit_modes_make_a_shape_model_in_the_canonical_frame(tmp_path):
    """tools/build/data/ict_identity_468.npz (registered from ICT-FaceKit) drawn around the portraits'
    mean: orthonormal modes in decreasing spread, faces a fit gives back, a damaged file refused."""
    reg = build_script("register_ict_facekit")
    modes = reg.load_modes()
    assert modes.shape == (100, 468, 3) and 1.0 < np.abs(modes).max() < 20.0  # millimetres
    m = fsh.default_shape()
    ict = fsh.fit_ict(m.mean, modes, 8, samples=2000)
    basis, sd = ict["basis"].astype(np.float64), ict["sd"].astype(np.float64)
    assert np.allclose(basis @ basis.T, np.eye(8), atol=1e-5) and np.all(np.diff(sd) <= 0) and sd[0] > 10.0
    face = (m.mean + (np.random.default_rng(3).normal(0.0, 1.0, 8) * sd) @ basis).reshape(-1, 3)
    assert 1.0 < np.abs(face - m.mean.reshape(-1, 3)).max() < 25.0
    _, _, _, again = mh.to_canonical(1.7 * face + [40.0, -3.0, 5.0])
    assert np.abs(again - face).max() < 1.0  # aligned like a portrait: pose and size are no identity
    with np.load(reg.MODES_FILE) as z:
        bad = {k: z[k] for k in z.files}
    bad["modes"] = bad["modes"] * 1.01
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError):
        reg.load_modes(tmp_path / "bad.npz")


def _write_obj(path: Path, verts: np.ndarray, tris: np.ndarray) -> None:
    path.write_text("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts)
                    + "".join(f"f {a + 1}/1 {b + 1}/1 {c + 1}/1\n" for a, b, c in tris))


def _subdivided_canonical() -> tuple[np.ndarray, np.ndarray]:
    """The canonical face with every triangle cut in four (its points, then the edges' midpoints)."""
    canon = mh.canonical()
    verts, edges, tris = list(canon), {}, []

    def mid(a, b):
        key = (min(a, b), max(a, b))
        if key not in edges:
            edges[key] = len(verts)
            verts.append((canon[a] + canon[b]) / 2)
        return edges[key]

    for a, b, c in mh.triangles():
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        tris += [(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)]
    return np.array(verts), np.array(tris)


def _smooth_modes(q: np.ndarray) -> np.ndarray:
    """Three smooth displacement fields (mm) of positions q (N, 3)."""
    x, y = q[:, 0] / 60.0, q[:, 1] / 60.0
    zero = 0 * x
    return np.stack([np.stack([4.0 * np.sin(y), zero, zero], 1), np.stack([zero, 3.0 * x * x, zero], 1),
                     np.stack([zero, zero, 5.0 * np.cos(x)], 1)])


def test_registration_reads_a_facekit_and_recovers_its_modes_on_its_surface(tmp_path, monkeypatch):
    """A synthetic ICT-FaceKit: the canonical face subdivided, in ICT's axes (y up, z to the viewer),
    units (cm) and place, its neutral moved off by one of its own modes. Registered on points of its
    surface that are no vertices (the triangles' centres), the modes read there must be the fields'."""
    mod = build_script("register_ict_facekit")
    dense, tris = _subdivided_canonical()
    modes = _smooth_modes(dense)
    neutral = dense + 0.8 * modes[1]
    to_ict = lambda a: (a @ mod.TO_CANONICAL) / 10.0 + np.array([1.0, 15.0, -3.0])  # noqa: E731
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    _write_obj(folder / "generic_neutral_mesh.obj", to_ict(neutral), tris)
    for i, mode in enumerate(modes):
        _write_obj(folder / f"identity{i:03d}.obj", to_ict(neutral + mode), tris)
    monkeypatch.setattr(mod, "FACE_VERTICES", len(dense))
    monkeypatch.setattr(mod, "NARROW_VERTICES", len(dense))
    monkeypatch.setattr(mod, "MODES", len(modes))
    got_neutral, got_modes, got_tris = mod.read_facekit(tmp_path)
    assert np.allclose(got_modes * 10.0, modes, atol=1e-4) and np.array_equal(got_tris, tris)  # canonical axes
    target = mh.canonical()[mh.triangles()].mean(1)
    at_points, stats = mod.register(got_neutral, got_modes, got_tris, target)
    assert stats["rms_mm"] < 0.1 and abs(stats["scale_to_mm"] - 10.0) < 0.05
    assert np.abs(at_points - _smooth_modes(target)).max() < 0.1  # of fields up to 5 mm
    with pytest.raises(FileNotFoundError):
        mod.read_facekit(tmp_path / "nowhere")
