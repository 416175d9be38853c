"""Analytic MACs and parameter counts of a sub-network, no framework needed.

"MFLOPs" in edge_eas means millions of multiply-accumulates (MAdds) of convs, squeeze-excite,
the feature mix and the classifier for one image — what `torch.utils.flop_counter` counts,
divided by two. BatchNorm, activations, pooling, SE's gating and residual adds are not counted
(the usual convention). Counted layer by layer over the sub-network description.
"""

from __future__ import annotations

from typing import Any, Sequence

from edge_eas.net.space import Arch, BlockConfig, SearchSpace
from edge_eas.cost.table import SlotCostTable
from edge_eas.net.subnet import (BlockLayer, ConvLayer, Layer, LinearLayer, SELayer, head_layers, mbconv_layers,
                                 stem_layers, subnet_layers)

DEFAULT_NUM_CLASSES = 10


def layer_macs(layer: Layer, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    """MACs of one layer of the sub-network description for one image."""
    if isinstance(layer, ConvLayer):
        return layer.out_size ** 2 * layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel ** 2
    if isinstance(layer, SELayer):
        return 2 * layer.channels * layer.mid
    if isinstance(layer, LinearLayer):
        return layer.in_features * (layer.out_features or num_classes)
    if isinstance(layer, BlockLayer):
        return sum(layer_macs(sub, num_classes) for sub in layer.body)
    return 0  # pooling


def layer_params(layer: Layer, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    """Parameters of one layer (a conv's BatchNorm counts its weight and bias)."""
    if isinstance(layer, ConvLayer):
        return layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel ** 2 + 2 * layer.out_channels
    if isinstance(layer, SELayer):
        return 2 * layer.channels * layer.mid + layer.channels + layer.mid
    if isinstance(layer, LinearLayer):
        out = layer.out_features or num_classes
        return layer.in_features * out + out
    if isinstance(layer, BlockLayer):
        return sum(layer_params(sub, num_classes) for sub in layer.body)
    return 0


def block_macs(cfg: BlockConfig) -> int:
    return layer_macs(mbconv_layers("block", cfg))


def block_params(cfg: BlockConfig) -> int:
    return layer_params(mbconv_layers("block", cfg))


def _fixed_layers(space: SearchSpace, resolution: int, last_width: int | None) -> tuple[Layer, ...]:
    return (*stem_layers(space, resolution), *head_layers(space, last_width, resolution))


def fixed_macs(space: SearchSpace, num_classes: int = DEFAULT_NUM_CLASSES, resolution: int = 0,
               last_width: int | None = None) -> int:
    """Stem, first block, head, feature mix and classifier: the part every arch at `resolution`
    whose last stage is `last_width` wide pays."""
    return sum(layer_macs(layer, num_classes) for layer in _fixed_layers(space, resolution, last_width))


def fixed_params(space: SearchSpace, num_classes: int = DEFAULT_NUM_CLASSES, resolution: int = 0,
                 last_width: int | None = None) -> int:
    return sum(layer_params(layer, num_classes) for layer in _fixed_layers(space, resolution, last_width))


def macs(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    return sum(layer_macs(layer, num_classes) for layer in subnet_layers(space, arch))


def params(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    return sum(layer_params(layer, num_classes) for layer in subnet_layers(space, arch))


def mflops(space: SearchSpace, arch: Arch, num_classes: int = DEFAULT_NUM_CLASSES) -> float:
    return macs(space, arch, num_classes) / 1e6


def macs_table(space: SearchSpace, num_classes: int) -> SlotCostTable:
    return SlotCostTable.build(space, block_macs, lambda side, width: fixed_macs(space, num_classes, side, width))


def params_table(space: SearchSpace, num_classes: int) -> SlotCostTable:
    return SlotCostTable.build(space, block_params, lambda side, width: fixed_params(space, num_classes, side, width))


def expected_macs(space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any, expand_probs: Any,
                  num_classes: int = DEFAULT_NUM_CLASSES, table: SlotCostTable | None = None,
                  width_probs: Sequence[Any] = (), resolution_probs: Any = None) -> Any:
    """Expected MACs under independent per-decision distributions (`SlotCostTable.expected`).
    `table` (a slot table of any cost, e.g. the generator trainer's MFLOPs table, built once)
    saves rebuilding the MACs table per call."""
    table = table if table is not None else macs_table(space, num_classes)
    return table.expected(space, depth_probs, kernel_probs, expand_probs, width_probs, resolution_probs)
