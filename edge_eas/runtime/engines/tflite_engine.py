"""TFLite / LiteRT engine: write a .tflite flatbuffer straight from a FoldedNet, run it with XNNPACK.

No converter (and so no torch, TensorFlow or JAX) is involved: the model is assembled with the
TFLite schema's generated Python object API plus `flatbuffers`, so a device with only numpy and
ai-edge-litert can build and run any sub-network it extracts.

The FoldedNet's ops are translated one by one (`_emit`), NHWC float32 with a static batch: a conv
is [PAD] CONV_2D / DEPTHWISE_CONV_2D with its activation fused, a block its ops then ADD when
residual, the pool MEAN(1,2), the classifier FULLY_CONNECTED, an input resize RESIZE_BILINEAR
(half-pixel centres); `tflite_graph.GraphBuilder` writes the flatbuffer. Each kxk conv follows
`plan_conv`: kernel taps that only ever read padding are dropped; stride-1 convs with symmetric
padding use SAME (equal to torch's k//2 for odd k); others get an explicit PAD then VALID, because
TFLite SAME puts the extra padding bottom/right while torch is symmetric.
Depthwise kernels above 25 taps (7x7) are split into row bands (SLICE -> DEPTHWISE_CONV_2D, summed
with ADD): XNNPACK has no fast 49-tap kernel and runs a 7x7 depthwise 10-16x slower than a 5x5.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Optional, Tuple

import numpy as np

from edge_eas.net.activations import activation
from edge_eas.net.folded import (XNNPACK_MAX_DW_TAPS, FoldedBlock, FoldedConv, FoldedNet, GlobalAvgPool, Linear, Op,
                                 Resize, SqueezeExcite, plan_conv)
from edge_eas.runtime.app_io import INPUT_NAME, METADATA_NAME, OUTPUT_NAME, SIGNATURE, AppIO
from edge_eas.runtime.engines.base import Calibration, EngineUnavailable, as_input
from edge_eas.runtime.engines.tflite_graph import GraphBuilder, load_schema
from edge_eas.runtime.engines.tflite_quant import Ranges, UniformRanges, activation_params, calibrate_ranges

__all__ = ["TFLiteEngine", "TFLiteInt8Engine", "build_tflite", "calibrate", "load_interpreter_class", "load_schema",
           "ranges_for"]

Shape = Tuple[int, ...]  # typing.Tuple: a runtime alias must work on the device's Python 3.8
RAW_INPUT = "input"  # the normalised float image the engine's graph takes (its ranges name the int8 input's)


def load_interpreter_class() -> type:
    """LiteRT's Interpreter, else tflite-runtime's, else EngineUnavailable."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # lazy: an optional extra (tflite)
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]  # lazy: the numpy<2 fallback
        return Interpreter
    except ImportError:
        raise EngineUnavailable("the tflite engine needs a TFLite interpreter") from None


def _activation(schema: ModuleType, act: str) -> int:
    """The activation fused into the producing op (the registry's `tflite_fused`)."""
    return getattr(schema.ActivationFunctionType, activation(act).tflite_fused)


def _separate_activation(g: GraphBuilder, x: int, shape: Shape, act: str, name: str) -> int:
    """`act` as its own op on `x` when TFLite cannot fuse it (h-swish); else `x` unchanged."""
    op = activation(act).tflite_op
    if op is None:
        return x
    if g.integer and op == "HARD_SWISH":
        return _hard_swish_int8(g, x, shape, f"{name}/{act}")
    out = g.activation(shape, f"{name}/{act}")
    g.op(op, [x], [out])
    return out


def _hard_swish_int8(g: GraphBuilder, x: int, shape: Shape, name: str) -> int:
    """x * relu6(x + 3) / 6 as ADD (RELU6), MUL, MUL: XNNPACK (LiteRT 2.3) runs an int8 HARD_SWISH
    on the reference kernel outside its delegate, cutting the graph into a partition per activation.
    The two intermediates' ranges follow from x's; the output's is HARD_SWISH's, calibrated."""
    s = g.s
    lo, hi = g.span(x)
    shift_span = (min(max(lo + 3, 0.0), 6.0), min(max(hi + 3, 0.0), 6.0))
    shifted = g.activation(shape, f"{name}/shift", span=shift_span)
    add = s.AddOptionsT()
    add.fusedActivationFunction = s.ActivationFunctionType.RELU6
    g.op("ADD", [x, g.scalar(3.0, f"{name}/three")], [shifted], add, "AddOptions")
    gate = g.activation(shape, f"{name}/gate", span=(shift_span[0] / 6, shift_span[1] / 6))
    g.op("MUL", [shifted, g.scalar(1.0 / 6.0, f"{name}/sixth")], [gate], s.MulOptionsT(), "MulOptions")
    out = g.activation(shape, name)
    g.op("MUL", [x, gate], [out], s.MulOptionsT(), "MulOptions")
    return out


def _conv(g: GraphBuilder, x: int, shape: Shape, conv: FoldedConv, name: str) -> tuple[int, Shape]:
    """`_conv_fused`, then the activation when TFLite cannot fuse it."""
    out, out_shape = _conv_fused(g, x, shape, conv, name)
    return _separate_activation(g, out, out_shape, conv.act, name), out_shape


def _conv_fused(g: GraphBuilder, x: int, shape: Shape, conv: FoldedConv, name: str) -> tuple[int, Shape]:
    """Emit `conv` on NHWC tensor `x` as planned by `plan_conv`: trimmed kernel, SAME when that
    matches torch, else PAD + VALID; a >25-tap depthwise kernel as row bands (SLICE + conv each)
    summed by ADDs, the activation fused into the last ADD."""
    s = g.s
    n = shape[0]
    plan = plan_conv(conv, shape[1], g.max_dw_taps)
    out_shape = (n, plan.out_size, plan.out_size, conv.out_channels)
    act = _activation(s, conv.act)
    weight = plan.weight
    if plan.same_padding and len(plan.bands) == 1:
        out = g.activation(out_shape, name)
        _conv_op(g, x, out, conv, weight, conv.bias, s.Padding.SAME, act, name)
        return out, out_shape
    if plan.pad_before or plan.pad_after:
        before, after = plan.pad_before, plan.pad_after
        pads = g.const(np.array([[0, 0], [before, after], [before, after], [0, 0]], dtype=np.int32), f"{name}/pads")
        padded = g.activation((n, plan.padded_size, plan.padded_size, shape[3]), f"{name}/pad", like=x)
        g.op("PAD", [x, pads], [padded], s.PadOptionsT(), "PadOptions")
        x = padded
    if len(plan.bands) == 1:
        out = g.activation(out_shape, name)
        _conv_op(g, x, out, conv, weight, conv.bias, s.Padding.VALID, act, name)
        return out, out_shape
    total = -1
    zeros = np.zeros_like(conv.bias)
    for b, band in enumerate(plan.bands):
        start, rows = plan.band_rows(band)
        begin = g.const(np.array([0, start, 0, 0], dtype=np.int32), f"{name}/band{b}/begin")
        size = g.const(np.array([n, rows, plan.padded_size, shape[3]], dtype=np.int32), f"{name}/band{b}/size")
        sliced = g.activation((n, rows, plan.padded_size, shape[3]), f"{name}/band{b}/slice", like=x)
        g.op("SLICE", [x, begin, size], [sliced], s.SliceOptionsT(), "SliceOptions")
        part = g.activation(out_shape, f"{name}/band{b}")
        _conv_op(g, sliced, part, conv, weight[:, :, band[0]:band[1], :], conv.bias if b == 0 else zeros,
                 s.Padding.VALID, s.ActivationFunctionType.NONE, f"{name}/band{b}")
        if total < 0:
            total = part
            continue
        summed = g.activation(out_shape, name if b == len(plan.bands) - 1 else f"{name}/sum{b}")
        opts = s.AddOptionsT()
        opts.fusedActivationFunction = act if b == len(plan.bands) - 1 else s.ActivationFunctionType.NONE
        g.op("ADD", [total, part], [summed], opts, "AddOptions")
        total = summed
    return total, out_shape


def _conv_op(g: GraphBuilder, x: int, out: int, conv: FoldedConv, weight: np.ndarray, bias: np.ndarray,
             padding: int, act: int, name: str) -> None:
    """One CONV_2D / DEPTHWISE_CONV_2D with an OIHW (torch) weight, re-laid out for TFLite."""
    s = g.s
    if conv.depthwise:
        weight_t, bias_t = g.weight_and_bias(weight.transpose(1, 2, 3, 0), bias, name, x, axis=3)  # (1,kh,kw,C)
        opts = s.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = 1
        code, opts_type = "DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions"
    elif conv.groups == 1:
        weight_t, bias_t = g.weight_and_bias(weight.transpose(0, 2, 3, 1), bias, name, x, axis=0)  # (O,kh,kw,I)
        opts = s.Conv2DOptionsT()
        code, opts_type = "CONV_2D", "Conv2DOptions"
    else:
        raise ValueError(f"{name}: grouped conv with groups={conv.groups} is not supported")
    opts.padding, opts.strideH, opts.strideW = padding, conv.stride, conv.stride
    opts.fusedActivationFunction = act
    g.op(code, [x, weight_t, bias_t], [out], opts, opts_type)


def _emit(g: GraphBuilder, op: Op, x: int, shape: Shape) -> tuple[int, Shape]:
    """Translate one op applied to tensor `x`; returns its output tensor and shape."""
    s = g.s
    if isinstance(op, FoldedConv):
        return _conv(g, x, shape, op, op.name)
    if isinstance(op, FoldedBlock):
        y, y_shape = x, shape
        for sub in op.ops:
            y, y_shape = _emit(g, sub, y, y_shape)
        if not op.residual:
            return y, y_shape
        summed = g.activation(y_shape, f"{op.name}.add")
        g.op("ADD", [x, y], [summed], s.AddOptionsT(), "AddOptions")
        return summed, y_shape
    if isinstance(op, GlobalAvgPool):
        axes = g.const(np.array([1, 2], dtype=np.int32), f"{op.name}/axes")
        pooled = g.activation((shape[0], shape[3]), op.name)
        g.op("MEAN", [x, axes], [pooled], s.ReducerOptionsT(), "ReducerOptions")
        return pooled, (shape[0], shape[3])
    if isinstance(op, Linear):
        w, b = g.weight_and_bias(op.weight, op.bias, op.name, x, axis=0)
        out_shape = (shape[0], int(op.weight.shape[0]))
        out = g.activation(out_shape, op.name)
        opts = s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = _activation(s, op.act)
        g.op("FULLY_CONNECTED", [x, w, b], [out], opts, "FullyConnectedOptions")
        return _separate_activation(g, out, out_shape, op.act, op.name), out_shape
    if isinstance(op, SqueezeExcite):
        return _squeeze_excite(g, op, x, shape), shape
    if isinstance(op, Resize):
        return _resize(g, op, x, shape)
    raise TypeError(f"the tflite engine has no translation for {type(op).__name__}")


def _squeeze_excite(g: GraphBuilder, op: SqueezeExcite, x: int, shape: Shape) -> int:
    """MEAN(keep dims) -> 1x1 CONV_2D (RELU) -> 1x1 CONV_2D -> ADD 3 (RELU6) -> MUL 1/6 -> MUL x."""
    s = g.s
    n, c, mid = shape[0], op.channels, int(op.reduce_w.shape[0])
    axes = g.const(np.array([1, 2], dtype=np.int32), f"{op.name}/axes")
    pooled = g.activation((n, 1, 1, c), f"{op.name}/pool")
    opts = s.ReducerOptionsT()
    opts.keepDims = True
    g.op("MEAN", [x, axes], [pooled], opts, "ReducerOptions")
    hidden, gate = g.activation((n, 1, 1, mid), f"{op.name}/reduce"), g.activation((n, 1, 1, c), f"{op.name}/expand")
    for inp, out, w, b, act, label in ((pooled, hidden, op.reduce_w, op.reduce_b, "RELU", "reduce"),
                                       (hidden, gate, op.expand_w, op.expand_b, "NONE", "expand")):
        conv = s.Conv2DOptionsT()
        conv.padding, conv.strideH, conv.strideW = s.Padding.VALID, 1, 1
        conv.fusedActivationFunction = getattr(s.ActivationFunctionType, act)
        weight, bias = g.weight_and_bias(w.reshape(w.shape[0], 1, 1, w.shape[1]), b, f"{op.name}/{label}", inp, axis=0)
        g.op("CONV_2D", [inp, weight, bias], [out], conv,
             "Conv2DOptions")
    shifted = g.activation((n, 1, 1, c), f"{op.name}/shift")
    add = s.AddOptionsT()
    add.fusedActivationFunction = s.ActivationFunctionType.RELU6
    g.op("ADD", [gate, g.scalar(3.0, f"{op.name}/three")], [shifted], add, "AddOptions")
    scaled = g.activation((n, 1, 1, c), f"{op.name}/hsigmoid")
    g.op("MUL", [shifted, g.scalar(1.0 / 6.0, f"{op.name}/sixth")], [scaled], s.MulOptionsT(), "MulOptions")
    out = g.activation(shape, op.name)
    g.op("MUL", [x, scaled], [out], s.MulOptionsT(), "MulOptions")
    return out


def _resize(g: GraphBuilder, op: Resize, x: int, shape: Shape) -> tuple[int, Shape]:
    """RESIZE_BILINEAR with half-pixel centres (version 3, what torch's align_corners=False is)."""
    if shape[1] != op.in_size or shape[2] != op.in_size:
        raise ValueError(f"{op.name}: resizes a {op.in_size}x{op.in_size} map, got {shape[1]}x{shape[2]}")
    out_shape = (shape[0], op.out_size, op.out_size, shape[3])
    size = g.const(np.array([op.out_size, op.out_size], dtype=np.int32), f"{op.name}/size")
    out = g.activation(out_shape, op.name, like=x)
    opts = g.s.ResizeBilinearOptionsT()
    opts.alignCorners, opts.halfPixelCenters = False, True
    g.op("RESIZE_BILINEAR", [x, size], [out], opts, "ResizeBilinearOptions", version=3)
    return out, out_shape


def build_tflite(folded: FoldedNet, batch_size: int = 1, app: Optional[AppIO] = None,
                 metadata: Optional[bytes] = None, ranges: Optional[Ranges] = None,
                 max_dw_taps: Optional[int] = XNNPACK_MAX_DW_TAPS) -> bytes:
    """Serialise `folded` as a .tflite flatbuffer taking (batch_size, H, W, C) float32 NHWC input
    and giving logits; with `app` (a standalone export, runtime/app_io.py) it takes uint8 NHWC,
    normalises inside (CAST, MUL, ADD), ends in SOFTMAX, and has a named signature and the
    `metadata` JSON as a metadata entry. With `ranges` (`calibrate`) the network runs in int8:
    QUANTIZE after the (float) input, DEQUANTIZE before the float logits or SOFTMAX.
    `max_dw_taps`: depthwise kernels with more taps run as row bands (None: never split)."""
    g = GraphBuilder(load_schema(), ranges, max_dw_taps)
    c, h, w = folded.input_shape
    shape: Shape = (batch_size, h, w, c)
    if app is None:
        inp = x = g.tensor(shape, RAW_INPUT)
    else:
        inp, x = _app_input(g, shape, app)
    if g.integer:
        x = _quantize(g, x, shape)
    for op in folded.ops:
        x, shape = _emit(g, op, x, shape)
    if g.integer:
        logits = g.tensor(shape, "logits")
        g.op("DEQUANTIZE", [x], [logits])
        x = logits
    kind = "int8" if g.integer else "float32"
    if app is None:
        return g.finish([inp], [x], f"edge_eas sub-network (BN folded, {kind})")
    probs = g.tensor(shape, OUTPUT_NAME)
    opts = g.s.SoftmaxOptionsT()
    opts.beta = 1.0
    g.op("SOFTMAX", [x], [probs], opts, "SoftmaxOptions")
    return g.finish([inp], [probs], f"edge_eas sub-network ({kind}): uint8 NHWC image in, softmax probabilities out",
                    signature=(SIGNATURE, INPUT_NAME, OUTPUT_NAME),
                    metadata=None if metadata is None else (METADATA_NAME, metadata))


def _quantize(g: GraphBuilder, x: int, shape: Shape) -> int:
    """The normalised float image as int8, at the range calibrated for the raw graph's input."""
    assert g.ranges is not None
    out = g.tensor(shape, f"{RAW_INPUT}/int8", dtype="INT8", quant=activation_params(*g.ranges[RAW_INPUT]))
    g.op("QUANTIZE", [x], [out])
    return out


def ranges_for(folded: FoldedNet, calibration: Calibration) -> Ranges:
    """The ranges an int8 graph of `folded` uses: one range for every tensor when the images are
    random (latency work), else `calibrate`d, once per Calibration (engine instances share them)."""
    key = TFLiteInt8Engine.name
    if key not in calibration.derived:
        calibration.derived[key] = UniformRanges() if calibration.synthetic else calibrate(folded, calibration.images)
    return calibration.derived[key]  # type: ignore[no-any-return]


def calibrate(folded: FoldedNet, images: np.ndarray) -> dict[str, tuple[float, float]]:
    """Activation ranges for `build_tflite(..., ranges=)` from NCHW float calibration images
    (normalised as the engine's input), measured on the float graph."""
    images = as_input(images, folded)
    return calibrate_ranges(lambda batch: build_tflite(folded, batch), load_interpreter_class(),
                            images.transpose(0, 2, 3, 1))


def _app_input(g: GraphBuilder, shape: Shape, app: AppIO) -> tuple[int, int]:
    """uint8 image tensor -> CAST float32 -> * scale + shift per channel: (input, normalised)."""
    s = g.s
    image = g.tensor(shape, INPUT_NAME, dtype="UINT8")
    as_float = g.tensor(shape, f"{INPUT_NAME}/float")
    cast = s.CastOptionsT()
    cast.inDataType, cast.outDataType = s.TensorType.UINT8, s.TensorType.FLOAT32
    g.op("CAST", [image], [as_float], cast, "CastOptions")
    scale, shift = app.scale_and_shift()
    scaled, normalised = g.tensor(shape, f"{INPUT_NAME}/scaled"), g.tensor(shape, f"{INPUT_NAME}/normalised")
    g.op("MUL", [as_float, g.const(scale, f"{INPUT_NAME}/scale")], [scaled], s.MulOptionsT(), "MulOptions")
    g.op("ADD", [scaled, g.const(shift, f"{INPUT_NAME}/shift")], [normalised], s.AddOptionsT(), "AddOptions")
    return image, normalised


class TFLiteEngine:
    """Runs the built model with LiteRT (XNNPACK delegate by default). The graph has a static batch
    (SLICE sizes include it), so another batch size builds its own model once (milliseconds) and
    keeps its interpreter."""

    name = "tflite"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None) -> None:
        self._interpreter_class = load_interpreter_class()
        self.folded = folded
        self.batch_size = batch_size
        self.threads = threads  # LiteRT's num_threads is honoured but cannot be read back
        self.threads_read_back: Optional[int] = None
        self._models: dict[int, bytes] = {}
        self._interpreters: dict[int, tuple[Any, int, int]] = {}
        self._interpreter(batch_size)

    @property
    def model_bytes(self) -> bytes:
        """The .tflite flatbuffer for the build-time batch size."""
        return self._models[self.batch_size]

    def _build(self, batch: int) -> bytes:
        return build_tflite(self.folded, batch)

    def _interpreter(self, batch: int) -> tuple[Any, int, int]:
        if batch not in self._interpreters:
            self._models[batch] = self._build(batch)
            kwargs = {} if self.threads is None else {"num_threads": self.threads}
            interp = self._interpreter_class(model_content=self._models[batch], **kwargs)
            interp.allocate_tensors()
            self._interpreters[batch] = (interp, interp.get_input_details()[0]["index"],
                                         interp.get_output_details()[0]["index"])
        return self._interpreters[batch]

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        interp, inp, out = self._interpreter(x.shape[0])
        interp.set_tensor(inp, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        interp.invoke()
        return interp.get_tensor(out)


class TFLiteInt8Engine(TFLiteEngine):
    """The same graph in full integer (XNNPACK's QS8 kernels): int8 activations at ranges
    calibrated on `calibration`'s images (once per network: instances share them), per-channel
    int8 weights; float images in, float logits out."""

    name = "tflite-int8"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None, *,
                 calibration: Calibration) -> None:
        self.ranges = ranges_for(folded, calibration)
        super().__init__(folded, batch_size, threads)

    def _build(self, batch: int) -> bytes:
        return build_tflite(self.folded, batch, ranges=self.ranges)
