"""A minimal ONNX model writer: protobuf wire format by hand, so that a graph built at run time
needs neither the `onnx` package nor protobuf's generated classes (only onnxruntime loads it).

Covers what models/dlib_resnet_onnx.py writes: nodes with int / int-list attributes, raw-data
initializers (float32, uint8, int64), tensor inputs/outputs with fixed or named dimensions.
Field numbers are onnx.proto's (proto2); fields go out in field-number order, repeated scalars
unpacked: the bytes are what onnx's own serializer writes for the same model, which
tests/test_dlib_resnet_onnx.py checks when `onnx` is installed.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

# TensorProto.DataType
FLOAT, UINT8, INT64 = 1, 2, 7
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int64): INT64}
# AttributeProto.AttributeType
_ATTR_INT, _ATTR_INTS = 2, 7


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _int_field(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(int(value))


def _bytes_field(num: int, payload: Union[bytes, str]) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def attribute(name: str, value) -> bytes:
    if isinstance(value, (list, tuple)):
        return (_bytes_field(1, name) + b"".join(_int_field(8, v) for v in value)
                + _int_field(20, _ATTR_INTS))
    return _bytes_field(1, name) + _int_field(3, value) + _int_field(20, _ATTR_INT)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "", **attrs) -> bytes:
    """A NodeProto; attributes (ints or int lists) in name order, as onnx.helper.make_node writes them."""
    out = b"".join(_bytes_field(1, i) for i in inputs) + b"".join(_bytes_field(2, o) for o in outputs)
    if name:
        out += _bytes_field(3, name)
    out += _bytes_field(4, op_type)
    return out + b"".join(_bytes_field(5, attribute(k, attrs[k])) for k in sorted(attrs))


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto holding `array` as little-endian raw data."""
    a = np.asarray(array)
    dtype = _DTYPES[a.dtype]
    raw = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
    return (b"".join(_int_field(1, d) for d in a.shape) + _int_field(2, dtype)
            + _bytes_field(8, name) + _bytes_field(9, raw))


def value_info(name: str, elem_type: int, dims: Sequence[Union[int, str]]) -> bytes:
    shape = b"".join(_bytes_field(1, _bytes_field(2, d) if isinstance(d, str) else _int_field(1, d))
                     for d in dims)
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, shape)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def model(nodes: Sequence[bytes], graph_name: str, inputs: Sequence[bytes], outputs: Sequence[bytes],
          initializers: Sequence[bytes], opset: int, ir_version: int, producer: str) -> bytes:
    """A serialized ModelProto (default-domain opset `opset`)."""
    graph = (b"".join(_bytes_field(1, n) for n in nodes) + _bytes_field(2, graph_name)
             + b"".join(_bytes_field(5, t) for t in initializers)
             + b"".join(_bytes_field(11, v) for v in inputs) + b"".join(_bytes_field(12, v) for v in outputs))
    opset_id = _bytes_field(1, "") + _int_field(2, opset)
    return (_int_field(1, ir_version) + _bytes_field(2, producer) + _bytes_field(7, graph)
            + _bytes_field(8, opset_id))
