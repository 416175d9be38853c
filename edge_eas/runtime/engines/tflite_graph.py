"""The .tflite flatbuffer writer the TFLite engine builds its graphs with: tensors, constant
buffers (16-byte aligned) and operators of a one-subgraph model, through the TFLite schema's
generated Python object API plus `flatbuffers` (no converter, no torch, TensorFlow or JAX)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Optional

import numpy as np

from edge_eas.runtime.engines.base import EngineUnavailable

# edge_eas_tflite_schema: ai-edge-litert's schema, shipped by `edge_eas deploy` to tflite-runtime devices.
_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated",
                   "edge_eas_tflite_schema")
_BUFFER_ALIGNMENT = 16  # what the TFLite converter uses; keeps constant data aligned for the kernels


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
    """Accumulates tensors, constant buffers and operators of a one-subgraph model."""

    def __init__(self, schema: ModuleType) -> None:
        self.s = schema
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.opcodes: dict[int, int] = {}
        self.versions: dict[int, int] = {}  # per builtin: the highest version an operator needs

    def tensor(self, shape: tuple[int, ...], name: str, data: Optional[np.ndarray] = None,
               dtype: str = "FLOAT32") -> int:
        t = self.s.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = getattr(self.s.TensorType, dtype)
        t.name = name
        if data is not None:
            if tuple(data.shape) != tuple(shape):
                raise ValueError(f"constant {name}: data shape {data.shape} != tensor shape {shape}")
            self.buffers.append(_AlignedBuffer(self.s, np.ascontiguousarray(data).tobytes()))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, data: np.ndarray, name: str) -> int:
        dtype = {np.dtype(np.float32): "FLOAT32", np.dtype(np.int32): "INT32"}[data.dtype]
        return self.tensor(tuple(data.shape), name, data, dtype)

    def op(self, code: str, inputs: list[int], outputs: list[int], options: Any = None,
           options_type: str = "NONE", version: int = 1) -> None:
        """One operator; `version`: the operator version its options need (e.g. 3 for
        RESIZE_BILINEAR with half_pixel_centers), filed on its operator code."""
        builtin = getattr(self.s.BuiltinOperator, code)
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
