"""The .tflite flatbuffer writer the TFLite engine builds its graphs with: tensors, constant
buffers (16-byte aligned) and operators of a one-subgraph model, through the TFLite schema's
generated Python object API plus `flatbuffers` (no converter, no torch, TensorFlow or JAX)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Optional

import numpy as np

from edge_eas.runtime.engines.base import EngineUnavailable
from edge_eas.runtime.engines.tflite_quant import (QuantParams, Range, Ranges, activation_params, bias_int32,
                                                   bias_scale_floor, scalar_const, symmetric_weight)

# edge_eas_tflite_schema: ai-edge-litert's schema, shipped by `edge_eas deploy` to tflite-runtime devices.
_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated",
                   "edge_eas_tflite_schema")
_BUFFER_ALIGNMENT = 16  # what the TFLite converter uses; keeps constant data aligned for the kernels
# the operator version an int8 input needs (TFLite's op_version.cc); others stay at 1
_INT8_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "MUL": 2, "MEAN": 2,
                  "PAD": 2, "SLICE": 2, "DEQUANTIZE": 2, "SOFTMAX": 2}


def load_schema() -> ModuleType:
    """The generated TFLite schema module (object API), or EngineUnavailable."""
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EngineUnavailable("building a .tflite model needs the TFLite schema")


class _AlignedBuffer:
    """A schema Buffer whose bytes start on a 16-byte boundary (the object API aligns to 1)."""

    def __init__(self, schema: ModuleType, data: bytes) -> None:
        self.schema, self.data = schema, data

    def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers object-API protocol
        n = len(self.data)
        builder.StartVector(1, n, _BUFFER_ALIGNMENT)
        builder.head = builder.head - n
        builder.Bytes[builder.head:builder.head + n] = self.data
        builder.vectorNumElems = n
        vec = builder.EndVector()
        self.schema.BufferStart(builder)
        self.schema.BufferAddData(builder, vec)
        return self.schema.BufferEnd(builder)


class GraphBuilder:
    """Accumulates tensors, constant buffers and operators of a one-subgraph model.

    With `ranges` (tensor name -> calibrated (min, max), tflite_quant.py) the graph is
    full-integer: activations are int8, weights int8 per channel, biases int32. Without, float32.
    The emitting code is the same for both: it asks for activations, weights, biases and scalars,
    and the builder types them. `max_dw_taps`: how the emitting code plans depthwise kernels."""

    def __init__(self, schema: ModuleType, ranges: Optional[Ranges] = None, max_dw_taps: Optional[int] = None
                 ) -> None:
        self.s = schema
        self.ranges = ranges
        self.max_dw_taps = max_dw_taps  # depthwise kernels above this many taps are split into row bands
        self.quant: dict[int, QuantParams] = {}  # tensor index -> its quantisation (integer graphs)
        self.names: set[str] = set()
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.opcodes: dict[int, int] = {}
        self.versions: dict[int, int] = {}  # per builtin: the highest version an operator needs

    @property
    def integer(self) -> bool:
        """Whether this is a full-integer graph."""
        return self.ranges is not None

    def tensor(self, shape: tuple[int, ...], name: str, data: Optional[np.ndarray] = None,
               dtype: str = "FLOAT32", quant: Optional[QuantParams] = None) -> int:
        if name in self.names:
            raise ValueError(f"two tensors are named {name!r}: calibrated ranges are looked up by name")
        self.names.add(name)
        t = self.s.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = getattr(self.s.TensorType, dtype)
        t.name = name
        if quant is not None:
            t.quantization = quant.to_schema(self.s)
        if data is not None:
            if tuple(data.shape) != tuple(shape):
                raise ValueError(f"constant {name}: data shape {data.shape} != tensor shape {shape}")
            self.buffers.append(_AlignedBuffer(self.s, np.ascontiguousarray(data).tobytes()))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        if quant is not None:
            self.quant[len(self.tensors) - 1] = quant
        return len(self.tensors) - 1

    def activation(self, shape: tuple[int, ...], name: str, like: Optional[int] = None,
                   span: Optional[Range] = None) -> int:
        """An activation tensor: float32, or in an integer graph int8 with the range calibrated
        for `name` - or `like`'s parameters, for ops whose int8 kernels keep their input's scale
        (PAD, SLICE, RESIZE_BILINEAR), or the range `span` that follows from another's."""
        if not self.integer:
            return self.tensor(shape, name)
        if like is not None:
            return self.tensor(shape, name, dtype="INT8", quant=self.quant[like])
        assert self.ranges is not None
        if span is None and name not in self.ranges:
            raise ValueError(f"no calibrated range for tensor {name!r}")
        return self.tensor(shape, name, dtype="INT8", quant=activation_params(*(span or self.ranges[name])))

    def span(self, tensor: int) -> Range:
        """The real range an int8 tensor represents."""
        q = self.quant[tensor]
        scale, zero = float(q.scale[0]), int(q.zero_point[0])
        return scale * (-128 - zero), scale * (127 - zero)

    def weight_and_bias(self, weight: np.ndarray, bias: np.ndarray, name: str, x: int,
                        axis: Optional[int]) -> tuple[int, int]:
        """The weight and bias of the op reading `x` (`name`/weight, `name`/bias): float32, or int8
        weights symmetric per slice along `axis` (None: per tensor) and the int32 bias at the
        product of x's scale and the weight's."""
        if not self.integer:
            return (self.const(weight.astype(np.float32), f"{name}/weight"),
                    self.const(bias.astype(np.float32), f"{name}/bias"))
        input_scale = float(self.quant[x].scale[0])
        q, params = symmetric_weight(weight, axis, floor=bias_scale_floor(bias, input_scale))
        w = self.tensor(tuple(q.shape), f"{name}/weight", q, "INT8", params)
        qb, bias_params = bias_int32(bias, input_scale, params)
        return w, self.tensor(tuple(qb.shape), f"{name}/bias", qb, "INT32", bias_params)

    def scalar(self, value: float, name: str) -> int:
        """A one-element constant operand (float32, or int8 holding the value at full scale)."""
        if not self.integer:
            return self.const(np.full((1,), value, np.float32), name)
        q, params = scalar_const(value)
        return self.tensor((1,), name, q, "INT8", params)

    def const(self, data: np.ndarray, name: str) -> int:
        dtype = {np.dtype(np.float32): "FLOAT32", np.dtype(np.int32): "INT32"}[data.dtype]
        return self.tensor(tuple(data.shape), name, data, dtype)

    def op(self, code: str, inputs: list[int], outputs: list[int], options: Any = None,
           options_type: str = "NONE", version: int = 1) -> None:
        """One operator; `version`: the operator version its options need (e.g. 3 for
        RESIZE_BILINEAR with half_pixel_centers), filed on its operator code."""
        builtin = getattr(self.s.BuiltinOperator, code)
        if inputs and self.tensors[inputs[0]].type == self.s.TensorType.INT8:
            version = max(version, _INT8_VERSIONS.get(code, 1))
        self.opcodes.setdefault(builtin, len(self.opcodes))
        self.versions[builtin] = max(version, self.versions.get(builtin, 1))
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcodes[builtin]
        o.inputs = np.asarray(inputs, dtype=np.int32)
        o.outputs = np.asarray(outputs, dtype=np.int32)
        o.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type)
        o.builtinOptions = options
        self.operators.append(o)

    def finish(self, inputs: list[int], outputs: list[int], description: str,
               signature: Optional[tuple[str, str, str]] = None, metadata: Optional[tuple[str, bytes]] = None) -> bytes:
        """The model; `signature` (key, input name, output name) names its one signature,
        `metadata` (name, bytes) adds a metadata entry."""
        import flatbuffers  # lazy: an optional extra (tflite); numpy-only devices import this module

        if metadata is not None:
            self.buffers.append(_AlignedBuffer(self.s, metadata[1]))
        sub = self.s.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        sub.inputs = np.asarray(inputs, dtype=np.int32)
        sub.outputs = np.asarray(outputs, dtype=np.int32)
        model = self.s.ModelT()
        model.version = 3
        model.description = description
        model.subgraphs = [sub]
        model.buffers = self.buffers
        if metadata is not None:
            entry = self.s.MetadataT()
            entry.name, entry.buffer = metadata[0], len(self.buffers) - 1
            model.metadata = [entry]
        if signature is not None:
            key, in_name, out_name = signature
            sig = self.s.SignatureDefT()
            sig.signatureKey, sig.subgraphIndex = key, 0
            sig.inputs, sig.outputs = [self.s.TensorMapT()], [self.s.TensorMapT()]
            sig.inputs[0].name, sig.inputs[0].tensorIndex = in_name, inputs[0]
            sig.outputs[0].name, sig.outputs[0].tensorIndex = out_name, outputs[0]
            model.signatureDefs = [sig]
        model.operatorCodes = []
        for builtin in sorted(self.opcodes, key=self.opcodes.__getitem__):
            oc = self.s.OperatorCodeT()
            # codes above 127 live only in builtinCode; 127 = PLACEHOLDER_FOR_GREATER_OP_CODES
            oc.builtinCode, oc.deprecatedBuiltinCode = builtin, min(builtin, 127)
            oc.version = self.versions[builtin]
            model.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
