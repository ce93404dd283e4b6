import copy
import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ideud.engines import EngineUnavailable, make_engine, model_fingerprint, resolve_backend  # noqa: E402
from ideud.engines.torch_engine import TorchEngine  # noqa: E402
from ideud.models.gfpgan import GFPGANv1Clean  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_TRT = importlib.util.find_spec("tensorrt") is not None

# Tolerance of torch (fp32) vs onnxruntime (fp32) on the same weights. Both compute
# the same graph in float32; they differ only in conv algorithms, summation order
# and ORT's graph fusions, which on this network measured max |diff| ~2e-6 for an
# output of magnitude ~2 (see test output). 1e-4 leaves ~50x headroom for other
# CPUs / MLAS kernels and is still 80x smaller than one 8-bit level of the final
# image (2/255 ~ 7.8e-3 in [-1, 1] units), so "passes" means "same picture".
ORT_ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return GFPGANv1Clean(narrow=0.125, num_style_feat=32).eval()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return (rng.random((3, 3, 512, 512), dtype=np.float32) * 2 - 1).astype(np.float32)


@pytest.fixture(scope="module")
def torch_out(tiny_net, batch):
    eng = TorchEngine(tiny_net, device="cpu", modconv="grouped", max_batch=4)  # the official form as reference
    return eng.run(batch)


def test_torch_engine_numpy_and_tensor_io(tiny_net, batch, torch_out):
    assert torch_out.shape == batch.shape and torch_out.dtype == np.float32
    assert np.isfinite(torch_out).all()
    eng = TorchEngine(tiny_net, device="cpu", modconv="shared", max_batch=2)  # 3 items -> chunks of 2 + 1
    t = eng.run(torch.from_numpy(batch[:1]))
    assert isinstance(t, torch.Tensor) and t.shape == (1, 3, 512, 512)
    np.testing.assert_allclose(t.numpy(), torch_out[:1], atol=1e-4)
    chunked = eng.run(batch)
    np.testing.assert_allclose(chunked, torch_out, atol=1e-4)
    assert eng.run(batch[:0]).shape == (0, 3, 512, 512)
    with pytest.raises(ValueError):
        eng.run(batch[0])


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnxruntime_matches_torch(tiny_net, batch, torch_out, tmp_path):
    eng = make_engine(tiny_net, "onnxruntime", device="cpu", cache_dir=tmp_path, max_batch=4)
    assert eng.providers[0] == "CPUExecutionProvider"
    got = eng.run(batch)  # exported with batch 1, run with batch 3: the batch axis is dynamic
    diff = float(np.abs(got - torch_out).max())
    print(f"torch vs onnxruntime max |diff| = {diff:.3g}")
    assert got.shape == torch_out.shape
    assert diff < ORT_ATOL
    # the same engine on torch tensors
    t = eng.run(torch.from_numpy(batch[:1]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), got[:1], atol=1e-6)


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnx_cache_is_keyed_by_weights(tiny_net, tmp_path):
    from ideud.engines.onnx_engine import cached_onnx

    small = GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32)
    p1 = cached_onnx(small, tmp_path, size=32)
    mtime = p1.stat().st_mtime_ns
    assert cached_onnx(small, tmp_path, size=32) == p1 and p1.stat().st_mtime_ns == mtime  # reused
    with torch.no_grad():
        small.final_conv.bias.add_(1.0)
    p2 = cached_onnx(small, tmp_path, size=32)
    assert p2 != p1 and p2.is_file()
    assert model_fingerprint(small) != model_fingerprint(GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32))


def test_warmup_runs_every_size_the_engine_will_see():
    small = GFPGANv1Clean(out_size=32, narrow=0.25, num_style_feat=32)
    eng = TorchEngine(small, device="cpu", max_batch=8)
    assert eng.warmup_sizes() == [1, 8]  # eager: not padded
    eng.warmup(size=32)
    from ideud.engines.torch_engine import _buckets

    assert _buckets(8) == [1, 2, 4, 8] and _buckets(6) == [1, 2, 4, 6]  # what compiled / graph engines see


def test_backend_resolution_and_errors(tiny_net):
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("ort") == "onnxruntime" and resolve_backend("trt") == "tensorrt"
    if not HAS_CUDA:
        assert resolve_backend("auto") == ("onnxruntime" if HAS_ORT else "torch")
        with pytest.raises(EngineUnavailable, match="fp16"):
            TorchEngine(tiny_net, device="cpu", dtype="fp16")
        with pytest.raises(EngineUnavailable, match="CUDA graphs"):
            TorchEngine(tiny_net, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError):
        resolve_backend("tflite")
    if not (HAS_TRT and HAS_CUDA):
        with pytest.raises(EngineUnavailable):
            make_engine(tiny_net, "tensorrt")


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
# fp32 convolutions on the GPU run in TF32 by default (cuDNN's allow_tf32): 10-bit mantissa, so
# fp32 gets fp16-like tolerance (measured on an H200: fp32 2.1e-3 vs the CPU).
@pytest.mark.parametrize("dtype,atol", [("fp32", 1e-2), ("fp16", 5e-2), ("bf16", 1e-1)])
def test_torch_cuda_graphs_match_cpu(tiny_net, batch, torch_out, dtype, atol):
    # the engine takes its model over (moves and casts it): give it a copy
    eng = TorchEngine(copy.deepcopy(tiny_net), device="cuda", dtype=dtype, cuda_graphs=True, channels_last=True,
                      max_batch=4)
    got = eng.run(batch)
    assert float(np.abs(got - torch_out).max()) < atol
    again = eng.run(batch[:2])  # replays the graph captured for bucket 2
    # a different batch size may get a different cuDNN algorithm: same result up to rounding
    # (H200: fp16 5.9e-3, bf16 2.3e-2)
    np.testing.assert_allclose(again, got[:2], atol=atol)
    t = eng.run(torch.from_numpy(batch).cuda())
    assert t.is_cuda


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_torch_compiled_cuda_matches_cpu(tiny_net, batch, torch_out):
    eng = TorchEngine(copy.deepcopy(tiny_net), device="cuda", dtype="fp16", compile=True, channels_last=True,
                      max_batch=4)
    got = eng.run(batch)  # 3 faces, padded to the bucket of 4
    assert got.shape == batch.shape
    assert float(np.abs(got - torch_out).max()) < 5e-2  # fp16 compute, as the CUDA-graph test


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_measure_throughput_with_device_input(tiny_net):
    from ideud.engines.base import measure_throughput

    eng = TorchEngine(copy.deepcopy(tiny_net), device="cuda", dtype="fp16", max_batch=2)
    r = measure_throughput(eng, 2, iters=2, device="cuda")
    assert r["input"] == "cuda" and r["faces_per_s"] > 0


@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="needs TensorRT and CUDA")
def test_tensorrt_matches_torch(tiny_net, batch, torch_out, tmp_path):
    eng = make_engine(copy.deepcopy(tiny_net), "tensorrt", cache_dir=tmp_path, max_batch=2, fp16=True, streams=2)
    got = eng.run(batch)  # 3 items over 2 streams: chunks of 2 and 1
    assert float(np.abs(got - torch_out).max()) < 5e-2  # fp16 compute
    t = eng.run(torch.from_numpy(batch).cuda())
    np.testing.assert_allclose(t.cpu().numpy(), got, atol=1e-3)
    plans = list((tmp_path / "trt").glob("*.plan"))
    assert len(plans) == 1
    eng2 = make_engine(tiny_net, "tensorrt", cache_dir=tmp_path, max_batch=2, fp16=True, streams=2)
    assert eng2.plan_path == plans[0]  # cached plan reused
