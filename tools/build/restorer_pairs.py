"""Training pairs for the learned Step II (models/restorer_net.py), made the way the method makes them.

Developer tool: `python tools/build/restorer_pairs.py --out PAIRS.npz [--limit N] [--cache LM.npz]`.

For each *build* portrait (ideud.eval.portraits.build_names; the held-out ones are never used):
- input: the project's own Step I at σ = 0 on it. The person's own appearance code re-rendered
  through the face prior (stream/restore_prior.PriorRestorer(sigma=0): appearance-model smoothing,
  the person's shading, the visual-similarity mask's seams) at the portrait's own FaceMesh landmarks
  (σ = 0 moves no landmark), after a sub-pixel similarity warp there and back (the resampling blur of
  the mesh warp);
- target: the real portrait;
both aligned on the FFHQ 5-point template at 128 x 128 (models/face_align.align_face), pixel for pixel.

The degradations that real footage brings (`degrade`: down-scaling to 24-96 px faces and back, JPEG,
noise, slight motion blur) and the augmentation (`augment`: mirror, re-light, jitter) are drawn per
training step by tools/build/train_restorer.py, so every epoch sees new ones. H.264 artifacts are
stood in for by JPEG (both are 8x8-block DCT codecs at these sizes).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

SIZE = 128
FACE_PX_IN_CROP = 70.0  # cheek-to-cheek width of a face in the 128 aligned crop (~2.2 eye distances)
FACE_PX = (24, 96)  # face widths of real footage the input is brought down to


def _build_face_prior_module():
    path = Path(__file__).resolve().parent / "build_face_prior.py"
    spec = importlib.util.spec_from_file_location("build_face_prior", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_sigma0(restorer, rgb: np.ndarray, lm: np.ndarray, rng: np.random.Generator, track: int) -> np.ndarray:
    """Step I at σ = 0 on a whole portrait: resampled like the mesh warp, re-rendered by the prior."""
    from ideud.stream.types import RestoreItem

    h, w = rgb.shape[:2]
    a = np.deg2rad(rng.uniform(-1.0, 1.0))
    k = 1.0 + rng.uniform(-0.01, 0.01)
    m = np.array([[k * np.cos(a), -k * np.sin(a), 0.0], [k * np.sin(a), k * np.cos(a), 0.0]])
    m[:, 2] = np.array([w / 2, h / 2]) - m[:, :2] @ np.array([w / 2, h / 2]) + rng.uniform(-0.5, 0.5, 2)
    there = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    back = cv2.warpAffine(there, cv2.invertAffineTransform(m), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    it = RestoreItem(image=back, original=rgb, mask=np.ones((h, w), np.float32), landmarks=lm,
                     track_id=track, seed=track, level=0)
    return restorer.restore([it])[0]


def make_pairs(names: Sequence[str], folder: Path, cache: Optional[Path] = None, log=print,
               seed: int = 0) -> dict:
    """{"inputs": (N,128,128,3) uint8, "targets": same, "names": (N,)} for the portraits FaceMesh finds."""
    from ideud.eval.portraits import held_out_names
    from ideud.models.face_align import align_face, five_points_from_facemesh
    from ideud.stream.restore_prior import PriorRestorer

    held = set(held_out_names(folder))
    if held & set(names):
        raise ValueError("held-out portraits must not be used for training")
    marks = _build_face_prior_module().portrait_landmarks([folder / n for n in names], cache)
    restorer = PriorRestorer(sigma=0.0)
    rng = np.random.default_rng(seed)
    inputs, targets, kept = [], [], []
    t0 = time.time()
    for i, n in enumerate(names):
        lm = marks.get(n)
        if lm is None:
            continue
        rgb = np.ascontiguousarray(cv2.imread(str(folder / n))[:, :, ::-1])
        render = render_sigma0(restorer, rgb, lm, rng, track=i + 1)
        restorer.forget(i + 1)
        p5 = five_points_from_facemesh(lm)
        inputs.append(align_face(render, p5, SIZE).image)
        targets.append(align_face(rgb, p5, SIZE).image)
        kept.append(n)
        if len(kept) % 50 == 0:
            log(f"pairs: {len(kept)} made, {time.time() - t0:.0f} s")
    return {"inputs": np.stack(inputs), "targets": np.stack(targets), "names": np.array(kept)}


# ---------------------------------------------------------------------------- per-step augmentation
def augment(inp: np.ndarray, tgt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same mirror, jitter (shift/scale/rotation) and re-light on input and target."""
    if rng.random() < 0.5:
        inp, tgt = inp[:, ::-1], tgt[:, ::-1]
    a = np.deg2rad(rng.uniform(-4, 4))
    k = rng.uniform(0.95, 1.05)
    c = SIZE / 2
    m = np.array([[k * np.cos(a), -k * np.sin(a), 0.0], [k * np.sin(a), k * np.cos(a), 0.0]])
    m[:, 2] = np.array([c, c]) - m[:, :2] @ np.array([c, c]) + rng.uniform(-3, 3, 2)
    warp = lambda x: cv2.warpAffine(np.ascontiguousarray(x), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101)
    inp, tgt = warp(inp), warp(tgt)
    # re-light: one gain per channel and a gamma, the same on both (the light, not the face, changes)
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, 3)
    gamma = rng.uniform(0.85, 1.15)
    light = lambda x: np.clip(255.0 * (x.astype(np.float32) / 255.0) ** gamma * gain, 0, 255).astype(np.uint8)
    return light(inp), light(tgt)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real footage's losses on the input: small faces, motion blur, noise, compression."""
    x = img
    face = rng.uniform(*FACE_PX)
    if face < FACE_PX_IN_CROP:
        small = max(8, int(round(SIZE * face / FACE_PX_IN_CROP)))
        x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (SIZE, SIZE),
                       interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        n = int(rng.integers(3, 6))
        kern = np.zeros((n, n), np.float32)
        kern[n // 2, :] = 1.0 / n
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, rot, (n, n))
        x = cv2.filter2D(x, -1, kern / max(kern.sum(), 1e-6))
    if rng.random() < 0.5:
        x = np.clip(x.astype(np.float32) + rng.normal(0, rng.uniform(1, 8), x.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        x = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(x)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ideud.eval.portraits import build_names, portraits_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="pairs file (.npz) to write")
    ap.add_argument("--limit", type=int, default=None, help="first N build portraits only")
    ap.add_argument("--cache", type=Path, default=None, help="FaceMesh landmark cache (.npz) to reuse")
    args = ap.parse_args(argv)
    folder = portraits_dir()
    if folder is None:
        print("error: shared portraits not found (set IDEUD_PORTRAITS)", file=sys.stderr)
        return 2
    names = build_names(folder)[: args.limit]
    pairs = make_pairs(names, folder, args.cache)
    np.savez_compressed(args.out, **pairs)  # 49 MB for 699 pairs: fits a GPU host's 64 MiB carry
    print(f"{len(pairs['names'])} pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
