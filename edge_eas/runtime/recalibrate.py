"""BatchNorm recalibration on the device, in numpy (OFA-style): a sub-network cut from the
supernet inherits BN statistics averaged over all archs seen in training, which fit no single
arch well; re-estimating them on a few images of the task's classes restores its accuracy.

Matches `supernet.recalibrate_bn` on the host: one pass in training-mode BN (normalise with
the batch's biased variance), storing the mean and the unbiased variance as running stats.
"""

from __future__ import annotations

import numpy as np

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import (BN_EPS, BlockLayer, ConvLayer, Layer, LinearLayer, PoolLayer, ResizeLayer, SELayer,
                                 subnet_layers)
from edge_eas.runtime.engines.numpy_engine import activate, nhwc_conv, nhwc_resize, squeeze_excite
from edge_eas.net.folded import FoldedConv, fold_squeeze_excite


def _conv_bn_batch(weights: dict[str, np.ndarray], layer: ConvLayer, x: np.ndarray, eps: float) -> np.ndarray:
    """Run the bare conv on NHWC `x`, record its output's statistics as the layer's BN running
    stats, then apply BN with the batch statistics and the activation."""
    w = weights[layer.weight_name].astype(np.float32)
    y = nhwc_conv(FoldedConv(w, np.zeros(w.shape[0], np.float32), layer.stride, layer.groups, "none"),
                  layer.in_size)(x)
    flat = y.reshape(-1, y.shape[-1]).astype(np.float64)
    n = flat.shape[0]
    mean = flat.mean(0)
    var = flat.var(0)
    weights[layer.bn_name("running_mean")] = mean.astype(np.float32)
    weights[layer.bn_name("running_var")] = (var * n / max(1, n - 1)).astype(np.float32)
    gamma, beta = weights[layer.bn_name("weight")], weights[layer.bn_name("bias")]
    return activate(((y - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32), layer.act)


def _walk(weights: dict[str, np.ndarray], layers: tuple[Layer, ...], h: np.ndarray, eps: float) -> np.ndarray:
    """Run the resize, convs and blocks in order (the pool and classifier have no BN: they end the walk)."""
    for layer in layers:
        if isinstance(layer, ConvLayer):
            h = _conv_bn_batch(weights, layer, h, eps)
        elif isinstance(layer, BlockLayer):
            y = _walk(weights, layer.body, h, eps)
            h = y + h if layer.residual else y
        elif isinstance(layer, SELayer):  # no BN of its own: runs as the engine runs it
            h = squeeze_excite(fold_squeeze_excite(weights, layer))(h)
        elif isinstance(layer, ResizeLayer):  # an arch below the native side: as the engine runs it
            h = nhwc_resize(layer.in_size, layer.out_size)(h)
        elif isinstance(layer, (PoolLayer, LinearLayer)):
            break
        else:  # a new layer is never skipped silently: its BNs would keep their old statistics
            raise TypeError(f"BN recalibration has no case for {type(layer).__name__}")
    return h


def recalibrate(weights: dict[str, np.ndarray], space: SearchSpace, arch: Arch, images: np.ndarray,
                eps: float = BN_EPS) -> dict[str, np.ndarray]:
    """A copy of `weights` (the sub-network's weight names) with BN running stats re-estimated
    on `images` (preprocessed NCHW float32)."""
    w = dict(weights)
    h = np.ascontiguousarray(images.astype(np.float32).transpose(0, 2, 3, 1))
    _walk(w, subnet_layers(space, arch), h, eps)
    return w
