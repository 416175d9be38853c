"""The latency model's features of a block and of the fixed part, read off the sub-network
description (`edge_eas.net.subnet`): the MACs of each conv, split by kind, the bytes its maps
and weights move, and its layer count. numpy only: the device predicts with them.
"""

from __future__ import annotations

from math import prod

import numpy as np

from edge_eas.cost.flops import layer_macs
from edge_eas.net.activations import ACTIVATIONS
from edge_eas.net.block import BlockConfig
from edge_eas.net.space import SearchSpace
from edge_eas.net.subnet import (BlockLayer, ConvLayer, LinearLayer, ResizeLayer, SELayer, head_layers, mbconv_layers,
                                 stem_layers)

FEATURES = ("pointwise_macs", "dw_macs_k<=3", "dw_macs_k5", "dw_macs_k>=7", "bytes", "conv_layers")

_BYTES = 4  # float32


def _map(size: int, channels: int) -> int:
    return size * size * channels


def _conv_macs(conv: ConvLayer) -> list[int]:
    """The first four features of one conv: a dense conv's MACs count as pointwise; a depthwise
    conv's by kernel size, since engines run each size with its own kernel at its own
    efficiency (XNNPACK, oneDNN)."""
    macs, k = layer_macs(conv), conv.kernel
    if conv.groups == 1:
        return [macs, 0, 0, 0]
    return [0, macs * (k <= 3), macs * (k == 5), macs * (k >= 7)]


def _swish_pass(conv: ConvLayer) -> int:
    """An activation with a gate (h-swish) costs one more pass over the output map."""
    return _map(conv.out_size, conv.out_channels) if ACTIVATIONS[conv.act].extra_pass else 0


def _block_features(block: BlockLayer) -> np.ndarray:
    """A block's features. Bytes: its input map, each conv's input and output map (an expand
    conv's input is the block's input and its output the depthwise input, so it adds none),
    h-swish passes, squeeze-excite's read and scaling of the hidden map, and every weight."""
    convs = [layer for layer in block.body if isinstance(layer, ConvLayer)]
    f = [0, 0, 0, 0]
    maps, weights, layers, last_map = _map(convs[0].in_size, convs[0].in_channels), 0, 0, 0
    for layer in block.body:
        if isinstance(layer, ConvLayer):
            f = [a + b for a, b in zip(f, _conv_macs(layer))]
            last_map = _map(layer.out_size, layer.out_channels)
            expand = layer.groups == 1 and layer is not convs[-1]
            maps += (0 if expand else _map(layer.in_size, layer.in_channels) + last_map) + _swish_pass(layer)
            weights += prod(layer.weight_shape)
            layers += 1
        elif isinstance(layer, SELayer):
            f[0] += layer_macs(layer)
            maps += 2 * last_map
            weights += 2 * layer.channels * layer.mid
            layers += 2
    return np.array([*f, _BYTES * (maps + weights), float(layers)])


def block_features(cfg: BlockConfig) -> np.ndarray:
    """Per-block features (see FEATURES) of the MBConv block `cfg` describes."""
    return _block_features(mbconv_layers("block", cfg))


def fixed_features(space: SearchSpace, num_classes: int, resolution: int = 0,
                   last_width: int | None = None) -> np.ndarray:
    """The input resize, stem, the fixed first block, head, feature mix and classifier as the
    same features, for an arch at `resolution` (0: native) whose last stage is `last_width`
    wide (None: full). The per-inference constant is separate. Outside blocks, bytes count the
    maps only, and the classifier adds no layer: the form every fitted model was fitted on."""
    dense, maps, layers = 0, 0, 0
    blocks = []
    for layer in (*stem_layers(space, resolution), *head_layers(space, last_width, resolution)):
        if isinstance(layer, ResizeLayer):
            maps += _map(layer.in_size, layer.channels) + _map(layer.out_size, layer.channels)
            layers += 1
        elif isinstance(layer, ConvLayer):
            dense += layer_macs(layer)
            maps += _map(layer.in_size, layer.in_channels) + _map(layer.out_size, layer.out_channels)
            maps += _swish_pass(layer)
            layers += 1
        elif isinstance(layer, LinearLayer):
            dense += layer_macs(layer, num_classes)
            layers += layer.out_features is not None
        elif isinstance(layer, BlockLayer):
            blocks.append(_block_features(layer))
    fixed = np.array([dense, 0.0, 0.0, 0.0, _BYTES * maps, float(layers)])
    for block in blocks:
        fixed = fixed + block
    return fixed
