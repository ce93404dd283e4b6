"""Step II with the restoration GAN (GFPGAN v1 clean).

For each face: five points from the perturbed mesh -> similarity warp to the
FFHQ 512 template -> one batched engine call for all faces -> inverse warp
back to the crop. Pixels of the crop the aligned square does not cover keep
the warped input, and the square's edge is feathered, so the blend stage
(which pastes through `item.mask`) sees no seams.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ideud.models.face_align import AlignedFace, align_face, five_points_from_facemesh, paste_back
from ideud.stream.types import RestoreItem

log = logging.getLogger(__name__)

FACE_SIZE = 512


def to_network(faces: Sequence[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 RGB faces -> N x 3 x H x W float32 in [-1, 1]."""
    batch = np.stack(faces).astype(np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) / 127.5 - 1.0


def from_network(batch: np.ndarray) -> np.ndarray:
    """N x 3 x H x W network output -> (N, H, W, 3) uint8 RGB (clamped to [-1, 1] first)."""
    x = (np.clip(batch, -1.0, 1.0) + 1.0) * 127.5
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


class GanRestorer:
    """Restorer over any `Engine` that maps aligned 512 faces in [-1, 1] to restored faces.

    `seed` and `level` of the items are not used: the network is
    deterministic (stored noise), which keeps a track's face stable over time.
    """

    name = "gan"

    def __init__(self, engine, size: int = FACE_SIZE, feather: float = 0.02, workers: Optional[int] = None):
        self.engine = engine
        self.max_batch = engine.max_batch
        self.size = size
        self.feather = feather
        device = getattr(engine, "device", None)
        self._cuda_device = device if getattr(device, "type", None) == "cuda" else None  # a torch engine's
        # the pipeline runs a GPU restorer on its own thread, overlapped with Step I
        self.on_gpu = self._cuda_device is not None or bool(getattr(engine, "on_cuda", False))
        if workers is None:
            # On a GPU the alignment and paste-back warps (OpenCV, GIL released) are the
            # stage's bottleneck: spread them over the cores. On a CPU the engine is.
            workers = min(8, os.cpu_count() or 1) if self.on_gpu else 1
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ideud-align") if workers > 1 else None

    def _map(self, fn, *args) -> list:
        return list(self._pool.map(fn, *args) if self._pool is not None else map(fn, *args))

    def _align(self, item: RestoreItem) -> Optional[AlignedFace]:
        try:
            return align_face(item.image, five_points_from_facemesh(item.landmarks), self.size)
        except (ValueError, np.linalg.LinAlgError) as e:
            log.debug("track %s: cannot align face (%s); left as is", item.track_id, e)
            return None

    def restore(self, items: Sequence[RestoreItem]) -> list[np.ndarray]:
        aligned = self._map(self._align, items)
        todo = [i for i, a in enumerate(aligned) if a is not None]
        out = [it.image for it in items]
        if not todo:
            return out
        restored = self._run_engine([aligned[i].image for i in todo])
        pasted = self._map(lambda i, face: paste_back(aligned[i], face, items[i].image, feather=self.feather),
                           todo, restored)
        for i, face in zip(todo, pasted):
            out[i] = face
        return out

    def warmup(self) -> None:
        """Capture/compile/tune the engine for every batch size before the first face."""
        warm = getattr(self.engine, "warmup", None)
        if warm is not None:
            warm(self.size)

    def forget(self, track_id: int) -> None:
        """Nothing kept per track."""

    def _run_engine(self, faces: list) -> np.ndarray:
        """Aligned uint8 faces -> restored uint8 faces."""
        if self._cuda_device is not None:
            return self._run_engine_cuda(faces, self._cuda_device)
        return from_network(np.asarray(self.engine.run(to_network(faces))))

    def _run_engine_cuda(self, faces: list, device) -> np.ndarray:
        # Move uint8 pixels (4x fewer bytes than float) and convert on the GPU. The NHWC
        # upload permuted to NCHW is already in channels_last layout.
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.stack(faces)).pin_memory().to(device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0)
            y = self.engine.run(x).float().clamp_(-1.0, 1.0).add_(1.0).mul_(127.5).round_()
            return y.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.engine.close()


class LoadResult(NamedTuple):
    restorer: Optional[GanRestorer]
    reason: str  # one line: what was loaded, or why nothing was


def load_gan_restorer(
    models_dir=None,
    backend: str = "auto",
    model: Optional[str] = None,
    device: Optional[str] = None,
    max_batch: int = 8,
    download: bool = False,
    **engine_opts,
) -> LoadResult:
    """A ready GanRestorer, or (None, reason) so the caller can fall back to the embedded tier.

    Nothing is downloaded unless `download=True` (`ideud-video models fetch`
    is the explicit way); a missing or corrupt file is reported, never loaded.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return LoadResult(None, "GAN restorer needs torch (pip install 'ideud-video[gan]')")
    from ideud.engines import EngineUnavailable, auto_torch_opts, make_engine, resolve_backend
    from ideud.models import registry

    name = model or registry.DEFAULT_GAN
    try:
        net = registry.load_model(name, models_dir, download=download)
    except registry.ModelUnavailable as e:
        return LoadResult(None, str(e))

    opts = dict(engine_opts, max_batch=max_batch)
    if device is not None:
        opts["device"] = device
    chosen = resolve_backend(backend, device)
    if chosen in ("onnxruntime", "tensorrt"):
        # exported ONNX files and TensorRT plans are cached next to the weights
        opts.setdefault("cache_dir", registry.resolve_models_dir(models_dir))
    try:
        engine = make_engine(net, backend, **opts)
    except EngineUnavailable as e:
        if backend != "auto" or chosen == "torch":
            return LoadResult(None, str(e))
        log.info("%s; using the torch engine", e)
        opts.pop("cache_dir", None)
        try:
            engine = make_engine(net, "torch", **{**auto_torch_opts(device), **opts})
        except EngineUnavailable as e2:
            return LoadResult(None, str(e2))
    return LoadResult(GanRestorer(engine), f"{name} on {engine.describe()}")


# --gan-engine: how the GAN runs. Measured on an H200 (README): CUDA graphs ~180-240 faces/s,
# compiled + CUDA graphs 420-660 faces/s but ~40 s of compilation per batch size at start.
GAN_ENGINES = {
    "auto": {},  # TensorRT if installed, else torch fp16 + CUDA graphs on a GPU
    "cudagraphs": dict(backend="torch", dtype="fp16", channels_last=True, cuda_graphs=True),
    "compiled": dict(backend="torch", dtype="fp16", channels_last=True, compile=True, cuda_graphs=True),
    "eager": dict(backend="torch", dtype="fp16", channels_last=True),
    "onnxruntime": dict(backend="onnxruntime"),
    "tensorrt": dict(backend="tensorrt"),
}


def gan_engine_options(name: str) -> dict:
    try:
        return dict(GAN_ENGINES[name])
    except KeyError:
        raise ValueError(f"unknown GAN engine {name!r}; choose one of {', '.join(GAN_ENGINES)}") from None


def make_gan_restorer(**kwargs) -> GanRestorer:
    """Factory for the "gan" entry of `restore.RESTORERS`: raises ModelUnavailable instead of returning None."""
    from ideud.models.registry import ModelUnavailable

    restorer, reason = load_gan_restorer(**kwargs)
    if restorer is None:
        raise ModelUnavailable(reason)
    return restorer
