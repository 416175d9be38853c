"""The .onnx writer the onnxruntime engine builds its graphs with: ONNX's ModelProto in protobuf's
wire format, written directly.

Why not the `onnx` package's helpers: they pull in `onnx` (a 17 MB wheel, plus protobuf and
ml_dtypes) whose wheels lag behind the Pythons a Jetson's JetPack ships, while onnxruntime alone
can run the bytes. The subset written here (a graph of nodes, float/int64 initialisers as raw
data, int/float/string attributes, typed inputs and outputs, string metadata) is small and
stable; the tests check every graph it writes with `onnx.checker` on the host. numpy only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

OPSET = 14          # HardSwish is opset 14; onnxruntime 1.9+ (JetPack 4.6's Python 3.6 wheels) runs it
IR_VERSION = 8      # the IR of ONNX 1.10+, which that onnxruntime reads
PRODUCER = "edge_eas"

# TensorProto.DataType
FLOAT, UINT8, INT64 = 1, 2, 7
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int64): INT64}
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7

Dim = Union[int, str]  # a fixed size, or the name of a dynamic one ("N")
AttrValue = Union[int, float, str, Sequence[int]]


# --- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) -------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, value: Union[bytes, str]) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _float_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


# --- ONNX messages (field numbers from onnx/onnx.proto) -------------------------------------------

def _tensor(name: str, data: np.ndarray) -> bytes:
    """TensorProto: dims, data_type, name, raw_data (little-endian)."""
    dtype = _DTYPES[data.dtype]
    dims = b"".join(_int_field(1, int(d)) for d in data.shape)
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return dims + _int_field(2, dtype) + _bytes_field(8, name) + _bytes_field(9, raw)


def _value_info(name: str, elem_type: int, shape: Sequence[Dim]) -> bytes:
    """ValueInfoProto with a tensor type: a dim is a dim_value (int) or a dim_param (str)."""
    dims = b"".join(_bytes_field(1, _bytes_field(2, d) if isinstance(d, str) else _int_field(1, d)) for d in shape)
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, dims)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def _attribute(name: str, value: AttrValue) -> bytes:
    if isinstance(value, bool) or isinstance(value, int):
        return _bytes_field(1, name) + _int_field(20, _ATTR_INT) + _int_field(3, int(value))
    if isinstance(value, float):
        return _bytes_field(1, name) + _int_field(20, _ATTR_FLOAT) + _float_field(2, value)
    if isinstance(value, str):
        return _bytes_field(1, name) + _int_field(20, _ATTR_STRING) + _bytes_field(4, value)
    return _bytes_field(1, name) + _int_field(20, _ATTR_INTS) + b"".join(_int_field(8, int(v)) for v in value)


@dataclass(frozen=True)
class Node:
    """One operator: inputs (an empty name leaves an optional input out), outputs, attributes."""

    op_type: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    name: str
    attributes: Tuple[Tuple[str, AttrValue], ...] = ()

    def encode(self) -> bytes:
        return (b"".join(_bytes_field(1, i) for i in self.inputs) + b"".join(_bytes_field(2, o) for o in self.outputs)
                + _bytes_field(3, self.name) + _bytes_field(4, self.op_type)
                + b"".join(_bytes_field(5, _attribute(k, v)) for k, v in self.attributes))


@dataclass
class OnnxGraph:
    """Accumulates the nodes and initialisers of one graph; `finish` writes the model."""

    nodes: List[Node] = field(default_factory=list)
    initializers: Dict[str, np.ndarray] = field(default_factory=dict)
    names: set = field(default_factory=set)

    def _claim(self, name: str) -> str:
        if name in self.names:
            raise ValueError(f"two values are named {name!r}")
        self.names.add(name)
        return name

    def const(self, data: np.ndarray, name: str) -> str:
        """A constant (float32, uint8 or int64) the graph reads by name."""
        data = np.asarray(data)
        if data.dtype not in _DTYPES:
            raise ValueError(f"constant {name}: no ONNX type written here for {data.dtype}")
        self.initializers[self._claim(name)] = data
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attributes: AttrValue) -> str:
        """One node with one output, named `name` (its node carries the same name)."""
        self.nodes.append(Node(op_type, tuple(inputs), (self._claim(name),), name, tuple(sorted(attributes.items()))))
        return name

    def finish(self, inputs: Sequence[Tuple[str, int, Sequence[Dim]]], outputs: Sequence[Tuple[str, int, Sequence[Dim]]],
               description: str, metadata: Optional[Dict[str, str]] = None) -> bytes:
        """The ModelProto: `inputs`/`outputs` as (name, element type, shape); `metadata` becomes
        metadata_props (onnxruntime reads it as the session's custom_metadata_map)."""
        graph = (b"".join(_bytes_field(1, n.encode()) for n in self.nodes) + _bytes_field(2, "main")
                 + b"".join(_bytes_field(5, _tensor(k, v)) for k, v in self.initializers.items())
                 + _bytes_field(10, description)
                 + b"".join(_bytes_field(11, _value_info(*i)) for i in inputs)
                 + b"".join(_bytes_field(12, _value_info(*o)) for o in outputs))
        opset = _bytes_field(1, "") + _int_field(2, OPSET)
        props = b"".join(_bytes_field(14, _bytes_field(1, k) + _bytes_field(2, v)) for k, v in (metadata or {}).items())
        return (_int_field(1, IR_VERSION) + _bytes_field(2, PRODUCER) + _bytes_field(6, description)
                + _bytes_field(7, graph) + _bytes_field(8, opset) + props)
