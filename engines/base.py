"""The one interface every inference backend implements.

`Engine.run(batch)` takes an N x 3 x H x W float batch in [-1, 1] (numpy array
or torch tensor) and returns the network output of the same kind, shape
N x 3 x H x W. Batches larger than the engine's `max_batch` are cut into
chunks. Outputs are not clamped: that is the caller's post-processing.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class EngineUnavailable(RuntimeError):
    """The backend cannot run here (library or device missing); message is one line."""


class Engine(ABC):
    name: str = "engine"
    max_batch: int = 8

    def run(self, batch: Any):
        """N x 3 x H x W in [-1, 1] -> N x 3 x H x W; numpy in gives numpy out, torch in gives torch out."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {tuple(batch.shape)}")
        if len(batch) == 0:
            return batch[:0].copy() if isinstance(batch, np.ndarray) else batch[:0].clone()
        if len(batch) <= self.max_batch:
            return self._run(batch)
        return self._run_chunks(batch)

    def _run_chunks(self, batch):
        parts = [self._run(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        if isinstance(batch, np.ndarray):
            return np.concatenate(parts)
        import torch

        return torch.cat(parts)

    def warmup_sizes(self) -> list:
        return [self.max_batch]

    def warmup(self, size: int = 512) -> None:
        """Run every batch size the engine will see once (graph capture, compilation, kernel
        choice), so that the first frames with faces do not stall the stream."""
        for n in self.warmup_sizes():
            self.run(np.zeros((n, 3, size, size), np.float32))

    @abstractmethod
    def _run(self, batch):
        """Run at most `max_batch` items."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def describe(self) -> str:
        return self.name


def model_fingerprint(model, extra: dict | None = None) -> str:
    """Stable SHA-256 of a network's weights, architecture config and class.

    Used as the cache key of exported ONNX files and TensorRT plans, so a
    cache entry can never be reused for different weights.
    """
    import torch

    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    cfg = getattr(model, "config", None)
    h.update(json.dumps({"config": cfg, "extra": extra or {}}, sort_keys=True, default=str).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        t = v.detach().to("cpu", torch.float32).contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def measure_throughput(engine: Engine, batch_size: int, size: int = 512, warmup: int = 1, iters: int = 3,
                       seed: int = 0, device: str | None = None) -> dict:
    """Faces per second of `engine.run` on random N x 3 x size x size batches.

    By default numpy in, numpy out (host copies included, as the pipeline
    uses it); with `device` (e.g. "cuda") the batch is a torch tensor already
    there and the clock stops after the device has finished.
    Warm-up calls are not timed (they include export/compile/capture and
    kernel selection); the median and the best of `iters` timed calls are
    reported (the best is the better estimate on a shared, busy machine),
    with the first warm-up call's time as the start-up cost.
    """
    import statistics
    import time

    rng = np.random.default_rng(seed)
    batch = (rng.random((batch_size, 3, size, size), dtype=np.float32) * 2 - 1).astype(np.float32)
    sync = lambda: None  # noqa: E731
    if device is not None:
        import torch

        batch = torch.from_numpy(batch).to(device)
        if batch.is_cuda:
            sync = torch.cuda.synchronize

    def timed_call() -> float:
        t0 = time.perf_counter()
        engine.run(batch)
        sync()
        return time.perf_counter() - t0

    first = timed_call()
    for _ in range(max(0, warmup - 1)):
        timed_call()
    times = [timed_call() for _ in range(iters)]
    med, best = statistics.median(times), min(times)
    return {
        "batch": batch_size,
        "input": "host" if device is None else str(device),
        "first_call_s": round(first, 4),
        "median_s": round(med, 4),
        "best_s": round(best, 4),
        "faces_per_s": round(batch_size / med, 3),
        "best_faces_per_s": round(batch_size / best, 3),
        "ms_per_face": round(1000 * med / batch_size, 2),
    }
