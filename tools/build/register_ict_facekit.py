"""ICT-FaceKit's 100 identity modes at FaceMesh's 468 points (tools/build/data/ict_identity_468.npz).

Developer tool: `python tools/build/register_ict_facekit.py ICT_FACEKIT_DIR [--out OUT.npz]`, where
ICT_FACEKIT_DIR is a checkout of the public repository ICT-VGL/ICT-FaceKit (MIT licence; its
`FaceXModel/generic_neutral_mesh.obj` and `identity000.obj` ... `identity099.obj` are read).

ICT-FaceKit is a morphable head from 3D scans: a neutral mesh and 100 identity shapes, each the
neutral moved by one PCA mode (weights ~ N(0, 1)). FaceMesh's 468 points are registered on it once:

1. Only the face area (vertices 0-9408, ICT-FaceKit's README) is used, turned into the canonical
   frame (y down, z away from the camera: a half turn about x) and placed on the canonical face
   (models/data/canonical_face.npy, millimetres) by its centroid and width.
2. Each canonical point's closest point on the mesh's triangles (barycentric weights) and a
   similarity fit of those onto the canonical points, repeated (ICP); then also ICT's own identity weights
   fitted (ridge) so that the registered neutral takes the canonical face's shape -- the two average
   faces differ (lip height, nose length, depth), and a point should land where the same feature is.
3. Each mode is read at the final correspondences, in millimetres in the canonical frame.

Only the modes at 468 points leave this script (no mesh, no texture). Deterministic: the same
checkout gives the same file (content hash stored and printed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.spatial import cKDTree

from ideud.models import meshhead as mh
from ideud.models import model_file
from ideud.models.geometry import similarity_fit

MODES_FILE = Path(__file__).resolve().parent / "data" / "ict_identity_468.npz"
ARRAYS = ("modes",)
FACE_VERTICES = 9409  # ICT-FaceKit's "Full face area", vertices [0:9408]
NARROW_VERTICES = 6706  # its "Narrow face area": what FaceMesh covers, for the first placement
MODES = 100
NEAREST = 6  # vertices around which a point's closest triangle is looked for
TRIM = 90  # percentile of correspondence distances used by each similarity fit (outline points overhang)
RIDGE = 50.0  # on ICT's own identity weights while the neutral is fitted to the canonical face
WEIGHT_MAX = 2.5
RIGID_ITERATIONS = 100  # similarity only, before ICP with the weights
ITERATIONS = 40
TO_CANONICAL = np.diag([1.0, -1.0, -1.0])  # ICT: y up, z towards the viewer


def read_obj(path: Path, count: Optional[int] = None, triangles: bool = False):
    """The first `count` (default: the face area's) vertex positions of a Wavefront OBJ file, in one
    pass; with `triangles`, also (T, 3) vertex indices of the polygons (fanned into triangles) that use
    only those vertices -> (vertices, triangles). Without, it stops reading after the last vertex."""
    count = FACE_VERTICES if count is None else count
    rows, tris = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("v ") and len(rows) < count:
                rows.append(line.split()[1:4])
                if len(rows) == count and not triangles:
                    break
            elif triangles and line.startswith("f "):
                idx = [int(v.split("/")[0]) - 1 for v in line.split()[1:]]
                if max(idx) < count:
                    tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
    if len(rows) < count:
        raise RuntimeError(f"{path}: {len(rows)} vertices, expected at least {count}")
    if triangles and not tris:
        raise RuntimeError(f"{path}: no polygons on the first {count} vertices")
    verts = np.asarray(rows, np.float64)
    return (verts, np.asarray(tris, np.int64)) if triangles else verts


def read_facekit(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neutral (V, 3), modes (100, V, 3), triangles (T, 3)) of the face area, in the canonical frame's axes."""
    model = Path(folder) / "FaceXModel"
    if not (model / "generic_neutral_mesh.obj").is_file():
        raise FileNotFoundError(f"no ICT-FaceKit checkout at {folder} (FaceXModel/generic_neutral_mesh.obj missing)")
    neutral, tris = read_obj(model / "generic_neutral_mesh.obj", triangles=True)
    modes = np.stack([read_obj(model / f"identity{i:03d}.obj") - neutral for i in range(MODES)])
    return neutral @ TO_CANONICAL, modes @ TO_CANONICAL, tris


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of the point of each triangle abc closest to p (Ericson's regions)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    den = np.maximum(va + vb + vc, 1e-18)
    out = np.stack([va / den, vb / den, vc / den], -1)  # inside the face; the regions below in reverse
    # order of precedence (the last one that holds is kept)
    eps = 1e-18

    def put(mask, wa, wb, wc):
        out[mask] = np.stack([wa, wb, wc], -1)[mask]

    one, zero = np.ones_like(d1), np.zeros_like(d1)
    t_bc = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), eps)
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zero, 1 - t_bc, t_bc)  # edge bc
    t_ac = d2 / np.maximum(d2 - d6, eps)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)  # edge ac
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)  # vertex c
    t_ab = d1 / np.maximum(d1 - d3, eps)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)  # edge ab
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)  # vertex b
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)  # vertex a
    return out


def _surface(mesh: np.ndarray, tris: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, its closest point on the mesh: the triangle's 3 vertex indices and barycentric
    weights, searched among the triangles around its NEAREST vertices."""
    _, near = cKDTree(mesh).query(points, k=NEAREST)
    order = np.argsort(tris.ravel(), kind="stable")  # vertex -> the triangles it is in
    starts = np.searchsorted(tris.ravel()[order], np.arange(len(mesh) + 1))
    best_j, best_w = np.zeros((len(points), 3), np.int64), np.zeros((len(points), 3))
    for i, p in enumerate(points):
        cand = np.unique(np.concatenate([order[starts[v]:starts[v + 1]] // 3 for v in near[i]]))
        t = tris[cand]
        bw = _closest_on_triangles(p, mesh[t[:, 0]], mesh[t[:, 1]], mesh[t[:, 2]])
        q = np.einsum("tk,tkd->td", bw, mesh[t])
        k = int(np.argmin(((q - p) ** 2).sum(1)))
        best_j[i], best_w[i] = t[k], bw[k]
    return best_j, best_w


def register(neutral: np.ndarray, modes: np.ndarray, tris: np.ndarray, target: np.ndarray,
             iterations: int = ITERATIONS) -> tuple[np.ndarray, dict]:
    """The modes (K, len(target), 3) at the target points, after placing the mesh on them (module doc)."""
    narrow = neutral[:NARROW_VERTICES]
    scale = np.ptp(target[:, 0]) / np.ptp(narrow[:, 0])
    mesh = neutral * scale + (target.mean(0) - scale * narrow.mean(0))
    modes = modes * scale
    weights = np.zeros(len(modes))
    total = scale  # ICT's units -> millimetres
    for i in range(RIGID_ITERATIONS + iterations):
        j, w = _surface(mesh + np.tensordot(weights, modes, 1), tris, target)
        now = ((mesh + np.tensordot(weights, modes, 1))[j] * w[..., None]).sum(1)
        gap = np.linalg.norm(target - now, axis=1)
        keep = gap <= np.percentile(gap, TRIM)
        s, rot, t = similarity_fit(now[keep], target[keep])
        mesh = s * mesh @ rot.T + t
        modes = s * np.einsum("knj,ij->kni", modes, rot)
        total *= s
        if i < RIGID_ITERATIONS:
            continue  # placed first: the weights could otherwise stand in for a shift or a scale
        now = ((mesh + np.tensordot(weights, modes, 1))[j] * w[..., None]).sum(1)
        a = (modes[:, j] * w[None, ..., None]).sum(2).reshape(len(modes), -1).T  # d(points)/d(weights)
        step = np.linalg.solve(a.T @ a + RIDGE * np.eye(len(modes)), a.T @ (target - now).ravel())
        weights = np.clip(weights + step, -WEIGHT_MAX, WEIGHT_MAX)
    j, w = _surface(mesh + np.tensordot(weights, modes, 1), tris, target)
    now = ((mesh + np.tensordot(weights, modes, 1))[j] * w[..., None]).sum(1)
    at_points = (modes[:, j] * w[None, ..., None]).sum(2)
    gap = np.linalg.norm(target - now, axis=1)
    stats = {"rms_mm": round(float(np.sqrt((gap ** 2).mean())), 3), "p95_mm": round(float(np.percentile(gap, 95)), 3),
             "max_mm": round(float(gap.max()), 3), "scale_to_mm": round(float(total), 4),
             "weight_max": round(float(np.abs(weights).max()), 3)}
    return at_points, stats


def build(facekit: Path, out: Path, log=print) -> tuple[str, dict]:
    neutral, modes, tris = read_facekit(facekit)
    at_points, stats = register(neutral, modes, tris, mh.canonical())
    arrays = {"modes": at_points.astype(np.float32)}
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = model_file.save(arrays, ARRAYS, out, {"source": "ICT-FaceKit (github.com/ICT-VGL/ICT-FaceKit, MIT licence): "
                                                  "identity000-099 at FaceMesh's 468 points"})
    log(f"ICT-FaceKit modes at FaceMesh's points: {stats}; content hash {digest[:16]}; {out}")
    return digest, stats


def load_modes(path: Path = MODES_FILE) -> np.ndarray:
    """The registered modes (M, 468, 3), millimetres, canonical frame; ValueError if the file is damaged."""
    arrays, _ = model_file.load(ARRAYS, path, what="ICT-FaceKit modes")
    return arrays["modes"].astype(np.float64)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="register_ict_facekit", description=__doc__.splitlines()[0])
    ap.add_argument("facekit", type=Path, help="a checkout of github.com/ICT-VGL/ICT-FaceKit")
    ap.add_argument("--out", type=Path, default=MODES_FILE)
    args = ap.parse_args(argv)
    try:
        build(args.facekit, args.out)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"register_ict_facekit: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
