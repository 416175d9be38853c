"""Pure-numpy engine: the reference that runs wherever numpy does (no torch, no native deps).

Works in NHWC so that every 1x1 conv is one (N*H*W, Cin) @ (Cin, Cout) BLAS matmul; the depthwise
conv is a sum of k*k shifted, strided slices of a zero-padded tensor (taps that only ever read
padding are dropped up front, which matters for 7x7 kernels on 2x2 maps); the stem is im2col.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import as_input
from ..extract import FoldedConv, FoldedNet


@dataclass(frozen=True)
class _Pointwise:
    """1x1 conv as matmul: (M, Cin) @ (Cin, Cout) + bias."""

    w: np.ndarray  # (Cin, Cout)
    b: np.ndarray
    relu6: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        y = np.matmul(x.reshape(n * h * w, c), self.w)
        y += self.b
        if self.relu6:
            np.clip(y, 0.0, 6.0, out=y)
        return y.reshape(n, h, w, -1)


@dataclass(frozen=True)
class _Window:
    """Geometry of a kxk, stride-s conv with symmetric padding p on an HxW map."""

    kernel: int
    stride: int
    pad: int
    in_size: int
    out_size: int

    def taps(self) -> list[int]:
        """Kernel offsets (per axis) that read at least one real (non-padding) input pixel."""
        s, p, n_in = self.stride, self.pad, self.in_size
        return [i for i in range(self.kernel)
                if any(0 <= o * s + i - p < n_in for o in range(self.out_size))]

    def padded(self, x: np.ndarray) -> np.ndarray:
        if self.pad == 0:
            return x
        n, h, w, c = x.shape
        p = self.pad
        xp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=x.dtype)
        xp[:, p:p + h, p:p + w, :] = x
        return xp

    def shifted(self, xp: np.ndarray, i: int, j: int) -> np.ndarray:
        """The input pixels that kernel tap (i, j) multiplies, for every output pixel."""
        s, last = self.stride, self.stride * (self.out_size - 1) + 1
        return xp[:, i:i + last:s, j:j + last:s, :]


@dataclass(frozen=True)
class _Depthwise:
    """Depthwise kxk conv as a sum of shifted slices times per-channel tap weights."""

    window: _Window
    w: np.ndarray  # (k, k, C)
    b: np.ndarray
    relu6: bool
    taps: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, conv: FoldedConv, in_size: int) -> "_Depthwise":
        window = _Window(conv.kernel, conv.stride, conv.padding, in_size, conv.out_size(in_size))
        live = window.taps()
        w = np.ascontiguousarray(conv.weight[:, 0].transpose(1, 2, 0))
        return cls(window, w, conv.bias, conv.relu6, tuple((i, j) for i in live for j in live))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xp = self.window.padded(x)
        (i0, j0), rest = self.taps[0], self.taps[1:]
        acc = self.window.shifted(xp, i0, j0) * self.w[i0, j0]
        tmp = np.empty_like(acc)
        for i, j in rest:
            np.multiply(self.window.shifted(xp, i, j), self.w[i, j], out=tmp)
            acc += tmp
        acc += self.b
        if self.relu6:
            np.clip(acc, 0.0, 6.0, out=acc)
        return acc


@dataclass(frozen=True)
class _Im2col:
    """Dense kxk conv (the stem): gather patches into (M, k*k*Cin), one matmul."""

    window: _Window
    w: np.ndarray  # (k*k*Cin, Cout), rows ordered (i, j, cin)
    b: np.ndarray
    relu6: bool

    @classmethod
    def build(cls, conv: FoldedConv, in_size: int) -> "_Im2col":
        if conv.groups != 1:
            raise ValueError("im2col handles dense convs only")
        window = _Window(conv.kernel, conv.stride, conv.padding, in_size, conv.out_size(in_size))
        w = np.ascontiguousarray(conv.weight.transpose(2, 3, 1, 0).reshape(-1, conv.out_channels))
        return cls(window, w, conv.bias, conv.relu6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, _, _, c = x.shape
        k, o = self.window.kernel, self.window.out_size
        xp = self.window.padded(x)
        cols = np.empty((n, o, o, k, k, c), dtype=np.float32)
        for i in range(k):
            for j in range(k):
                cols[:, :, :, i, j, :] = self.window.shifted(xp, i, j)
        y = np.matmul(cols.reshape(n * o * o, k * k * c), self.w)
        y += self.b
        if self.relu6:
            np.clip(y, 0.0, 6.0, out=y)
        return y.reshape(n, o, o, -1)


def _pointwise(conv: FoldedConv) -> _Pointwise:
    if conv.kernel != 1 or conv.stride != 1 or conv.groups != 1:
        raise ValueError(f"expected a 1x1 stride-1 conv, got kernel {conv.kernel} stride {conv.stride}")
    return _Pointwise(np.ascontiguousarray(conv.weight[:, :, 0, 0].T), conv.bias, conv.relu6)


class NumpyEngine:
    """Runs a FoldedNet with numpy; any batch size; float32 throughout."""

    name = "numpy"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None) -> None:
        self.folded = folded
        self.batch_size = batch_size
        self.threads = _limit_blas_threads(threads)
        size = folded.input_shape[1]
        self._stem = _Im2col.build(folded.stem, size)
        size = self._stem.window.out_size
        self._blocks: list[tuple[_Pointwise, _Depthwise, _Pointwise, bool]] = []
        for block in folded.blocks:
            dw = _Depthwise.build(block.dw, size)
            size = dw.window.out_size
            self._blocks.append((_pointwise(block.expand), dw, _pointwise(block.project), block.residual))
        self._head = _pointwise(folded.head)
        self._cls_w = np.ascontiguousarray(folded.classifier_weight.T)
        self._cls_b = folded.classifier_bias

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        h = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        h = self._stem(h)
        for expand, dw, project, residual in self._blocks:
            y = project(dw(expand(h)))
            if residual:
                y += h
            h = y
        h = self._head(h)
        feats = h.mean(axis=(1, 2), dtype=np.float32)
        logits = feats @ self._cls_w
        logits += self._cls_b
        return logits


def _limit_blas_threads(threads: Optional[int]) -> Optional[int]:
    """numpy's BLAS pool is process-wide; limit it with threadpoolctl when that is installed.
    Returns the limit applied, or None when the BLAS default is left in place."""
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    threadpool_limits(limits=threads, user_api="blas")
    return threads
