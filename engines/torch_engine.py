"""PyTorch backend: eager, torch.compile and CUDA graphs, fp32/fp16/bf16, channels_last.

With `compile` or `cuda_graphs` the batch is padded up to a power of two
(<= max_batch) so only a handful of shapes are ever compiled or captured.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ideud.engines.base import Engine, EngineUnavailable

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def inference_module(model: nn.Module, modconv: Optional[str] = "shared") -> nn.Module:
    """The tensor -> tensor module an engine runs: GFPGAN gets its image-only view."""
    from ideud.models.gfpgan import GFPGANImage, GFPGANv1Clean

    if isinstance(model, GFPGANImage):
        model = model.net
    if isinstance(model, GFPGANv1Clean):
        if modconv:
            model.set_modconv(modconv)
        return GFPGANImage(model).eval()
    return model.eval()


def _buckets(max_batch: int) -> list:
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return out + [max_batch]


class TorchEngine(Engine):
    """Runs a torch module. The engine takes the model over (moves it, may switch its modconv form)."""

    def __init__(
        self,
        model: nn.Module,
        device: Optional[str] = None,
        dtype: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        modconv: Optional[str] = "shared",
        max_batch: int = 8,
        compile_mode: Optional[str] = None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailable("torch engine: CUDA requested but torch sees no CUDA device")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if dtype == "fp16" and self.device.type != "cuda":
            raise EngineUnavailable("torch engine: fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
        if cuda_graphs and self.device.type != "cuda":
            raise EngineUnavailable("torch engine: CUDA graphs need a CUDA device")
        if self.device.type == "cuda":
            # batches are padded to a few bucket sizes, so per-shape algorithm search pays off
            torch.backends.cudnn.benchmark = True
        self.dtype = DTYPES[dtype]
        self.dtype_name = dtype
        self.channels_last = channels_last
        self.max_batch = max_batch
        self.cuda_graphs = cuda_graphs and not compile  # compiled + graphs: inductor's own cudagraphs
        self.compiled = compile
        self.module = inference_module(model, modconv).to(self.device, self.dtype)
        if channels_last:
            # Only 4-D conv weights take the layout; modulated-conv weights are 5-D.
            for m in self.module.modules():
                if isinstance(m, nn.Conv2d):
                    m.to(memory_format=torch.channels_last)
        self.modconv = getattr(getattr(self.module, "net", None), "modconv", None)

        self._fn = self.module
        if compile:
            mode = compile_mode or ("reduce-overhead" if cuda_graphs else None)
            self._fn = torch.compile(self.module, mode=mode, dynamic=False)
        self._graphs: dict = {}
        self._pad = compile or self.cuda_graphs
        self._bucket_sizes = _buckets(max_batch)
        self.name = "torch" + ("-compiled" if compile else "") + ("-cudagraphs" if cuda_graphs else "")

    def describe(self) -> str:
        return f"{self.name} {self.device} {self.dtype_name} modconv={self.modconv} max_batch={self.max_batch}"

    def _prepare(self, batch) -> torch.Tensor:
        if isinstance(batch, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if self.device.type == "cuda":
                x = x.pin_memory()
        else:
            x = batch
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def warmup_sizes(self) -> list:
        # padded engines see only the bucket sizes; eager ones any size (each new one is tuned once)
        return list(self._bucket_sizes) if self._pad else [1, self.max_batch]

    def _bucket(self, n: int) -> int:
        return next(b for b in self._bucket_sizes if b >= n)

    @torch.inference_mode()
    def _run(self, batch):
        x = self._prepare(batch)
        n = x.shape[0]
        if self.cuda_graphs:
            y = self._replay(x)
        else:
            if self._pad and n != self._bucket(n):
                pad = x.new_zeros((self._bucket(n) - n, *x.shape[1:]))
                x = torch.cat([x, pad])
            y = self._fn(x)[:n]
        if isinstance(batch, np.ndarray):
            return y.float().cpu().numpy()
        return y.to(batch.device, batch.dtype)

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        size = self._bucket(n)
        key = (size, tuple(x.shape[1:]))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(size, x)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        static_in[:n].copy_(x)
        graph.replay()
        return static_out[:n].clone()

    def _capture(self, size: int, like: torch.Tensor):
        static_in = torch.zeros((size, *like.shape[1:]), device=self.device, dtype=self.dtype)
        if self.channels_last:
            static_in = static_in.contiguous(memory_format=torch.channels_last)
        # Warm up on a side stream so lazy cuDNN/cuBLAS initialisation is not captured.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.module(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(static_in)
        return graph, static_in, static_out

    def close(self) -> None:
        self._graphs.clear()
