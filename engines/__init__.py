"""Inference engines: one interface (`Engine.run`) over torch, onnxruntime and TensorRT.

`make_engine(model, backend, **opts)` builds one; `backend="auto"` picks
TensorRT, then torch fp16 + CUDA graphs on a CUDA machine, and onnxruntime,
then torch on CPU.
"""
from __future__ import annotations

from ideud.engines.base import Engine, EngineUnavailable, model_fingerprint

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
_ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime", "trt": "tensorrt"}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def resolve_backend(backend: str = "auto", device: str | None = None) -> str:
    backend = _ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    cuda = _cuda_available() and (device is None or str(device).startswith("cuda"))
    if cuda:
        return "tensorrt" if _have("tensorrt") else "torch"
    return "onnxruntime" if _have("onnxruntime") else "torch"


def auto_torch_opts(device: str | None = None) -> dict:
    """What `auto` picks for the torch engine: fp16 + channels_last + CUDA graphs on a GPU, fp32 on CPU."""
    if _cuda_available() and str(device or "cuda").startswith("cuda"):
        return {"dtype": "fp16", "channels_last": True, "cuda_graphs": True}
    return {}


def make_engine(model, backend: str = "auto", **opts) -> Engine:
    """Build an engine for `model` (a torch module, or an ONNX path for onnxruntime/TensorRT).

    Options are passed to the backend class: TorchEngine (device, dtype,
    channels_last, compile, cuda_graphs, modconv, max_batch), OnnxEngine
    (device, max_batch, cache_dir, threads) or TensorRTEngine (cache_dir,
    max_batch, fp16, streams).
    """
    chosen = resolve_backend(backend, opts.get("device"))
    if chosen == "torch":
        from ideud.engines.torch_engine import TorchEngine

        if backend == "auto":
            opts = {**auto_torch_opts(opts.get("device")), **opts}
        return TorchEngine(model, **opts)
    if chosen == "onnxruntime":
        from ideud.engines.onnx_engine import OnnxEngine

        return OnnxEngine(model, **opts)
    from ideud.engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(model, **opts)


__all__ = ["Engine", "EngineUnavailable", "make_engine", "resolve_backend", "auto_torch_opts", "model_fingerprint", "BACKENDS"]
