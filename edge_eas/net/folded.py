"""Turn an extracted sub-network weight dict into an inference-ready, BatchNorm-free `FoldedNet`:
the ordered list of ops, with their weights, that every engine translates one op at a time.

`fold_layers` maps each layer of the one sub-network description (`edge_eas.net.subnet`) to an op:
a conv with its BN folded in, a block (its ops, plus the residual add), the global pool, the
classifier. The numpy, TFLite, ExecuTorch and torch engines each translate these op types and
nothing else, so a new op is one dataclass here plus one translation per engine (see
edge_eas/runtime/README.md). numpy only: runs on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Union

import numpy as np

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import (BN_EPS, BlockLayer, ConvLayer, Layer, LinearLayer, PoolLayer, ResizeLayer, SELayer,
                                 subnet_layers, weight_names)


@dataclass(frozen=True)
class FoldedConv:
    """A conv with BN folded in: y = act(conv(x, weight, stride, padding=k//2, groups) + bias).

    `weight` keeps torch's OIHW layout, (cout, cin // groups, k, k); engines re-layout it.
    `act` names one of `edge_eas.net.activations.ACTIVATIONS`.
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    groups: int = 1
    act: str = "relu6"
    name: str = ""

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def padding(self) -> int:
        """Torch-style symmetric padding on each side (the supernet uses k//2)."""
        return self.kernel // 2

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.out_channels == self.in_channels

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class SqueezeExcite:
    """x * hsigmoid(relu(mean_hw(x) @ reduce_w.T + reduce_b) @ expand_w.T + expand_b), where
    hsigmoid(z) = relu6(z + 3) / 6; reduce_w (mid, C), expand_w (C, mid)."""

    reduce_w: np.ndarray
    reduce_b: np.ndarray
    expand_w: np.ndarray
    expand_b: np.ndarray
    name: str = ""

    @property
    def channels(self) -> int:
        return int(self.reduce_w.shape[1])


@dataclass(frozen=True)
class FoldedBlock:
    """A block's ops run in order; the block's input is added to their output when `residual`."""

    name: str
    ops: tuple["Op", ...]
    residual: bool


@dataclass(frozen=True)
class Resize:
    """Bilinear resize of the (N, C, H, W) input to `out_size` x `out_size` (half-pixel centres,
    no antialiasing; see `edge_eas.net.subnet.ResizeLayer` and `bilinear_resize`)."""

    in_size: int
    out_size: int
    name: str = "resize"


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    name: str = "pool"


@dataclass(frozen=True)
class Linear:
    """y = act(x @ weight.T + bias), weight (out_features, in_features)."""

    weight: np.ndarray
    bias: np.ndarray
    name: str = "classifier"
    act: str = "none"


Op = Union[Resize, FoldedConv, SqueezeExcite, FoldedBlock, GlobalAvgPool, Linear]


@dataclass(frozen=True)
class FoldedNet:
    """An image (C, H, W) through `ops` in order; the last op yields (N, num_classes) logits."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    ops: tuple[Op, ...]

    @property
    def num_classes(self) -> int:
        return int(self.classifier().weight.shape[0])

    def convs(self) -> list[FoldedConv]:
        """All convolutions in execution order."""
        return list(_convs(self.ops))

    def classifier(self) -> Linear:
        """The last op, which every FoldedNet ends with."""
        last = self.ops[-1]
        if not isinstance(last, Linear):
            raise ValueError("a FoldedNet ends with its classifier (a Linear op)")
        return last

    def features(self) -> "FoldedNet":
        """The net without its classifier: an image -> the features its classifier reads. (Its
        `num_classes` means nothing; engines run it as any op list.)"""
        self.classifier()
        return FoldedNet(self.input_shape, self.ops[:-1])

    def with_classifier(self, weight: np.ndarray, bias: np.ndarray) -> "FoldedNet":
        """The same net with another classifier (a task head fitted on the device)."""
        old = self.classifier()
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
        if weight.ndim != 2 or weight.shape[1] != old.weight.shape[1] or bias.shape != (weight.shape[0],):
            raise ValueError(f"a classifier for this net reads {old.weight.shape[1]} features; got weight "
                             f"{weight.shape} and bias {bias.shape}")
        return FoldedNet(self.input_shape, (*self.ops[:-1], Linear(weight, bias, old.name, old.act)))


def _walk(ops: tuple[Op, ...]) -> Iterator[Op]:
    for op in ops:
        if isinstance(op, FoldedBlock):
            yield from _walk(op.ops)
        else:
            yield op


def _convs(ops: tuple[Op, ...]) -> Iterator[FoldedConv]:
    return (op for op in _walk(ops) if isinstance(op, FoldedConv))


def fold_conv_bn(weights: Mapping[str, np.ndarray], layer: ConvLayer, eps: float = BN_EPS) -> FoldedConv:
    """Fold `{name}.bn.*` into `{name}.conv.weight`: W' = W * s, b' = beta - mean * s,
    s = gamma / sqrt(var + eps) per output channel. Computed in float64, stored as float32.
    The weight's shape is checked against the layer, so weights of another arch fail here, not
    as a shape error deep inside an engine."""
    w = _get(weights, layer.weight_name).astype(np.float64)
    if w.shape != layer.weight_shape:
        raise ValueError(f"{layer.weight_name} has shape {w.shape} (groups={layer.groups}); the arch needs "
                         f"{layer.out_channels} outputs, {layer.in_channels} inputs, kernel {layer.kernel}")
    bn = {stat: _get(weights, layer.bn_name(stat)).astype(np.float64).reshape(-1)
          for stat in ("weight", "bias", "running_mean", "running_var")}
    for stat, v in bn.items():
        if v.shape != (layer.out_channels,):
            raise ValueError(f"{layer.bn_name(stat)} has {v.shape[0]} entries, conv has "
                             f"{layer.out_channels} output channels")
    scale = bn["weight"] / np.sqrt(bn["running_var"] + eps)
    weight = (w * scale[:, None, None, None]).astype(np.float32)
    bias = (bn["bias"] - bn["running_mean"] * scale).astype(np.float32)
    return FoldedConv(weight, bias, layer.stride, layer.groups, layer.act, layer.name)


def fold_squeeze_excite(weights: Mapping[str, np.ndarray], layer: SELayer) -> SqueezeExcite:
    """The SE op from its weights (it has no BN to fold), shapes checked against the layer."""
    w = {}
    for name, shape in layer.weight_shapes().items():
        w[name] = _get(weights, name).astype(np.float32)
        if w[name].shape != shape:
            raise ValueError(f"{name} has shape {w[name].shape}; the arch needs {shape}")
    n = layer.name
    return SqueezeExcite(w[f"{n}.reduce.weight"], w[f"{n}.reduce.bias"], w[f"{n}.expand.weight"],
                         w[f"{n}.expand.bias"], n)


def fold_layers(weights: Mapping[str, np.ndarray], layers: tuple[Layer, ...],
                input_shape: tuple[int, int, int], eps: float = BN_EPS) -> FoldedNet:
    """The op list for `layers` filled from `weights` (BN folded). A weight the layers do not
    name is an error: it means the weights belong to a bigger arch."""
    extra = sorted(set(weights) - set(weight_names(layers)))
    if extra:
        raise ValueError(f"weights hold tensors the arch does not use ({extra[0]}, ...): they belong to another arch")
    return FoldedNet(tuple(input_shape), tuple(_fold(weights, layer, eps) for layer in layers))


def _fold(weights: Mapping[str, np.ndarray], layer: Layer, eps: float) -> Op:
    if isinstance(layer, ConvLayer):
        return fold_conv_bn(weights, layer, eps)
    if isinstance(layer, BlockLayer):
        return FoldedBlock(layer.name, tuple(_fold(weights, sub, eps) for sub in layer.body), layer.residual)
    if isinstance(layer, SELayer):
        return fold_squeeze_excite(weights, layer)
    if isinstance(layer, PoolLayer):
        return GlobalAvgPool(layer.name)
    if isinstance(layer, ResizeLayer):
        return Resize(layer.in_size, layer.out_size, layer.name)
    if isinstance(layer, LinearLayer):
        w = _get(weights, layer.weight_name).astype(np.float32)
        b = _get(weights, layer.bias_name).astype(np.float32).reshape(-1)
        if w.ndim != 2 or w.shape[1] != layer.in_features or b.shape != (w.shape[0],) or \
                (layer.out_features is not None and w.shape[0] != layer.out_features):
            raise ValueError(f"{layer.name} shapes {w.shape}/{b.shape} do not fit its {layer.in_features} inputs")
        return Linear(np.ascontiguousarray(w), np.ascontiguousarray(b), layer.name, layer.act)
    raise TypeError(f"no folding for layer type {type(layer).__name__}")


def fold_bn(weights: Mapping[str, np.ndarray], space: SearchSpace, arch: Arch, eps: float = BN_EPS) -> FoldedNet:
    """Fold every BatchNorm of an extracted sub-network (`slice_subnet` / `Supernet.extract_weights`)."""
    return fold_layers(weights, subnet_layers(space, arch), space.input_shape, eps)


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) interpolation matrix of a bilinear resize along one axis with
    half-pixel centres and no antialiasing (torch align_corners=False, TFLite
    half_pixel_centers=True): source coordinate (o + 0.5) * in/out - 0.5, clamped at 0."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    m = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(m, (np.arange(out_size), lo), 1.0 - frac)
    np.add.at(m, (np.arange(out_size), hi), frac)
    return m


def bilinear_resize(x: np.ndarray, out_size: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, out_size, out_size): the reference every engine matches."""
    rows = bilinear_weights(x.shape[2], out_size)
    cols = bilinear_weights(x.shape[3], out_size)
    return np.einsum("oh,nchw,pw->ncop", rows, x, cols, optimize=True).astype(x.dtype, copy=False)


def _get(weights: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(weights[name])
    except KeyError:
        raise ValueError(f"weight {name!r} is missing from the extracted sub-network") from None


XNNPACK_MAX_DW_TAPS = 25
"""Largest depthwise kernel (in taps) with a fast XNNPACK micro-kernel: a 7x7 (49-tap) depthwise
conv takes a generic path that measured 10-16x slower than 5x5 (LiteRT 2.3 and ExecuTorch 1.5,
x86-64), while 3x7 (21 taps) and 1x7 run at 5x5 speed."""


@dataclass(frozen=True)
class ConvPlan:
    """How to lower one conv for a static input size: only the kernel taps that can touch real
    pixels (`lo`..`lo+taps-1` per axis), explicit (possibly asymmetric) padding, and - for
    depthwise kernels with more than `max_taps` taps - a split into row bands whose partial
    results are summed. out = act(sum_b conv_valid(pad(x)[rows of band b], weight[band b]) + bias).
    """

    conv: FoldedConv
    in_size: int
    out_size: int
    lo: int
    taps: int
    pad_before: int
    pad_after: int
    bands: tuple[tuple[int, int], ...]  # row ranges [start, stop) in trimmed-kernel coordinates

    @property
    def weight(self) -> np.ndarray:
        """The trimmed (cout, cin/groups, taps, taps) weight."""
        hi = self.lo + self.taps
        return self.conv.weight[:, :, self.lo:hi, self.lo:hi]

    @property
    def same_padding(self) -> bool:
        """True when TFLite/XNNPACK 'SAME' padding reproduces this plan (stride 1, symmetric, odd)."""
        return (self.conv.stride == 1 and self.taps % 2 == 1 and
                self.pad_before == self.pad_after == self.taps // 2)

    @property
    def padded_size(self) -> int:
        return self.in_size + self.pad_before + self.pad_after

    def band_rows(self, band: tuple[int, int]) -> tuple[int, int]:
        """Rows of the padded input that band [a, b) reads: start and count."""
        a, b = band
        return a, self.conv.stride * (self.out_size - 1) + (b - a)


def plan_conv(conv: FoldedConv, in_size: int, max_taps: int | None = XNNPACK_MAX_DW_TAPS) -> ConvPlan:
    """Plan `conv` on a square in_size x in_size map (torch semantics: symmetric padding k//2).

    Taps that only ever multiply padding are dropped (a 7x7 kernel on a 2x2 map is really 3x3);
    the padding left is exactly what a VALID conv with the trimmed kernel needs. `max_taps=None`
    never splits.
    """
    k, s, p = conv.kernel, conv.stride, conv.padding
    out = conv.out_size(in_size)
    live = [i for i in range(k) if any(0 <= o * s + i - p < in_size for o in range(out))]
    lo, taps = live[0], live[-1] - live[0] + 1
    pad_before = p - lo
    pad_after = s * (out - 1) + taps - in_size - pad_before
    if pad_before < 0 or pad_after < 0:  # cannot happen for torch's k//2 padding; guard the algebra
        raise ValueError(f"conv plan for kernel {k} stride {s} on {in_size}x{in_size} needs cropping")
    bands: tuple[tuple[int, int], ...] = ((0, taps),)
    if conv.depthwise and max_taps is not None and taps * taps > max_taps:
        rows = max(1, max_taps // taps)
        bands = tuple((a, min(a + rows, taps)) for a in range(0, taps, rows))
    return ConvPlan(conv, in_size, out, lo, taps, pad_before, pad_after, bands)
