"""EdgeFace: a second face recognizer, independent of dlib's ResNet, run by onnxruntime.

EdgeFace (George et al., IEEE T-BIOM 2024; Idiap, BSD-3-Clause, see models/data/NOTICE.md) is an
EdgeNeXt backbone trained for face recognition: another architecture (a convolution/transposed-
attention hybrid instead of a ResNet), another training set and another loss (margin softmax
instead of dlib's metric loss) than the recognizer the privacy guard already runs. The guard asks
both; a face must look like nobody the person is to either of them.

Run time (embedded tier, no torch)::

    ef = EdgeFace()                                   # models/data/edgeface_xs.onnx, lazily
    chips = ef.chips(rgb, [points5])                 # 112x112 ArcFace-aligned, uint8
    e = ef.embed_chips(chips)                         # (N, 512) float32, L2-normalised
    same = EdgeFace.similarity(e[0], ref) > ef.threshold("balanced")

Input: 112x112 RGB aligned on the ArcFace 5-point template, (x / 255 - 0.5) / 0.5, NCHW. Points in
`face_align` order (image-left eye centre, image-right eye centre, nose tip, image-left and
image-right mouth corner): `ideud.models.face_align.five_points_from_facemesh` gives them from the
468 FaceMesh points. Output: 512-d, compared by cosine similarity.

Build time (`tools/build/build_edgeface.py`, needs torch): the published weights are int8
dynamically quantised state dicts (`edgeface_xs_q.pt`, `edgeface_xxs_q.pt`). `load_state`
dequantises every int8 linear weight to float ((q - zero_point) * scale), `arch_of` reads the
network's shape from the state dict's tensor shapes, and `forward` is our own functional
EdgeNeXt written from its description:

    stem        4x4 conv, stride 4, channel LayerNorm                      (112 -> 28)
    stages 1-4  [channel LayerNorm + 2x2 conv stride 2] (stages 2-4),      28 -> 14 -> 7 -> 3
                then blocks:
      conv block    depthwise kxk conv (k = 3, 5, 7, 9 by stage), LayerNorm, MLP x4 with GELU,
                    per-channel scale, residual
      SDTA block    (the last block of stages 2-4) channels split in s groups, a chain of
                    depthwise 3x3 convs (each group adds the previous group's output), a
                    Fourier positional encoding (stage 2 only), cross-covariance attention
                    (4 heads: attention over channels, L2-normalised q/k, learnt temperature)
                    with its per-channel scale and residual, then the MLP as above
    head        global average pool, LayerNorm, linear 512
The xs network: widths 32/64/100/192, depths 3/3/9/3; xxs: 24/48/88/168, 2/2/6/2. The low-rank
linear layers of EdgeFace's other variants are not in these two quantised files (every linear
is a full matrix here), so none are built.
"""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ideud.models.geometry import similarity_matrix
from ideud.models.onnx_cpu import RECOGNIZER_THREADS, cpu_session_options

DATA = Path(__file__).with_name("data")
ONNX_PATH = DATA / "edgeface_xs.onnx"
CALIBRATION_PATH = DATA / "edgeface_calibration.json"
SIZE = 112
DIM = 512

#: ArcFace's 5-point template for 112x112 chips (face_align point order).
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)

#: EdgeNeXt layout that the state dict's shapes do not give directly
KERNELS = (3, 5, 7, 9)  # depthwise kernel of the conv blocks, per stage
HEADS = 4  # cross-covariance attention heads (the temperature has one value per head)
EPS = 1e-6  # every LayerNorm


# ---------------------------------------------------------------------------- run time (onnxruntime)
def align(rgb: np.ndarray, points5: np.ndarray, scale: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
    """The 112x112 ArcFace chip of a face; `scale`/`shift` jitter the template (views)."""
    tpl = (ARCFACE_112 - SIZE / 2) * scale + SIZE / 2 + np.asarray(shift, np.float64)
    m = similarity_matrix(np.asarray(points5, np.float64)[:, :2], tpl)
    return cv2.warpAffine(rgb, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def normalise(chips: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB -> (N, 3, 112, 112) float32 in [-1, 1]."""
    x = np.asarray(chips, np.float32).reshape(-1, SIZE, SIZE, 3)
    return np.ascontiguousarray(((x / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2))


def calibration(path: Optional[Path] = None) -> dict:
    """The shipped calibration (thresholds and the numbers they come from)."""
    return json.loads(Path(path or CALIBRATION_PATH).read_text())


class EdgeFace:
    """The EdgeFace ONNX model on onnxruntime, loaded on first use; thread-safe."""

    def __init__(self, path: Optional[Path] = None, threads: int = RECOGNIZER_THREADS):
        self.path = Path(path or ONNX_PATH)
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()
        self._thresholds: Optional[dict] = None

    def _get(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    if not self.path.is_file():
                        raise FileNotFoundError(f"EdgeFace model missing: {self.path}")
                    self._session = ort.InferenceSession(str(self.path), cpu_session_options(self.threads),
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def threshold(self, level: str = "balanced") -> float:
        """Cosine similarity above which two faces count as one person (calibrated, see the json)."""
        if self._thresholds is None:
            self._thresholds = calibration()["thresholds"]
        return float(self._thresholds[level])

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 aligned chips -> (N, 512) float32 L2-normalised embeddings (one batch)."""
        x = normalise(chips)
        if len(x) == 0:
            return np.zeros((0, DIM), np.float32)
        sess = self._get()
        e = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    def chips(self, rgb: np.ndarray, points5: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([align(rgb, p) for p in points5]) if len(points5) else np.zeros((0, SIZE, SIZE, 3), np.uint8)

    def embed(self, rgb: np.ndarray, points5: np.ndarray) -> np.ndarray:
        """(512,) embedding of one face given its 5 points (face_align order)."""
        return self.embed_chips(align(rgb, points5)[None])[0]

    @staticmethod
    def similarity(a, b) -> float:
        """Cosine similarity of two embeddings (1 = same direction)."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


_default: Optional[EdgeFace] = None
_default_lock = threading.Lock()


def default_edgeface() -> EdgeFace:
    """A process-wide shared instance."""
    global _default
    with _default_lock:
        if _default is None:
            _default = EdgeFace()
        return _default


# ---------------------------------------------------------------------------- build time (torch)
def load_state(path) -> dict:
    """The published int8 state dict as float32 tensors, quantised linears dequantised:
    {"<layer>.weight": (out, in), "<layer>.bias": (out,)} like a float network's."""
    import torch

    raw = torch.load(str(path), map_location="cpu", weights_only=False)
    out = {}
    for k, v in raw.items():
        k = k[len("model."):] if k.startswith("model.") else k
        if k.endswith("._packed_params._packed_params"):
            w, b = v
            name = k[: -len("._packed_params._packed_params")]
            out[name + ".weight"] = w.dequantize().float()
            if b is not None:
                out[name + ".bias"] = b.detach().float()
        elif isinstance(v, torch.Tensor) and v.is_floating_point() and not k.endswith((".scale", ".zero_point")):
            out[k] = v.detach().float()
    return out


def arch_of(state: dict) -> dict:
    """Widths, depths and SDTA split counts read from the tensor shapes."""
    dims, depths, splits = [], [], []
    for s in range(4):
        blocks = {int(k.split(".")[3]) for k in state if k.startswith(f"stages.{s}.blocks.")}
        depths.append(max(blocks) + 1)
        dims.append(int(state[f"stages.{s}.blocks.0.norm.weight"].shape[0]))
        last = f"stages.{s}.blocks.{depths[-1] - 1}."
        splits.append(1 + sum(k.startswith(last + "convs.") and k.endswith(".weight") for k in state)
                      if last + "gamma_xca" in state else 0)
    return {"dims": dims, "depths": depths, "splits": splits}


def _positional(state: dict, prefix: str, b: int, h: int, w: int):
    """Fourier positional encoding of an h x w grid, projected by a 1x1 conv."""
    import torch
    import torch.nn.functional as F

    proj_w = state[prefix + "token_projection.weight"]
    hidden = proj_w.shape[1] // 2
    ys = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w) / (h + EPS) * 2 * math.pi
    xs = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w) / (w + EPS) * 2 * math.pi
    freq = 10000.0 ** (2 * (torch.arange(hidden) // 2).float() / hidden)

    def enc(t):
        p = t[..., None] / freq  # (h, w, hidden): sin on even, cos on odd channels, interleaved
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=3).flatten(2)
    pos = torch.cat((enc(ys), enc(xs)), dim=2).permute(2, 0, 1)[None]
    return F.conv2d(pos, proj_w, state[prefix + "token_projection.bias"]).expand(b, -1, -1, -1)


def forward(state: dict, x, arch: Optional[dict] = None):
    """EdgeFace on a (N, 3, 112, 112) float tensor in [-1, 1] -> (N, 512) (not normalised)."""
    import torch
    import torch.nn.functional as F

    arch = arch or arch_of(state)

    def ln_channels(t, p):  # LayerNorm over the channels of an NCHW tensor
        w = state[p + ".weight"]
        return F.layer_norm(t.permute(0, 2, 3, 1), (int(w.shape[0]),), w, state[p + ".bias"], EPS).permute(0, 3, 1, 2)

    def lin(t, p):
        return F.linear(t, state[p + ".weight"], state.get(p + ".bias"))

    def mlp_tail(t, p):  # t: NHWC; LayerNorm, MLP, per-channel scale
        w = state[p + "norm.weight"]
        t = F.layer_norm(t, (int(w.shape[0]),), w, state[p + "norm.bias"], EPS)
        t = lin(F.gelu(lin(t, p + "mlp.fc1")), p + "mlp.fc2")
        return (state[p + "gamma"] * t).permute(0, 3, 1, 2)

    def dwconv(t, p):
        wgt = state[p + ".weight"]
        return F.conv2d(t, wgt, state[p + ".bias"], padding=int(wgt.shape[-1]) // 2, groups=int(wgt.shape[0]))

    def xca(t, p):  # t: (N, L, C) -> attention across channels
        n, l, c = t.shape[0], int(t.shape[1]), int(t.shape[2])  # batch stays dynamic in the export
        qkv = lin(t, p + "qkv").reshape(n, l, 3, HEADS, c // HEADS).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, C/heads, L)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * state[p + "temperature"]
        out = (attn.softmax(dim=-1) @ v).permute(0, 3, 1, 2).reshape(n, l, c)
        return lin(out, p + "proj")

    x = F.conv2d(x, state["stem.0.weight"], state["stem.0.bias"], stride=4)
    x = ln_channels(x, "stem.1")
    for s in range(4):
        if s > 0:
            x = ln_channels(x, f"stages.{s}.downsample.0")
            x = F.conv2d(x, state[f"stages.{s}.downsample.1.weight"], state[f"stages.{s}.downsample.1.bias"], stride=2)
        for i in range(arch["depths"][s]):
            p = f"stages.{s}.blocks.{i}."
            shortcut = x
            if p + "gamma_xca" not in state:
                x = shortcut + mlp_tail(dwconv(x, p + "conv_dw").permute(0, 2, 3, 1), p)
                continue
            groups = x.chunk(arch["splits"][s], dim=1)
            outs, run = [], None
            for j in range(arch["splits"][s] - 1):
                run = groups[j] if j == 0 else run + groups[j]
                run = dwconv(run, p + f"convs.{j}")
                outs.append(run)
            x = torch.cat(outs + [groups[-1]], dim=1)
            n, c, h, w = x.shape[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
            t = x.reshape(n, c, h * w).permute(0, 2, 1)
            if p + "pos_embd.token_projection.weight" in state:
                t = t + _positional(state, p + "pos_embd.", n, h, w).reshape(n, c, h * w).permute(0, 2, 1)
            normed = F.layer_norm(t, (c,), state[p + "norm_xca.weight"], state[p + "norm_xca.bias"], EPS)
            t = t + state[p + "gamma_xca"] * xca(normed, p + "xca.")
            x = shortcut + mlp_tail(t.reshape(n, h, w, c), p)
    x = x.mean(dim=(2, 3))
    x = F.layer_norm(x, (int(x.shape[-1]),), state["head.norm.weight"], state["head.norm.bias"], EPS)
    return lin(x, "head.fc")


def torch_module(state: dict):
    """An nn.Module around `forward` (its tensors as buffers), for tracing to ONNX."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = sorted(state)
            self.arch = arch_of(state)
            for i, k in enumerate(self.names):
                self.register_buffer(f"t{i}", state[k].clone())

        def forward(self, x):
            return forward({k: getattr(self, f"t{i}") for i, k in enumerate(self.names)}, x, self.arch)

    return Net().eval()


def export_onnx(state: dict, path: Path, opset: int = 17) -> None:
    """Trace our network to ONNX with a dynamic batch axis."""
    import torch

    net = torch_module(state)
    dummy = torch.zeros(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(path), input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
