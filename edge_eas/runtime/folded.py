"""Turn an extracted sub-network weight dict into an inference-ready, BatchNorm-free `FoldedNet`.

Every engine (numpy, TFLite, ExecuTorch, torch) consumes the same `FoldedNet`, so BN folding,
shape checks and the network's structure live in one place. numpy only: runs on the device.

Weight names follow `Supernet.extract_weights` / `SubNet` (see edge_eas/supernet/static.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..space import Arch, SearchSpace

BN_EPS = 1e-5
"""BatchNorm epsilon used by the supernet (torch's default)."""


@dataclass(frozen=True)
class FoldedConv:
    """A conv with BN folded in: y = act(conv(x, weight, stride, padding=k//2, groups) + bias).

    `weight` keeps torch's OIHW layout, (cout, cin // groups, k, k); engines re-layout it.
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    groups: int = 1
    relu6: bool = True

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
class FoldedBlock:
    """MBConv: expand 1x1 (ReLU6) -> depthwise kxk (ReLU6) -> project 1x1 (linear) [+ input]."""

    expand: FoldedConv
    dw: FoldedConv
    project: FoldedConv
    residual: bool

    @property
    def convs(self) -> tuple[FoldedConv, FoldedConv, FoldedConv]:
        return (self.expand, self.dw, self.project)


@dataclass(frozen=True)
class FoldedNet:
    """stem conv -> MBConv blocks -> head 1x1 conv -> global average pool -> linear classifier."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    stem: FoldedConv
    blocks: tuple[FoldedBlock, ...]
    head: FoldedConv
    classifier_weight: np.ndarray  # (num_classes, head_channels)
    classifier_bias: np.ndarray  # (num_classes,)

    @property
    def num_classes(self) -> int:
        return int(self.classifier_weight.shape[0])

    def convs(self) -> list[FoldedConv]:
        """All convolutions in execution order."""
        out = [self.stem]
        for block in self.blocks:
            out.extend(block.convs)
        out.append(self.head)
        return out

    def num_params(self) -> int:
        return sum(c.weight.size + c.bias.size for c in self.convs()) + \
            self.classifier_weight.size + self.classifier_bias.size


def fold_conv_bn(weights: Mapping[str, np.ndarray], prefix: str, stride: int, groups: int = 1,
                 relu6: bool = True, eps: float = BN_EPS) -> FoldedConv:
    """Fold `{prefix}.bn.*` into `{prefix}.conv.weight`: W' = W * s, b' = beta - mean * s,
    s = gamma / sqrt(var + eps) per output channel. Computed in float64, stored as float32."""
    w = _get(weights, f"{prefix}.conv.weight").astype(np.float64)
    if w.ndim != 4:
        raise ValueError(f"{prefix}.conv.weight must be 4-D (cout, cin, k, k), got shape {w.shape}")
    cout = w.shape[0]
    bn = {name: _get(weights, f"{prefix}.bn.{name}").astype(np.float64).reshape(-1)
          for name in ("weight", "bias", "running_mean", "running_var")}
    for name, v in bn.items():
        if v.shape != (cout,):
            raise ValueError(f"{prefix}.bn.{name} has {v.shape[0]} entries, conv has {cout} output channels")
    scale = bn["weight"] / np.sqrt(bn["running_var"] + eps)
    weight = (w * scale[:, None, None, None]).astype(np.float32)
    bias = (bn["bias"] - bn["running_mean"] * scale).astype(np.float32)
    return FoldedConv(weight, bias, int(stride), int(groups), relu6)


def fold_bn(weights: Mapping[str, np.ndarray], space: SearchSpace, arch: Arch, eps: float = BN_EPS) -> FoldedNet:
    """Fold every BatchNorm of an extracted sub-network (`Supernet.extract_weights(arch, classes)`).

    Strides and residual connections come from the space (they are not visible in weight
    shapes); kernels and channel counts are checked against the weights so that a weight
    dict from the wrong arch fails here, not as a shape error deep inside an engine.
    """
    configs = space.active_blocks(arch)
    stem = fold_conv_bn(weights, "stem", space.stem_stride, eps=eps)
    _check_shape(stem, "stem", space.stem_channels, space.in_channels, 3)
    blocks = []
    for i, cfg in enumerate(configs):
        p = f"blocks.{i}"
        expand = fold_conv_bn(weights, f"{p}.expand", 1, eps=eps)
        dw = fold_conv_bn(weights, f"{p}.dw", cfg.stride, groups=cfg.hidden, eps=eps)
        project = fold_conv_bn(weights, f"{p}.project", 1, relu6=False, eps=eps)
        _check_shape(expand, f"{p}.expand", cfg.hidden, cfg.in_channels, 1)
        _check_shape(dw, f"{p}.dw", cfg.hidden, cfg.hidden, cfg.kernel)
        _check_shape(project, f"{p}.project", cfg.out_channels, cfg.hidden, 1)
        blocks.append(FoldedBlock(expand, dw, project, cfg.residual))
    extra = f"blocks.{len(configs)}.expand.conv.weight"
    if extra in weights:
        raise ValueError(f"weights have more blocks than the arch's {len(configs)} active blocks ({extra})")
    head = fold_conv_bn(weights, "head", 1, eps=eps)
    _check_shape(head, "head", space.head_channels, space.last_channels, 1)
    cls_w = _get(weights, "classifier.weight").astype(np.float32)
    cls_b = _get(weights, "classifier.bias").astype(np.float32).reshape(-1)
    if cls_w.ndim != 2 or cls_w.shape[1] != space.head_channels or cls_b.shape != (cls_w.shape[0],):
        raise ValueError(f"classifier shapes {cls_w.shape}/{cls_b.shape} do not fit head width {space.head_channels}")
    return FoldedNet(tuple(space.input_shape), stem, tuple(blocks), head,
                     np.ascontiguousarray(cls_w), np.ascontiguousarray(cls_b))


def _get(weights: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(weights[name])
    except KeyError:
        raise ValueError(f"weight {name!r} is missing from the extracted sub-network") from None


def _check_shape(conv: FoldedConv, name: str, cout: int, cin: int, kernel: int) -> None:
    got = (conv.out_channels, conv.in_channels, conv.kernel, int(conv.weight.shape[-2]))
    if got != (cout, cin, kernel, kernel):
        raise ValueError(f"{name}.conv.weight has shape {conv.weight.shape} (groups={conv.groups}); "
                         f"the arch needs {cout} outputs, {cin} inputs, kernel {kernel}")


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
