"""The one description of a sub-network: its layers, in order, with the names of their weights.

`subnet_layers(space, arch)` decodes an arch into this description (timm's builder pattern:
one function decodes, small explicit layer types describe). Every consumer walks it instead of
re-deriving the topology: BN folding (`runtime/folded.py`) turns it into the engines' op list,
the numpy BN recalibration runs it, the host's static `SubNet` builds its modules from it, and
block profiling builds its host networks from it. Adding a layer type (squeeze-excite, say) is
a new dataclass here plus one translation per consumer.

The weight-name scheme (`{name}.conv.weight`, `{name}.bn.{weight,bias,running_mean,
running_var}`, `classifier.{weight,bias}`) and the BatchNorm epsilon live here and nowhere
else. Pure Python: the host and the torch-free device both import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

from .space import Arch, BlockConfig, SearchSpace, conv_out_size

BN_EPS = 1e-5
"""BatchNorm epsilon of every BN in the supernet and its sub-networks (torch's default)."""

BN_STATS = ("weight", "bias", "running_mean", "running_var")
"""The per-channel BatchNorm tensors stored for every conv, in `{name}.bn.{stat}`."""

ACTIVATIONS = ("none", "relu6")
"""Activations a conv may apply after its (folded) BatchNorm; every engine implements each."""


@dataclass(frozen=True)
class ConvLayer:
    """conv (no bias) -> BatchNorm -> activation, with torch's symmetric k//2 padding."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    in_size: int
    groups: int = 1
    act: str = "relu6"

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"{self.name}: unknown activation {self.act!r}; choose from {', '.join(ACTIVATIONS)}")

    @property
    def weight_name(self) -> str:
        return f"{self.name}.conv.weight"

    def bn_name(self, stat: str) -> str:
        return f"{self.name}.bn.{stat}"

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """torch's OIHW layout."""
        return (self.out_channels, self.in_channels // self.groups, self.kernel, self.kernel)

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, self.kernel, self.stride)


@dataclass(frozen=True)
class BlockLayer:
    """A block: its layers run in order, and the block's input is added to their output when
    `residual` (stride 1 and equal widths)."""

    name: str
    body: tuple["Layer", ...]
    residual: bool


@dataclass(frozen=True)
class PoolLayer:
    """Global average pool over H and W: (N, C, H, W) -> (N, C)."""

    name: str = "pool"


@dataclass(frozen=True)
class LinearLayer:
    """The classifier: `classifier.weight` (num_classes, in_features) and `classifier.bias`.
    The number of classes is the task's, so it is read from the weights, not from the arch."""

    in_features: int
    name: str = "classifier"

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def bias_name(self) -> str:
        return f"{self.name}.bias"


Layer = Union[ConvLayer, BlockLayer, PoolLayer, LinearLayer]


def mbconv_layers(name: str, cfg: BlockConfig) -> BlockLayer:
    """MBConv (inverted residual): expand 1x1 (ReLU6) -> depthwise kxk (ReLU6) -> project 1x1."""
    h = cfg.hidden
    return BlockLayer(name, (
        ConvLayer(f"{name}.expand", cfg.in_channels, h, 1, 1, cfg.in_size),
        ConvLayer(f"{name}.dw", h, h, cfg.kernel, cfg.stride, cfg.in_size, groups=h),
        ConvLayer(f"{name}.project", h, cfg.out_channels, 1, 1, cfg.out_size, act="none"),
    ), cfg.residual)


def subnet_layers(space: SearchSpace, arch: Arch) -> tuple[Layer, ...]:
    """stem 3x3 -> the arch's active blocks (`blocks.{i}`, i counting active blocks only) ->
    head 1x1 -> global average pool -> classifier."""
    layers: list[Layer] = [ConvLayer("stem", space.in_channels, space.stem_channels, 3, space.stem_stride,
                                     space.resolution)]
    for _, i, cfg in space.slots(arch):
        layers.append(mbconv_layers(f"blocks.{i}", cfg))
    layers += [ConvLayer("head", space.last_channels, space.head_channels, 1, 1, space.final_size()),
               PoolLayer(), LinearLayer(space.head_channels)]
    return tuple(layers)


def conv_layers(layers: tuple[Layer, ...]) -> Iterator[ConvLayer]:
    """Every conv, in execution order, blocks included."""
    for layer in layers:
        if isinstance(layer, ConvLayer):
            yield layer
        elif isinstance(layer, BlockLayer):
            yield from conv_layers(layer.body)


def weight_names(layers: tuple[Layer, ...]) -> list[str]:
    """Every tensor name a sub-network's weight dict holds, in execution order."""
    names: list[str] = []
    for conv in conv_layers(layers):
        names += [conv.weight_name, *(conv.bn_name(s) for s in BN_STATS)]
    for layer in layers:
        if isinstance(layer, LinearLayer):
            names += [layer.weight_name, layer.bias_name]
    return names
