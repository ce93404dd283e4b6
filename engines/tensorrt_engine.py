"""TensorRT backend: fp16 plan built from the ONNX export, run on >= 2 CUDA streams.

* The serialized plan is cached under `<cache_dir>/trt/`, keyed by the model
  fingerprint, GPU name, TensorRT version, batch range, precision and stream
  count: a plan is only valid for the GPU and TensorRT build that made it.
* The plan has one optimisation profile (batch 1..max_batch) per stream, so
  every execution context owns its profile and contexts run concurrently.
* Device buffers are torch tensors (torch's caching allocator owns them).
  numpy batches go through double-buffered pinned host memory: while stream
  k computes chunk i, the host fills the other slot with chunk i+1.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from ideud.engines.base import Engine, EngineUnavailable
from ideud.engines.onnx_engine import INPUT_NAME, OUTPUT_NAME


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineUnavailable("TensorRT is not installed (pip install tensorrt)") from None
    try:
        import torch
    except ImportError:
        raise EngineUnavailable("the TensorRT engine needs torch for its CUDA buffers") from None
    if not torch.cuda.is_available():
        raise EngineUnavailable("TensorRT needs a CUDA device; none is visible")
    if not hasattr(trt.IExecutionContext, "execute_async_v3"):
        raise EngineUnavailable(f"TensorRT {trt.__version__} is too old (need >= 8.5 for execute_async_v3)")
    return trt, torch


def plan_path(cache_dir, model_key: str, max_batch: int, fp16: bool, streams: int, size: int) -> Path:
    trt, torch = _import_trt()
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name()).strip("_")
    prec = "fp16" if fp16 else "fp32"
    name = f"{model_key[:16]}-{gpu}-trt{trt.__version__}-{size}-b1-{max_batch}-{prec}-s{streams}.plan"
    return Path(cache_dir) / "trt" / name


def build_plan(onnx_path, out_path, max_batch: int, fp16: bool = True, streams: int = 2, size: int = 512,
               opt_batch: Optional[int] = None, workspace_gib: float = 4.0) -> Path:
    trt, _ = _import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineUnavailable(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = opt_batch or max_batch
    for _ in range(streams):
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, 3, size, size), (opt, 3, size, size), (max_batch, 3, size, size))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineUnavailable("TensorRT failed to build the engine (see the TensorRT log above)")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(serialized))
    os.replace(tmp, out_path)
    return out_path


class TensorRTEngine(Engine):
    def __init__(
        self,
        model_or_onnx,
        cache_dir=None,
        max_batch: int = 8,
        fp16: bool = True,
        streams: int = 2,
        size: int = 512,
        opt_batch: Optional[int] = None,
        device: Optional[str] = None,
    ):
        if device is not None and not str(device).startswith("cuda"):
            raise EngineUnavailable(f"TensorRT runs on CUDA devices only, not {device!r}")
        trt, torch = _import_trt()
        from ideud.engines.base import model_fingerprint
        from ideud.engines.onnx_engine import cached_onnx

        if streams < 1:
            raise ValueError("streams must be >= 1")
        if cache_dir is None:
            from ideud.models.registry import default_models_dir

            cache_dir = default_models_dir()
        if isinstance(model_or_onnx, (str, os.PathLike)):
            onnx_path = Path(model_or_onnx)
            import hashlib

            key = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        else:
            key = model_fingerprint(model_or_onnx, {"size": size, "form": "shared"})
            onnx_path = cached_onnx(model_or_onnx, cache_dir, size=size)
        dev = torch.device(device) if device else torch.device("cuda")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        # TensorRT builds, loads and runs on the current CUDA device.
        with torch.cuda.device(dev):
            self._setup(trt, torch, cache_dir, key, onnx_path, max_batch, fp16, streams, size, opt_batch)

    def _setup(self, trt, torch, cache_dir, key, onnx_path, max_batch, fp16, streams, size, opt_batch):
        plan = plan_path(cache_dir, key, max_batch, fp16, streams, size)
        if not plan.is_file():
            build_plan(onnx_path, plan, max_batch, fp16=fp16, streams=streams, size=size, opt_batch=opt_batch)

        self._trt, self._torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            plan.unlink(missing_ok=True)  # stale or foreign plan: rebuild next time
            raise EngineUnavailable(f"TensorRT could not load {plan}; it was removed and will be rebuilt")
        self.plan_path = plan
        self.max_batch = max_batch
        self.size = size
        self.fp16 = fp16
        self.name = "tensorrt"

        dev = self.device
        shape = (max_batch, 3, size, size)
        self.streams = [torch.cuda.Stream(dev) for _ in range(streams)]
        self.contexts = []
        for k, s in enumerate(self.streams):
            ctx = self.engine.create_execution_context()
            ctx.set_optimization_profile_async(k, s.cuda_stream)
            self.contexts.append(ctx)
        # fp32 I/O: the plan computes in fp16 internally, the boundary stays fp32.
        self.dev_in = [torch.empty(shape, device=dev, dtype=torch.float32) for _ in self.streams]
        self.dev_out = [torch.empty(shape, device=dev, dtype=torch.float32) for _ in self.streams]
        self.host_in = [torch.empty(shape, dtype=torch.float32, pin_memory=True) for _ in self.streams]
        self.host_out = [torch.empty(shape, dtype=torch.float32, pin_memory=True) for _ in self.streams]
        for s in self.streams:
            s.synchronize()

    def describe(self) -> str:
        return (f"tensorrt {self._trt.__version__} {'fp16' if self.fp16 else 'fp32'} "
                f"streams={len(self.streams)} max_batch={self.max_batch}")

    def _enqueue(self, k: int, n: int) -> None:
        """Run the network on slot k's device buffers for n items, on stream k."""
        ctx = self.contexts[k]
        ctx.set_input_shape(INPUT_NAME, (n, 3, self.size, self.size))
        ctx.set_tensor_address(INPUT_NAME, self.dev_in[k].data_ptr())
        ctx.set_tensor_address(OUTPUT_NAME, self.dev_out[k].data_ptr())
        if not ctx.execute_async_v3(self.streams[k].cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def run(self, batch):
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, self.size, self.size):
            raise ValueError(f"expected N x 3 x {self.size} x {self.size}, got {tuple(batch.shape)}")
        with self._torch.cuda.device(self.device):
            if isinstance(batch, np.ndarray):
                return self._run_numpy(batch)
            return self._run_tensor(batch)

    def _run(self, batch):  # run() handles chunking itself across streams
        return self.run(batch)

    def _run_numpy(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = np.empty(batch.shape, dtype=np.float32)
        pending: list = [None] * len(self.streams)

        def finish(k):
            lo, n = pending[k]
            self.streams[k].synchronize()
            out[lo : lo + n] = self.host_out[k][:n].numpy()
            pending[k] = None

        for i, lo in enumerate(range(0, len(batch), self.max_batch)):
            k = i % len(self.streams)
            if pending[k] is not None:
                finish(k)  # slot k's pinned buffers are free again
            n = min(self.max_batch, len(batch) - lo)
            self.host_in[k][:n].numpy()[...] = batch[lo : lo + n]
            stream = self.streams[k]
            with torch.cuda.stream(stream):
                self.dev_in[k][:n].copy_(self.host_in[k][:n], non_blocking=True)
                self._enqueue(k, n)
                self.host_out[k][:n].copy_(self.dev_out[k][:n], non_blocking=True)
            pending[k] = (lo, n)
        for k in range(len(self.streams)):
            if pending[k] is not None:
                finish(k)
        return out

    def _run_tensor(self, batch):
        torch = self._torch
        x = batch.detach()
        out = torch.empty(x.shape, device=self.dev_in[0].device, dtype=torch.float32)
        producer = torch.cuda.current_stream()
        for i, lo in enumerate(range(0, len(x), self.max_batch)):
            k = i % len(self.streams)
            n = min(self.max_batch, len(x) - lo)
            stream = self.streams[k]
            stream.wait_stream(producer)  # input written on the caller's stream; slot k free after its last use
            with torch.cuda.stream(stream):
                self.dev_in[k][:n].copy_(x[lo : lo + n], non_blocking=True)
                self._enqueue(k, n)
                out[lo : lo + n].copy_(self.dev_out[k][:n], non_blocking=True)
        for s in self.streams:
            producer.wait_stream(s)
        return out.to(batch.device, batch.dtype)

    def close(self) -> None:
        for s in self.streams:
            s.synchronize()
        self.contexts.clear()
        self.engine = None
