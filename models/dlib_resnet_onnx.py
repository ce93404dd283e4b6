"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) on onnxruntime.

dlib-bin is built without BLAS: one 150x150 chip costs ~80 ms and holds Python's GIL throughout.
The same network, read from the same .dat and written as an ONNX graph, runs on onnxruntime
(which releases the GIL) several times faster and gives the same 128-d descriptors (float32
rounding apart: tests/test_dlib_resnet_onnx.py bounds the difference against dlib itself).

The .dat is dlib's own serialization of
    loss_metric<fc_no_bias<128, avg_pool_everything<ResNet>>> over input_rgb_image_sized<150>
(the network of dlib's examples/dnn_face_recognition_ex.cpp). Its layout, read from dlib's
serialize.h / dnn/core.h / dnn/layers.h / cuda/tensor.h:

* integers: a control byte (bit 7 = negative, low 4 bits = byte count), then |value| little-endian;
  strings: length (integer) + bytes; bools: ASCII '0'/'1'; floats: mantissa then exponent as
  integers (value = mantissa * 2**exponent); tensors: version 2, four integer dims (n, k, nr, nc),
  then raw little-endian IEEE float32; alias tensors (views into a layer's `params`): version 1 +
  four dims.
* a network is written top-down: each add_layer writes its version, its whole subnetwork, then its
  own layer details (and training buffers); tag and skip layers write version 1 + subnetwork only.
  So the file holds the node list top-down, then the layer details bottom-up.

The ONNX is built on first use from the installed .dat (~0.5 s, byte-for-byte reproducible) and
cached next to the project's other model files (registry.default_models_dir()/dlib_onnx), named
by the .dat's SHA-256; a cache file whose bytes do not match the hash recorded at build time is
rebuilt. Neither building nor running needs the `onnx` package (models/onnx_writer.py writes the
protobuf); onnxruntime runs it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ideud.models import onnx_writer as ow
from ideud.models.onnx_cpu import RECOGNIZER_THREADS, cpu_session_options

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP = 150
DIM = 128
ONNX_OPSET = 17
# bumped whenever the graph this module writes changes, so an old cache is not reused
GRAPH_VERSION = 2


class DatFormatError(ValueError):
    """The .dat is not the dlib face-recognition ResNet this module knows how to read."""


# ---------------------------------------------------------------------------------------------
# dlib's serialization format


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DatFormatError("unexpected end of file")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int_(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise DatFormatError(f"bad integer control byte {ctrl:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def bool_(self) -> bool:
        b = self._take(1)
        if b not in (b"0", b"1"):
            raise DatFormatError(f"bad bool at {self.pos - 1}")
        return b == b"1"

    def string(self) -> str:
        n = self.int_()
        if not 0 <= n < 4096:
            raise DatFormatError(f"implausible string length {n}")
        return self._take(n).decode("ascii", "replace")

    def float_(self) -> float:
        mantissa, exponent = self.int_(), self.int_()
        if exponent >= 32000:  # dlib's float_details markers: 32000 inf, 32001 -inf, 32002 nan
            return {32000: np.inf, 32001: -np.inf}.get(exponent, np.nan)
        return float(np.ldexp(float(mantissa), exponent))

    def _dims(self, version: int, what: str) -> tuple[int, int, int, int]:
        v = self.int_()
        if v != version:
            raise DatFormatError(f"{what} version {v}, expected {version}")
        return tuple(self.int_() for _ in range(4))

    def tensor(self) -> np.ndarray:
        dims = self._dims(2, "tensor")
        count = int(np.prod(dims))
        return np.frombuffer(self._take(4 * count), "<f4").reshape(dims).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        return self._dims(1, "alias_tensor")

    def peek_string(self) -> Optional[str]:
        start = self.pos
        try:
            return self.string()
        except DatFormatError:
            return None
        finally:
            self.pos = start


@dataclass
class Layer:
    kind: str                      # con, affine, relu, max_pool, avg_pool, add_prev, fc
    arrays: dict = field(default_factory=dict)
    ints: dict = field(default_factory=dict)


def _split(params: np.ndarray, shapes: Sequence[tuple]) -> list[np.ndarray]:
    """A layer's `params` cut into its alias tensors, in order."""
    flat = params.reshape(-1)
    out, at = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[at:at + n].reshape(s))
        at += n
    if at != flat.size:
        raise DatFormatError(f"params hold {flat.size} values, aliases {at}")
    return out


def _layer_details(r: _Reader) -> Layer:
    version = r.string()
    if version in ("con_4", "con_5", "con_6"):
        params = r.tensor()
        ints = dict(zip(("filters", "nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"),
                        (r.int_() for _ in range(7))))
        fshape, bshape = r.alias(), r.alias()
        for _ in range(4):
            r.float_()  # learning-rate / weight-decay multipliers
        use_bias = r.bool_() if version != "con_4" else True
        if version == "con_6" and r.bool_():
            raise DatFormatError("con_ with a fused relu is not expected in this network")
        w, b = _split(params, [fshape, bshape]) if params.size else (None, None)
        arrays = {"w": w}
        if use_bias and b is not None:
            arrays["b"] = b.reshape(-1)
        return Layer("con", arrays, ints)
    if version in ("affine_", "affine_2"):
        params = r.tensor()
        gshape, bshape = r.alias(), r.alias()
        mode = r.int_()
        if version == "affine_2" and r.bool_():
            raise DatFormatError("disabled affine layer not expected")
        gamma, beta = _split(params, [gshape, bshape])
        return Layer("affine", {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}, {"mode": mode})
    if version in ("relu_", "relu_2"):
        if version == "relu_2" and r.bool_():
            raise DatFormatError("disabled relu not expected")
        return Layer("relu")
    if version in ("max_pool_2", "avg_pool_2"):
        ints = dict(zip(("nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"), (r.int_() for _ in range(6))))
        return Layer(version[:-2], {}, ints)
    if version == "add_prev_":
        return Layer("add_prev")
    if version in ("fc_2", "fc_3"):
        outputs, inputs = r.int_(), r.int_()
        params = r.tensor()
        wshape, bshape = r.alias(), r.alias()
        bias_mode = r.int_()
        for _ in range(4):
            r.float_()
        if version == "fc_3":
            r.bool_()
        shapes = [wshape] + ([bshape] if bias_mode == 0 else [])
        parts = _split(params, shapes)
        w = parts[0].reshape(inputs, outputs)  # dlib's fc: output = input (n x inputs) @ W
        arrays = {"w": w}
        if bias_mode == 0:
            arrays["b"] = parts[1].reshape(-1)
        return Layer("fc", arrays, {"outputs": outputs})
    raise DatFormatError(f"layer {version!r} not expected in dlib's face ResNet")


@dataclass
class DlibNet:
    mean_rgb: tuple[float, float, float]
    input_size: int
    nodes: list  # bottom-up: Layer, or the string "tag_or_skip"


def parse_dat(data: bytes) -> DlibNet:
    """The layers of dlib's metric-loss network, bottom-up."""
    r = _Reader(data)
    if r.int_() != 1 or r.string() not in ("loss_metric_", "loss_metric_2"):
        raise DatFormatError("not a dlib loss_metric network")
    r.float_(), r.float_()  # margin, distance threshold (training only)
    versions = []  # top-down
    while True:
        v = r.int_()
        s = r.peek_string()
        if s is not None and s.startswith("input"):
            break
        if v not in (1, 2):
            raise DatFormatError(f"node version {v}")
        versions.append(v)
        if len(versions) > 10_000:
            raise DatFormatError("no input layer")
    input_version = v
    if r.string() != "input_rgb_image_sized":
        raise DatFormatError("input layer is not input_rgb_image_sized")
    mean = (r.float_(), r.float_(), r.float_())
    nr, nc = r.int_(), r.int_()
    if nr != nc:
        raise DatFormatError("non-square input")

    def training_buffers(extra_int: bool):
        for _ in range(3):
            r.bool_()
        for _ in range(3):
            r.tensor()  # x_grad, cached output, gradient buffers (empty in a cleaned net)
        if extra_int:
            r.int_()  # sample expansion factor

    nodes = [_layer_details(r)]
    training_buffers(input_version >= 3)
    for v in reversed(versions):
        if v == 2:
            nodes.append(_layer_details(r))
            training_buffers(False)
        else:
            nodes.append("tag_or_skip")
    if r.pos != len(r.data):
        raise DatFormatError(f"{len(r.data) - r.pos} trailing bytes")
    return DlibNet(mean, nr, nodes)


def _signature(nodes) -> str:
    return " ".join(n if isinstance(n, str) else n.kind for n in nodes)


def _expected_signature() -> str:
    """dnn_face_recognition_ex.cpp's network, bottom-up: con-affine-relu-max_pool, then blocks
    (ares: tag1 con affine relu con affine add_prev1 relu; ares_down: tag1, the block with a
    stride-2 first conv, tag2, skip1 (back to tag1), avg_pool, add_prev2 relu)."""
    ares = "tag_or_skip con affine relu con affine add_prev relu"
    ares_down = "tag_or_skip con affine relu con affine tag_or_skip tag_or_skip avg_pool add_prev relu"
    # alevel4 (3 x ares<32>), alevel3 (ares_down<64> + 3 x ares<64>), alevel2 and alevel1
    # (ares_down + 2 x ares, 128 and 256), alevel0 (ares_down<256>): 29 convolutions in all
    blocks = [ares] * 3 + [ares_down] + [ares] * 3 + [ares_down] + [ares] * 2 + [ares_down] + \
             [ares] * 2 + [ares_down]
    return " ".join(["con affine relu max_pool"] + blocks + ["avg_pool fc"])


# ---------------------------------------------------------------------------------------------
# the ONNX graph


def build_onnx(net: DlibNet) -> bytes:
    """The serialized ONNX model: input `chips` (N, 150, 150, 3) uint8 RGB, output `descriptors`
    (N, 128) float32. Written by models/onnx_writer.py: the `onnx` package is not needed."""
    if _signature(net.nodes) != _expected_signature():
        raise DatFormatError("layer sequence differs from dlib's face-recognition ResNet")
    inits, graph_nodes = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(arr, prefix="c"):
        n = name(prefix)
        inits.append(ow.tensor(n, np.asarray(arr)))
        return n

    def op(kind, inputs, **attrs):
        out = name(kind.lower())
        graph_nodes.append([kind, list(inputs), out, attrs])
        return out

    size = net.input_size
    x = op("Cast", ["chips"], to=ow.FLOAT)
    # dlib's input layer: (pixel - channel mean) / 256, channel planes in R, G, B order
    x = op("Sub", [x, const(np.asarray(net.mean_rgb, np.float32).reshape(1, 1, 1, 3))])
    x = op("Div", [x, const(np.float32(256.0))])
    x = op("Transpose", [x], perm=[0, 3, 1, 2])
    shape = (3, size, size)  # (channels, rows, cols), tracked for add_prev's zero padding
    tags = []
    nodes = net.nodes
    for i, layer in enumerate(nodes):
        prev_is_tag = i > 0 and nodes[i - 1] == "tag_or_skip"
        if layer == "tag_or_skip":
            if prev_is_tag:  # skip1 right after tag2: back to the block's input (tag1)
                x, shape = tags[-2]
            else:
                tags.append((x, shape))
            continue
        if layer.kind == "con":
            li = layer.ints
            w = layer.arrays["w"]
            ins = [x, const(w)] + ([const(layer.arrays["b"])] if "b" in layer.arrays else [])
            x = op("Conv", ins, kernel_shape=[li["nr"], li["nc"]], strides=[li["stride_y"], li["stride_x"]],
                   pads=[li["pad_y"], li["pad_x"], li["pad_y"], li["pad_x"]])
            shape = (w.shape[0], 1 + (shape[1] + 2 * li["pad_y"] - li["nr"]) // li["stride_y"],
                     1 + (shape[2] + 2 * li["pad_x"] - li["nc"]) // li["stride_x"])
        elif layer.kind == "affine":
            c = shape[0]
            x = op("Mul", [x, const(layer.arrays["gamma"].reshape(1, c, 1, 1))])
            x = op("Add", [x, const(layer.arrays["beta"].reshape(1, c, 1, 1))])
        elif layer.kind == "relu":
            x = op("Relu", [x])
        elif layer.kind in ("max_pool", "avg_pool"):
            li = layer.ints
            if li["nr"] == 0 and li["nc"] == 0:  # avg_pool_everything
                x = op("GlobalAveragePool", [x])
                shape = (shape[0], 1, 1)
            else:
                kind = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
                x = op(kind, [x], kernel_shape=[li["nr"], li["nc"]], strides=[li["stride_y"], li["stride_x"]],
                       pads=[li["pad_y"], li["pad_x"], li["pad_y"], li["pad_x"]])
                shape = (shape[0], 1 + (shape[1] + 2 * li["pad_y"] - li["nr"]) // li["stride_y"],
                         1 + (shape[2] + 2 * li["pad_x"] - li["nc"]) // li["stride_x"])
        elif layer.kind == "add_prev":
            # dlib adds tensors of different sizes into the larger one, missing values as zero
            # (at the end of channels, rows and columns)
            other, oshape = tags[-1]
            tags.clear()
            full = tuple(max(a, b) for a, b in zip(shape, oshape))
            x = _pad_to(op, const, x, shape, full)
            other = _pad_to(op, const, other, oshape, full)
            x = op("Add", [x, other])
            shape = full
        elif layer.kind == "fc":
            x = op("Flatten", [x], axis=1)
            x = op("MatMul", [x, const(layer.arrays["w"])])
            if "b" in layer.arrays:
                x = op("Add", [x, const(layer.arrays["b"])])
    graph_nodes[-1][2] = "descriptors"
    return ow.model(
        [ow.node(kind, ins, [out], **attrs) for kind, ins, out, attrs in graph_nodes],
        "dlib_face_recognition_resnet_model_v1",
        [ow.value_info("chips", ow.UINT8, ["n", size, size, 3])],
        [ow.value_info("descriptors", ow.FLOAT, ["n", DIM])], inits,
        opset=ONNX_OPSET, ir_version=8,  # IR 8: readable by onnxruntime >= 1.17 (the package's floor)
        producer="ideud.models.dlib_resnet_onnx")


def _pad_to(op, const, x, shape, full):
    if tuple(shape) == tuple(full):
        return x
    pads = [0, 0, 0, 0, 0, full[0] - shape[0], full[1] - shape[1], full[2] - shape[2]]
    return op("Pad", [x, const(np.asarray(pads, np.int64), "pads")])


# ---------------------------------------------------------------------------------------------
# cache and runtime


def dat_path() -> Path:
    from ideud.models.recognizer import model_dir

    return model_dir() / DAT_NAME


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_onnx(dat: Optional[os.PathLike] = None, cache_dir: Optional[os.PathLike] = None) -> Path:
    """The ONNX file for `dat` (default: the installed one), built and cached if missing or corrupt.

    Named by the .dat's SHA-256 (and GRAPH_VERSION); a `.sha256` file beside it holds the ONNX
    bytes' own hash, checked on every load (`onnx_bytes`), so a damaged file is rebuilt, not run."""
    return _cache(dat, cache_dir)[0]


def _cache(dat: Optional[os.PathLike], cache_dir: Optional[os.PathLike]) -> tuple[Path, bytes]:
    """`cached_onnx`'s file and its bytes: read and checked once, or built and written."""
    data = (Path(dat) if dat else dat_path()).read_bytes()
    if cache_dir is None:
        from ideud.models.registry import default_models_dir

        cache_dir = default_models_dir() / "dlib_onnx"
    cache_dir = Path(cache_dir)
    target = cache_dir / f"dlib_resnet_{_digest(data)[:16]}_g{GRAPH_VERSION}.onnx"
    blob = _verified(target)
    if blob is None:
        blob = build_onnx(parse_dat(data))
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(target.with_suffix(".sha256"), _digest(blob).encode())
        _write_atomic(target, blob)
    return target, blob


def _write_atomic(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)  # a concurrent reader sees the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verified(path: Path) -> Optional[bytes]:
    """The file's bytes if they match the hash recorded when it was built, else None."""
    try:
        blob = path.read_bytes()
        want = path.with_suffix(".sha256").read_text().strip()
    except OSError:
        return None
    return blob if _digest(blob) == want else None


def onnx_bytes(dat: Optional[os.PathLike] = None, cache_dir: Optional[os.PathLike] = None) -> bytes:
    """The verified ONNX model for `dat` (built and cached on first use; the bytes checked are the
    bytes returned). A cache that cannot be written (read-only home): built in memory instead."""
    try:
        return _cache(dat, cache_dir)[1]
    except OSError:
        return build_onnx(parse_dat(Path(dat or dat_path()).read_bytes()))


class DlibResnetOnnx:
    """dlib's face descriptor on onnxruntime: `embed_chips` as FaceRecognizer.embed_chips.
    Threads: models/onnx_cpu.py."""

    def __init__(self, dat: Optional[os.PathLike] = None, threads: int = RECOGNIZER_THREADS,
                 cache_dir: Optional[os.PathLike] = None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes(dat, cache_dir), cpu_session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float32 descriptors of aligned 150x150 RGB uint8 chips."""
        if len(chips) == 0:
            return np.zeros((0, DIM), np.float32)
        batch = np.stack([np.asarray(c, np.uint8) for c in chips])
        if batch.shape[1:] != (CHIP, CHIP, 3):
            raise ValueError(f"chips must be {CHIP}x{CHIP}x3, got {batch.shape[1:]}")
        return self.session.run(["descriptors"], {"chips": batch})[0]


class _Loading(threading.Thread):
    """A DlibResnetOnnx made on a thread until the first embedding (~0.3 s of a run's start, off the
    interpreter lock: the .dat hashed, the cached ONNX read and checked, the session). `get()`: its
    embed_chips, or None where it could not be made (one warning, on the caller's thread)."""

    def __init__(self, dat: Path):
        super().__init__(name="dlib-onnx-load", daemon=True)
        self.dat, self.embed, self.error = dat, None, None
        self.start()

    def run(self) -> None:
        try:
            self.embed = DlibResnetOnnx(self.dat).embed_chips
        except Exception as e:  # onnx missing, unknown .dat, unwritable cache, ...: dlib itself
            self.error = e

    def get(self) -> Optional[Callable]:
        self.join()
        if self.error is not None:  # said once: the error is dropped, `embed` stays None
            error, self.error = self.error, None
            warnings.warn(f"dlib ResNet on onnxruntime unavailable ({type(error).__name__}: {error}); "
                          "using dlib (slower)", RuntimeWarning, stacklevel=3)
        return self.embed


_instances: dict = {}
_instances_lock = threading.Lock()


def dlib_embedder(recognizer) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """`recognizer.embed_chips` run on onnxruntime from the same .dat, one session per .dat per process
    (made on a thread while the run starts); dlib's own where that fails (`_Loading`)."""
    from ideud.models.recognizer import model_dir

    dat = Path(getattr(recognizer, "_dir", None) or model_dir()) / DAT_NAME
    with _instances_lock:
        loading = _instances.get(dat) or _instances.setdefault(dat, _Loading(dat))

    def embed(chips: Sequence[np.ndarray]) -> np.ndarray:
        with _instances_lock:  # the first caller waits for the session (or the warning) alone
            onnx = loading.get()
        return (onnx or recognizer.embed_chips)(chips)

    return embed
