"""ONNX export (dynamic batch) and the onnxruntime backend (CPU EP here, CUDA EP when present)."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ideud.engines.base import Engine, EngineUnavailable, model_fingerprint

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17


def export_onnx(model, path, size: int = 512, opset: int = OPSET) -> Path:
    """Export a GFPGAN (or any tensor->tensor module) to ONNX with a dynamic batch axis.

    GFPGAN is exported in its "shared" modulated-conv form: the official
    grouped form bakes groups=batch into the Conv node, so it cannot have a
    dynamic batch. Uses the TorchScript exporter (dynamo=False), which
    handles this network without onnxscript.
    """
    import torch

    from ideud.engines.torch_engine import inference_module

    module = inference_module(model, "shared").to("cpu", torch.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, size, size)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notice of the TorchScript exporter
            torch.onnx.export(
                module,
                (dummy,),
                tmp,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def cached_onnx(model, cache_dir, size: int = 512) -> Path:
    """Export once per (weights, architecture, size); later calls reuse the file."""
    key = model_fingerprint(model, {"size": size, "opset": OPSET, "form": "shared"})
    path = Path(cache_dir) / "onnx" / f"{type(model).__name__}-{key[:16]}-{size}.onnx"
    if not path.is_file():
        export_onnx(model, path, size=size)
    return path


def _providers(device: Optional[str]) -> list:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if device in (None, "auto"):
        device = "cuda" if "CUDAExecutionProvider" in avail else "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in avail:
            raise EngineUnavailable("onnxruntime: CUDA requested but this onnxruntime has no CUDAExecutionProvider")
        dev_id = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxEngine(Engine):
    """onnxruntime session over an ONNX file (or a torch model, exported and cached first)."""

    def __init__(
        self,
        model_or_path,
        device: Optional[str] = None,
        max_batch: int = 8,
        cache_dir=None,
        size: int = 512,
        threads: Optional[int] = None,
        providers: Optional[Sequence] = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineUnavailable("onnxruntime is not installed (pip install 'ideud-video[gan]')") from None
        if isinstance(model_or_path, (str, os.PathLike)):
            self.onnx_path = Path(model_or_path)
        else:
            if cache_dir is None:
                from ideud.models.registry import default_models_dir

                cache_dir = default_models_dir()
            self.onnx_path = cached_onnx(model_or_path, cache_dir, size=size)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=list(providers or _providers(device)))
        self.providers = self.session.get_providers()
        self.on_cuda = self.providers[0] == "CUDAExecutionProvider"
        self.max_batch = max_batch
        self.name = "onnxruntime"

    def describe(self) -> str:
        return f"onnxruntime {self.providers[0]} max_batch={self.max_batch}"

    def _run(self, batch):
        if isinstance(batch, np.ndarray):
            x = np.ascontiguousarray(batch, dtype=np.float32)
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        import torch

        if self.on_cuda and batch.is_cuda:
            return self._run_cuda_tensor(batch)
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        y = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return torch.from_numpy(y).to(batch.device, batch.dtype)

    def _run_cuda_tensor(self, batch):
        # Bind torch's device memory directly: no host round trip.
        import torch

        x = batch.detach().to(torch.float32).contiguous()
        y = torch.empty_like(x)
        binding = self.session.io_binding()
        dev = x.device.index or 0
        binding.bind_input(INPUT_NAME, "cuda", dev, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", dev, np.float32, tuple(y.shape), y.data_ptr())
        torch.cuda.current_stream(x.device).synchronize()
        self.session.run_with_iobinding(binding)
        return y.to(batch.dtype)
