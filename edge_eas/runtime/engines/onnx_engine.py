"""ONNX Runtime engine: write an .onnx graph straight from a FoldedNet, run it with onnxruntime on
the best execution provider the device has (TensorRT, CUDA, else the CPU; onnx_providers.py).

No converter and no torch: `onnx_graph` writes the protobuf, so a device with numpy and
onnxruntime (a Jetson's JetPack wheel, say) builds and runs any sub-network it extracts. The
FoldedNet's ops are translated one by one (`_emit`), NCHW float32 as the numpy engine runs them,
with a dynamic batch: a conv is one Conv on the taps that `plan_conv` keeps (explicit,
possibly asymmetric pads), its activation a node after it (onnxruntime fuses Conv + Relu/Clip/
HardSigmoid itself), a block its ops then Add when residual, SE GlobalAveragePool -> Conv (Relu)
-> Conv -> HardSigmoid -> Mul, the pool GlobalAveragePool + Flatten, the classifier Gemm, an
input resize Resize (linear, half-pixel: torch's align_corners=False).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from edge_eas.net.activations import activation
from edge_eas.net.folded import (FoldedBlock, FoldedConv, FoldedNet, GlobalAvgPool, Linear, Op, Resize, SqueezeExcite,
                                 plan_conv)
from edge_eas.runtime.app_io import INPUT_NAME, METADATA_NAME, OUTPUT_NAME, AppIO
from edge_eas.runtime.engines.base import EngineUnavailable, as_input
from edge_eas.runtime.engines.onnx_graph import FLOAT, UINT8, Dim, OnnxGraph
from edge_eas.runtime.engines.onnx_providers import (choose_provider, engine_name, provider_chain, provider_warning,
                                                     short_name)

__all__ = ["OnnxRuntimeEngine", "build_onnx", "load_onnxruntime", "resolve_provider"]

RAW_INPUT, LOGITS = "input", "logits"
Shape = Tuple[Dim, ...]  # typing.Tuple: a runtime alias must work on the device's Python 3.8


def load_onnxruntime() -> ModuleType:
    """The onnxruntime module, or EngineUnavailable."""
    try:
        import onnxruntime  # lazy: an optional extra (onnx)
        return onnxruntime
    except ImportError:
        raise EngineUnavailable("the onnxruntime engine needs onnxruntime") from None


def resolve_provider(variant: Optional[str]) -> str:
    """The engine name a session asked for `variant` will most likely run as (the session's
    read-back has the last word: see OnnxRuntimeEngine)."""
    return engine_name(choose_provider(variant, load_onnxruntime().get_available_providers()).chosen)


def _activation(g: OnnxGraph, x: str, act: str, name: str) -> str:
    op = activation(act).onnx
    if not op:
        return x
    if op == "Clip":  # relu6: bounds as inputs since opset 11
        lo, hi = (g.const(np.array(v, np.float32), f"{name}/{act}/{k}") for k, v in (("min", 0.0), ("max", 6.0)))
        return g.op("Clip", [x, lo, hi], f"{name}/{act}")
    return g.op(op, [x], f"{name}/{act}")


def _conv(g: OnnxGraph, x: str, shape: Shape, conv: FoldedConv) -> Tuple[str, Shape]:
    """Conv on the live taps of `plan_conv` (never split in bands: that is XNNPACK's problem)."""
    size = int(shape[2])
    plan = plan_conv(conv, size, None)
    name = conv.name
    w = g.const(np.ascontiguousarray(plan.weight, dtype=np.float32), f"{name}/weight")
    b = g.const(np.ascontiguousarray(conv.bias, dtype=np.float32), f"{name}/bias")
    pads = [plan.pad_before, plan.pad_before, plan.pad_after, plan.pad_after]
    y = g.op("Conv", [x, w, b], name, kernel_shape=[plan.taps, plan.taps], strides=[conv.stride, conv.stride],
             pads=pads, group=conv.groups)
    return _activation(g, y, conv.act, name), (shape[0], conv.out_channels, plan.out_size, plan.out_size)


def _squeeze_excite(g: OnnxGraph, op: SqueezeExcite, x: str) -> str:
    """x * hsigmoid(expand(relu(reduce(mean_hw(x))))): 1x1 Convs on the pooled (N, C, 1, 1) map."""
    n = op.name
    pooled = g.op("GlobalAveragePool", [x], f"{n}/pool")
    hidden = pooled
    for label, w, b, act in (("reduce", op.reduce_w, op.reduce_b, "relu"), ("expand", op.expand_w, op.expand_b, "none")):
        weight = g.const(np.ascontiguousarray(w.reshape(*w.shape, 1, 1), dtype=np.float32), f"{n}/{label}/weight")
        bias = g.const(np.ascontiguousarray(b, dtype=np.float32), f"{n}/{label}/bias")
        hidden = _activation(g, g.op("Conv", [hidden, weight, bias], f"{n}/{label}", kernel_shape=[1, 1]),
                             act, f"{n}/{label}")
    gate = g.op("HardSigmoid", [hidden], f"{n}/hsigmoid", alpha=1.0 / 6.0, beta=0.5)  # relu6(z + 3) / 6
    return g.op("Mul", [x, gate], n)


def _resize(g: OnnxGraph, op: Resize, x: str, shape: Shape) -> Tuple[str, Shape]:
    """Resize to out_size x out_size, the batch and channels taken from x's shape (dynamic batch)."""
    if shape[2] != op.in_size or shape[3] != op.in_size:
        raise ValueError(f"{op.name}: resizes a {op.in_size}x{op.in_size} map, got {shape[2]}x{shape[3]}")
    n = op.name
    dims = g.op("Shape", [x], f"{n}/shape")
    starts, ends = g.const(np.array([0], np.int64), f"{n}/starts"), g.const(np.array([2], np.int64), f"{n}/ends")
    batch_channels = g.op("Slice", [dims, starts, ends], f"{n}/nc")
    hw = g.const(np.array([op.out_size, op.out_size], np.int64), f"{n}/hw")
    sizes = g.op("Concat", [batch_channels, hw], f"{n}/sizes", axis=0)
    y = g.op("Resize", [x, "", "", sizes], n, mode="linear", coordinate_transformation_mode="half_pixel")
    return y, (shape[0], shape[1], op.out_size, op.out_size)


def _emit(g: OnnxGraph, op: Op, x: str, shape: Shape) -> Tuple[str, Shape]:
    """Translate one op applied to value `x`; returns its output and shape."""
    if isinstance(op, FoldedConv):
        return _conv(g, x, shape, op)
    if isinstance(op, FoldedBlock):
        y, y_shape = x, shape
        for sub in op.ops:
            y, y_shape = _emit(g, sub, y, y_shape)
        return (g.op("Add", [x, y], f"{op.name}.add"), y_shape) if op.residual else (y, y_shape)
    if isinstance(op, SqueezeExcite):
        return _squeeze_excite(g, op, x), shape
    if isinstance(op, GlobalAvgPool):
        pooled = g.op("GlobalAveragePool", [x], f"{op.name}/hw")
        return g.op("Flatten", [pooled], op.name, axis=1), (shape[0], shape[1])
    if isinstance(op, Linear):
        w = g.const(np.ascontiguousarray(op.weight, dtype=np.float32), f"{op.name}/weight")
        b = g.const(np.ascontiguousarray(op.bias, dtype=np.float32), f"{op.name}/bias")
        y = g.op("Gemm", [x, w, b], op.name, transB=1)
        return _activation(g, y, op.act, op.name), (shape[0], int(op.weight.shape[0]))
    if isinstance(op, Resize):
        return _resize(g, op, x, shape)
    raise TypeError(f"the onnxruntime engine has no translation for {type(op).__name__}")


def build_onnx(folded: FoldedNet, app: Optional[AppIO] = None, metadata: Optional[str] = None) -> bytes:
    """Serialise `folded` as an .onnx model with a dynamic batch: (N, C, H, W) float32 in, logits
    out. With `app` (a standalone export, runtime/app_io.py) it takes uint8 NHWC images,
    normalises inside (Cast, Mul, Add, Transpose), ends in Softmax, and carries the `metadata`
    JSON as the metadata property `edge_eas`."""
    g = OnnxGraph()
    c, h, w = folded.input_shape
    shape: Shape = ("N", c, h, w)
    if app is None:
        inputs: List[Tuple[str, int, Sequence[Dim]]] = [(RAW_INPUT, FLOAT, shape)]
        x = RAW_INPUT
    else:
        inputs = [(INPUT_NAME, UINT8, ("N", h, w, c))]
        x = _app_input(g, app)
    for op in folded.ops:
        x, shape = _emit(g, op, x, shape)
    if app is None:
        out = g.op("Identity", [x], LOGITS)
        return g.finish(inputs, [(out, FLOAT, shape)], "edge_eas sub-network (BN folded, float32)")
    probs = g.op("Softmax", [x], OUTPUT_NAME, axis=1)
    return g.finish(inputs, [(probs, FLOAT, shape)],
                    "edge_eas sub-network (float32): uint8 NHWC image in, softmax probabilities out",
                    metadata=None if metadata is None else {METADATA_NAME: metadata})


def _app_input(g: OnnxGraph, app: AppIO) -> str:
    """uint8 NHWC -> float32 -> * scale + shift per channel -> NCHW."""
    scale, shift = app.scale_and_shift()
    as_float = g.op("Cast", [INPUT_NAME], f"{INPUT_NAME}/float", to=FLOAT)
    scaled = g.op("Mul", [as_float, g.const(scale, f"{INPUT_NAME}/scale")], f"{INPUT_NAME}/scaled")
    normalised = g.op("Add", [scaled, g.const(shift, f"{INPUT_NAME}/shift")], f"{INPUT_NAME}/normalised")
    return g.op("Transpose", [normalised], f"{INPUT_NAME}/nchw", perm=[0, 3, 1, 2])


class OnnxRuntimeEngine:
    """Runs the built model in an onnxruntime InferenceSession. `variant`: the execution provider
    asked for (tensorrt, cuda, cpu; None: the best available). `name` is the provider that ran
    (`session.get_providers()`, read back: a GPU build lists CUDA even where its libraries fail
    to load), and `warning` says why it is not the one asked for. One session serves every batch."""

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None,
                 variant: Optional[str] = None) -> None:
        ort = load_onnxruntime()
        available = ort.get_available_providers()
        choice = choose_provider(variant, available)
        self.folded, self.batch_size, self.threads = folded, batch_size, threads
        self.model_bytes = build_onnx(folded)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: a missing provider is reported once, by `warning`
        with warnings.catch_warnings():  # its "provider not available" warning: `warning` says it, once
            warnings.filterwarnings("ignore", message="Specified provider")
            self.session: Any = ort.InferenceSession(self.model_bytes, sess_options=opts,
                                                     providers=provider_chain(choice.chosen))
        self.provider = short_name(self.session.get_providers()[0])
        self.name = engine_name(self.provider)
        self.warning = choice.warning
        if self.provider != choice.chosen:
            self.warning = provider_warning(choice.chosen, self.provider, available)
        read_back = int(self.session.get_session_options().intra_op_num_threads)
        self.threads_read_back: Optional[int] = read_back or None  # 0: onnxruntime's default (one per core)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        return self.session.run([LOGITS], {RAW_INPUT: x})[0]  # type: ignore[no-any-return]
