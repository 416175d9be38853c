"""Pure-numpy engine: the reference that runs wherever numpy does (no torch, no native deps).

Translates the FoldedNet's ops one by one into NHWC kernels (`_compile`). Works in NHWC so that every 1x1 conv is one (N*H*W, Cin) @ (Cin, Cout) BLAS matmul; the depthwise
conv is one einsum over a zero-copy strided view of the k*k shifted slices of the zero-padded
tensor (taps that only ever read padding are dropped up front, which matters for 7x7 kernels on
2x2 maps); the stem is im2col + one matmul; the input resize of an arch below the native side is
two matmuls with the bilinear interpolation matrices (rows, then columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_eas.net.activations import activation
from edge_eas.net.folded import (ConvPlan, FoldedBlock, FoldedConv, FoldedNet, GlobalAvgPool, Linear, Op, Resize,
                                 SqueezeExcite, bilinear_weights, plan_conv)
from edge_eas.runtime.engines.base import as_input


Kernel = Callable[[np.ndarray], np.ndarray]


def activate(y: np.ndarray, act: str) -> np.ndarray:
    """Apply activation `act` (the registry's numpy op, edge_eas.net.activations) in place."""
    return activation(act).numpy(y)


def hard_sigmoid(z: np.ndarray) -> np.ndarray:
    """relu6(z + 3) / 6, in place."""
    z += 3.0
    np.clip(z, 0.0, 6.0, out=z)
    z *= 1.0 / 6.0
    return z


@dataclass(frozen=True)
class _Pointwise:
    """1x1 conv as matmul: (M, Cin) @ (Cin, Cout) + bias."""

    w: np.ndarray  # (Cin, Cout)
    b: np.ndarray
    act: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        y = np.matmul(x.reshape(n * h * w, c), self.w)
        y += self.b
        return activate(y, self.act).reshape(n, h, w, -1)


def _padded(x: np.ndarray, plan: ConvPlan) -> np.ndarray:
    """Zero-pad NHWC `x` as the plan says (asymmetric when dead taps were trimmed)."""
    before, after = plan.pad_before, plan.pad_after
    if before == after == 0:
        return x
    n, h, w, c = x.shape
    xp = np.zeros((n, h + before + after, w + before + after, c), dtype=x.dtype)
    xp[:, before:before + h, before:before + w, :] = x
    return xp


def _patches(xp: np.ndarray, plan: ConvPlan) -> np.ndarray:
    """Zero-copy (N, Ho, Wo, t, t, C) view: each output pixel's t x t input window."""
    sn, sh, sw, sc = xp.strides
    s, o, t = plan.conv.stride, plan.out_size, plan.taps
    return as_strided(xp, (xp.shape[0], o, o, t, t, xp.shape[3]), (sn, sh * s, sw * s, sh, sw, sc),
                      writeable=False)


@dataclass(frozen=True)
class _Depthwise:
    """Depthwise conv: one einsum (multiply-accumulate in a single pass, no temporaries) over
    the strided patch view; taps that only read padding were trimmed by the plan."""

    plan: ConvPlan
    w: np.ndarray  # (t, t, C)
    b: np.ndarray
    act: str

    @classmethod
    def build(cls, conv: FoldedConv, in_size: int) -> "_Depthwise":
        plan = plan_conv(conv, in_size, max_taps=None)
        return cls(plan, np.ascontiguousarray(plan.weight[:, 0].transpose(1, 2, 0)), conv.bias, conv.act)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        acc = np.einsum("nhwijc,ijc->nhwc", _patches(_padded(x, self.plan), self.plan), self.w)
        acc += self.b
        return activate(acc, self.act)


@dataclass(frozen=True)
class _Im2col:
    """Dense kxk conv (the stem): copy the patch view into (M, t*t*Cin) rows, one matmul."""

    plan: ConvPlan
    w: np.ndarray  # (t*t*Cin, Cout), rows ordered (i, j, cin)
    b: np.ndarray
    act: str

    @classmethod
    def build(cls, conv: FoldedConv, in_size: int) -> "_Im2col":
        if conv.groups != 1:
            raise ValueError("im2col handles dense convs only")
        plan = plan_conv(conv, in_size, max_taps=None)
        w = plan.weight.transpose(2, 3, 1, 0).reshape(-1, conv.out_channels)
        return cls(plan, np.ascontiguousarray(w), conv.bias, conv.act)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        patches = _patches(_padded(x, self.plan), self.plan)
        n, o = patches.shape[0], self.plan.out_size
        y = np.matmul(np.ascontiguousarray(patches).reshape(n * o * o, -1), self.w)
        y += self.b
        return activate(y, self.act).reshape(n, o, o, -1)


def squeeze_excite(op: SqueezeExcite) -> Kernel:
    """The NHWC numpy kernel for squeeze-excite (public, like nhwc_conv, for BN recalibration)."""
    return _SqueezeExcite.build(op)


def _pointwise(conv: FoldedConv) -> _Pointwise:
    if conv.kernel != 1 or conv.stride != 1 or conv.groups != 1:
        raise ValueError(f"expected a 1x1 stride-1 conv, got kernel {conv.kernel} stride {conv.stride}")
    return _Pointwise(np.ascontiguousarray(conv.weight[:, :, 0, 0].T), conv.bias, conv.act)


def nhwc_conv(conv: FoldedConv, in_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The NHWC numpy kernel for one conv on an in_size x in_size map (1x1 -> matmul, depthwise
    -> einsum, dense kxk -> im2col). Public for numpy-side tools such as BN recalibration."""
    if conv.kernel == 1 and conv.stride == 1 and conv.groups == 1:
        return _pointwise(conv)
    if conv.depthwise:
        return _Depthwise.build(conv, in_size)
    return _Im2col.build(conv, in_size)


@dataclass(frozen=True)
class _Block:
    """A block's kernels in order, plus its input when residual."""

    body: tuple[Kernel, ...]
    residual: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x
        for kernel in self.body:
            y = kernel(y)
        if self.residual:
            y += x
        return y


def _pool(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2), dtype=np.float32)


@dataclass(frozen=True)
class _Linear:
    w: np.ndarray  # (in, out)
    b: np.ndarray
    act: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.w
        y += self.b
        return activate(y, self.act)


@dataclass(frozen=True)
class _SqueezeExcite:
    """Per-image channel gates from the pooled map: two small matmuls, then one broadcast multiply."""

    reduce_w: np.ndarray  # (C, mid)
    reduce_b: np.ndarray
    expand_w: np.ndarray  # (mid, C)
    expand_b: np.ndarray

    @classmethod
    def build(cls, op: SqueezeExcite) -> "_SqueezeExcite":
        return cls(np.ascontiguousarray(op.reduce_w.T), op.reduce_b, np.ascontiguousarray(op.expand_w.T), op.expand_b)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x.mean(axis=(1, 2), dtype=np.float32) @ self.reduce_w
        h += self.reduce_b
        np.maximum(h, 0.0, out=h)
        g = h @ self.expand_w
        g += self.expand_b
        return x * hard_sigmoid(g)[:, None, None, :]


@dataclass(frozen=True)
class _Resize:
    """Bilinear resize (half-pixel centres, no antialiasing: `edge_eas.net.folded.bilinear_resize`)
    as two BLAS matmuls: rows, then columns, of the NHWC map."""

    rows: np.ndarray  # (out, in)
    cols: np.ndarray  # (out, in)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        o = self.rows.shape[0]
        y = np.matmul(self.rows, x.reshape(n, h, w * c)).reshape(n * o, w, c)
        return np.matmul(self.cols, y).reshape(n, o, o, c)


def nhwc_resize(in_size: int, out_size: int) -> Kernel:
    """The NHWC numpy kernel for a bilinear resize of an in_size x in_size map to out_size (public,
    like nhwc_conv, for BN recalibration)."""
    weights = np.ascontiguousarray(bilinear_weights(in_size, out_size), dtype=np.float32)
    return _Resize(weights, weights)


def _compile(op: Op, size: int) -> tuple[Kernel, int]:
    """One op as an NHWC kernel on a size x size map, and the size it leaves."""
    if isinstance(op, Resize):
        if op.in_size != size:
            raise ValueError(f"{op.name}: resizes a {op.in_size}x{op.in_size} map, got {size}x{size}")
        return nhwc_resize(op.in_size, op.out_size), op.out_size
    if isinstance(op, FoldedConv):
        return nhwc_conv(op, size), op.out_size(size)
    if isinstance(op, FoldedBlock):
        body = []
        for sub in op.ops:
            kernel, size = _compile(sub, size)
            body.append(kernel)
        return _Block(tuple(body), op.residual), size
    if isinstance(op, GlobalAvgPool):
        return _pool, 1
    if isinstance(op, Linear):
        return _Linear(np.ascontiguousarray(op.weight.T), op.bias, op.act), 1
    if isinstance(op, SqueezeExcite):
        return squeeze_excite(op), size
    raise TypeError(f"the numpy engine has no translation for {type(op).__name__}")


class NumpyEngine:
    """Runs a FoldedNet with numpy; any batch size; float32 throughout."""

    name = "numpy"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None) -> None:
        self.folded = folded
        self.batch_size = batch_size
        self.threads, self.threads_read_back = _limit_blas_threads(threads)
        _, height, width = folded.input_shape
        if height != width:
            raise ValueError(f"the numpy engine expects square inputs, got {height}x{width}")
        size = height
        kernels: list[Kernel] = []
        for op in folded.ops:
            kernel, size = _compile(op, size)
            kernels.append(kernel)
        self._kernels = tuple(kernels)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        h = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        for kernel in self._kernels:
            h = kernel(h)
        return h


def _limit_blas_threads(threads: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
    """numpy's BLAS pool is process-wide: limit it with threadpoolctl (the runtime extra installs
    it), then read back what is in effect. Returns (the threads to file measurements under, the
    BLAS threads read back). The first is `threads` when honoured, what runs instead when not, and
    None for the library default or when nothing can be read (no threadpoolctl): a request that
    cannot be checked is not filed as honoured."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits  # lazy: optional (the runtime extra)
    except ImportError:
        return None, None
    if threads is not None:
        threadpool_limits(limits=threads, user_api="blas")
    pools = [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]
    in_effect = max(pools) if pools else 1  # no BLAS pool: numpy runs single-threaded
    return (None if threads is None else in_effect), in_effect
