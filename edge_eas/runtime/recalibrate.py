"""BatchNorm recalibration on the device, in numpy (OFA-style): a sub-network cut from the
supernet inherits BN statistics averaged over all archs seen in training, which fit no single
arch well; re-estimating them on a few images of the task's classes restores its accuracy.

Matches `supernet.recalibrate_bn` on the host: one pass in training-mode BN (normalise with
the batch's biased variance), storing the mean and the unbiased variance as running stats.
"""

from __future__ import annotations

import numpy as np

from ..space import Arch, SearchSpace
from .engines.numpy_engine import nhwc_conv
from .folded import FoldedConv


def _conv(weights: dict[str, np.ndarray], prefix: str, stride: int, groups: int) -> FoldedConv:
    w = weights[f"{prefix}.conv.weight"].astype(np.float32)
    return FoldedConv(w, np.zeros(w.shape[0], np.float32), stride, groups, relu6=False)


def _bn_batch(weights: dict[str, np.ndarray], prefix: str, y: np.ndarray, relu6: bool, eps: float) -> np.ndarray:
    """Record this layer's statistics, then apply BN with the batch statistics (NHWC)."""
    flat = y.reshape(-1, y.shape[-1]).astype(np.float64)
    n = flat.shape[0]
    mean = flat.mean(0)
    var = flat.var(0)
    weights[f"{prefix}.bn.running_mean"] = mean.astype(np.float32)
    weights[f"{prefix}.bn.running_var"] = (var * n / max(1, n - 1)).astype(np.float32)
    gamma, beta = weights[f"{prefix}.bn.weight"], weights[f"{prefix}.bn.bias"]
    out = ((y - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32)
    return np.clip(out, 0.0, 6.0) if relu6 else out


def recalibrate(weights: dict[str, np.ndarray], space: SearchSpace, arch: Arch, images: np.ndarray,
                eps: float = 1e-5) -> dict[str, np.ndarray]:
    """A copy of `weights` (extract_weights naming) with BN running stats re-estimated on
    `images` (preprocessed NCHW float32)."""
    w = dict(weights)
    size = space.resolution
    h = np.ascontiguousarray(images.astype(np.float32).transpose(0, 2, 3, 1))
    stem = _conv(w, "stem", space.stem_stride, 1)
    h = _bn_batch(w, "stem", nhwc_conv(stem, size)(h), True, eps)
    size = stem.out_size(size)
    for i, cfg in enumerate(space.active_blocks(arch)):
        p = f"blocks.{i}"
        x_in = h
        h = _bn_batch(w, f"{p}.expand", nhwc_conv(_conv(w, f"{p}.expand", 1, 1), size)(h), True, eps)
        dw = _conv(w, f"{p}.dw", cfg.stride, cfg.hidden)
        h = _bn_batch(w, f"{p}.dw", nhwc_conv(dw, size)(h), True, eps)
        size = dw.out_size(size)
        h = _bn_batch(w, f"{p}.project", nhwc_conv(_conv(w, f"{p}.project", 1, 1), size)(h), False, eps)
        if cfg.residual:
            h = h + x_in
    _bn_batch(w, "head", nhwc_conv(_conv(w, "head", 1, 1), size)(h), True, eps)
    return w
