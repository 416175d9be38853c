"""What makes a TFLite graph full-integer: TFLite's 8-bit quantisation parameters, and the
activation ranges they come from, calibrated on images by running the float graph.

TFLite's int8 scheme (its quantization spec): real = scale * (q - zero_point). Weights are
symmetric int8 in [-127, 127] with zero point 0, one scale per output channel for convolutions
(and the classifier); activations are asymmetric int8 with one scale and zero point per tensor,
their range always holding 0 so that zero padding is exact; biases are int32 with scale
input_scale * weight_scale and zero point 0.

Ranges come from the float graph itself (the same `_emit`, so every int8 tensor has a float
twin of the same name): LiteRT keeps every intermediate tensor when asked to, without its
delegates, and each tensor's min/max over the calibration images is its range - the TFLite
converter's own default. numpy only, besides the interpreter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from edge_eas.runtime.engines.base import calibration_subset, static_batches

Range = Tuple[float, float]
Ranges = Mapping[str, Range]

MAX_CALIBRATION_BATCH = 16   # images per invoke while calibrating (the last chunk repeats earlier images)
CALIBRATION_BATCH_ELEMENTS = 2 ** 16  # ... fewer for big inputs: with every intermediate kept, a batch of
# 16 at 224 px ran 2.5x slower per image than one image at a time (mbv3, LiteRT 2.3)
SYNTHETIC_RANGE = (-6.0, 6.0)  # every tensor's range when the images are random: latency work only
_INT32_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class QuantParams:
    """One tensor's quantisation: per tensor (one scale) or per channel along `axis`."""

    scale: np.ndarray       # float32
    zero_point: np.ndarray  # int64, same length as scale
    axis: int = 0

    def to_schema(self, schema: Any) -> Any:
        q = schema.QuantizationParametersT()
        q.scale = [float(v) for v in self.scale]
        q.zeroPoint = [int(v) for v in self.zero_point]
        q.quantizedDimension = self.axis
        return q


def activation_params(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 parameters for values in [lo, hi]; the range is widened to hold 0 (so
    that 0 - zero padding, ReLU's floor - is exact) and never collapses to a point."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QuantParams(np.array([scale], np.float32), np.array([zero_point], np.int64))


def symmetric_weight(w: np.ndarray, axis: Optional[int], floor: Optional[np.ndarray] = None
                     ) -> tuple[np.ndarray, QuantParams]:
    """int8 weights, symmetric, one scale per slice along `axis` (None: one for the tensor).
    `floor`: the least scale per slice (`bias_scale_floor`), so that the bias still fits int32."""
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        peak = np.array([np.abs(w).max(initial=0.0)], np.float32)
        scale = np.maximum(peak, 1e-12) / 127.0
        if floor is not None:
            scale = np.maximum(scale, floor.max(initial=0.0))
        q = np.round(w / scale[0])
        axis = 0
    else:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        scale = np.maximum(np.abs(moved).max(1, initial=0.0), 1e-12) / 127.0
        if floor is not None:
            scale = np.maximum(scale, floor)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.round(w / scale.reshape(shape))
    return (np.clip(q, -127, 127).astype(np.int8),
            QuantParams(scale.astype(np.float32), np.zeros(len(scale), np.int64), axis))


def bias_scale_floor(bias: np.ndarray, input_scale: float) -> np.ndarray:
    """The least weight scale per output channel at which the bias fits int32 with room to
    spare: a channel whose weights are (nearly) all zero - an untrained net's, a pruned one -
    would otherwise get a scale so small that its bias overflows."""
    return (np.abs(np.asarray(bias, np.float64)) / (input_scale * 2.0 ** 30)).astype(np.float32)


def bias_int32(bias: np.ndarray, input_scale: float, weight: QuantParams) -> tuple[np.ndarray, QuantParams]:
    """The int32 bias TFLite adds to the int8 x int8 accumulator: scale input_scale * weight scale."""
    scale = (np.float64(input_scale) * weight.scale.astype(np.float64))
    if len(scale) == 1 and len(bias) > 1:
        scale = np.full(len(bias), scale[0])
    q = np.round(np.asarray(bias, np.float64) / scale)
    if np.abs(q).max(initial=0) > _INT32_MAX:
        raise ValueError("a bias does not fit int32 at its input and weight scales")
    return q.astype(np.int32), QuantParams(scale.astype(np.float32), np.zeros(len(scale), np.int64), 0)


def scalar_const(value: float) -> tuple[np.ndarray, QuantParams]:
    """A one-element int8 constant holding `value` exactly at full scale (q = 127, or -127)."""
    scale = max(abs(float(value)), 1e-12) / 127.0
    q = np.array([127 if value >= 0 else -127], np.int8)
    return q, QuantParams(np.array([scale], np.float32), np.array([0], np.int64))


class UniformRanges(Mapping[str, Range]):
    """The same range for every tensor name: for random calibration images, whose ranges would
    mean nothing; an int8 graph's speed does not depend on its ranges."""

    def __init__(self, span: Range = SYNTHETIC_RANGE) -> None:
        self.span = span

    def __getitem__(self, name: str) -> Range:
        return self.span

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def calibrate_ranges(build_float: Callable[[int], bytes], interpreter_class: type, images: np.ndarray
                     ) -> Dict[str, Range]:
    """Every float tensor's (min, max) over `images` (NHWC float32), from the float graph that
    `build_float(batch)` writes, run without delegates so that intermediates are kept."""
    resolver = importlib.import_module(interpreter_class.__module__).OpResolverType  # LiteRT's or tflite-runtime's
    images = calibration_subset(np.asarray(images, np.float32))
    if len(images) == 0:
        raise ValueError("activation ranges need at least one calibration image")
    per_image = int(np.prod(images.shape[1:]))
    batch = max(1, min(MAX_CALIBRATION_BATCH, len(images), CALIBRATION_BATCH_ELEMENTS // per_image))
    interp = interpreter_class(model_content=build_float(batch), experimental_preserve_all_tensors=True,
                               experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    floats = [(d["name"], d["index"]) for d in interp.get_tensor_details() if d["dtype"] == np.float32]
    lo: Dict[str, float] = {}
    hi: Dict[str, float] = {}
    for chunk in static_batches(images, batch):
        interp.set_tensor(inp, chunk)
        interp.invoke()
        for name, index in floats:
            t = interp.get_tensor(index)
            lo[name] = min(lo.get(name, np.inf), float(t.min()))
            hi[name] = max(hi.get(name, -np.inf), float(t.max()))
    return {name: (lo[name], hi[name]) for name in lo}
