"""The one description of a sub-network: its layers, in order, with the names of their weights.

`subnet_layers(space, arch)` decodes an arch into this description (timm's builder pattern:
one function decodes, small explicit layer types describe). Every consumer walks it instead of
re-deriving the topology: BN folding (`net/folded.py`) turns it into the engines' op list,
the numpy BN recalibration runs it, the host's static `SubNet` builds its modules from it, and
block profiling builds its host networks from it. Adding a layer type (squeeze-excite, say) is
a new dataclass here plus one translation per consumer.

The weight-name scheme (`{name}.conv.weight`, `{name}.bn.{weight,bias,running_mean,
running_var}`, `classifier.{weight,bias}`) and the BatchNorm epsilon live here and nowhere
else. Pure Python: the host and the torch-free device both import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Union

from edge_eas.net.space import ACTIVATIONS, Arch, BlockConfig, SearchSpace, conv_out_size

BN_EPS = 1e-5
"""BatchNorm epsilon of every BN in the supernet and its sub-networks (torch's default)."""

BN_STATS = ("weight", "bias", "running_mean", "running_var")
"""The per-channel BatchNorm tensors stored for every conv, in `{name}.bn.{stat}`."""

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
class SELayer:
    """Squeeze-excite: x * hsigmoid(expand(relu(reduce(mean over H, W of x)))), with
    `{name}.reduce.weight` (mid, channels), `{name}.expand.weight` (channels, mid) and biases.
    hsigmoid(z) = relu6(z + 3) / 6, as in MobileNetV3."""

    name: str
    channels: int
    mid: int

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        c, m = self.channels, self.mid
        return {f"{self.name}.reduce.weight": (m, c), f"{self.name}.reduce.bias": (m,),
                f"{self.name}.expand.weight": (c, m), f"{self.name}.expand.bias": (c,)}


@dataclass(frozen=True)
class BlockLayer:
    """A block: its layers run in order, and the block's input is added to their output when
    `residual` (stride 1 and equal widths)."""

    name: str
    body: tuple["Layer", ...]
    residual: bool


@dataclass(frozen=True)
class ResizeLayer:
    """Bilinear resize of the input image, `in_size` -> `out_size` on each side, with half-pixel
    centres and no antialiasing: torch's F.interpolate(mode="bilinear", align_corners=False) and
    TFLite's RESIZE_BILINEAR(half_pixel_centers=True). An arch that runs below the native input
    size starts with it, so every arch (and every exported file) takes the native image."""

    channels: int
    in_size: int
    out_size: int
    name: str = "resize"


@dataclass(frozen=True)
class PoolLayer:
    """Global average pool over H and W: (N, C, H, W) -> (N, C)."""

    name: str = "pool"


@dataclass(frozen=True)
class LinearLayer:
    """y = act(x @ weight.T + bias): `{name}.weight` (out, in_features) and `{name}.bias`. The
    classifier's width (out_features None) is the task's number of classes, read from the
    weights; the mbv3 feature mix has a fixed width and h-swish."""

    in_features: int
    name: str = "classifier"
    out_features: int | None = None
    act: str = "none"

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def bias_name(self) -> str:
        return f"{self.name}.bias"


Layer = Union[ResizeLayer, ConvLayer, SELayer, BlockLayer, PoolLayer, LinearLayer]


def mbconv_layers(name: str, cfg: BlockConfig) -> BlockLayer:
    """MBConv (inverted residual): expand 1x1 -> depthwise kxk -> [squeeze-excite] -> project 1x1
    (linear), the block's activation after expand and depthwise. Expand 1 has no expand conv."""
    h = cfg.hidden
    body: list[Layer] = []
    if cfg.expand != 1:
        body.append(ConvLayer(f"{name}.expand", cfg.in_channels, h, 1, 1, cfg.in_size, act=cfg.act))
    body.append(ConvLayer(f"{name}.dw", h, h, cfg.kernel, cfg.stride, cfg.in_size, groups=h, act=cfg.act))
    if cfg.se:
        body.append(SELayer(f"{name}.se", h, cfg.se_channels))
    body.append(ConvLayer(f"{name}.project", h, cfg.out_channels, 1, 1, cfg.out_size, act="none"))
    return BlockLayer(name, tuple(body), cfg.residual)


def stem_layers(space: SearchSpace, resolution: int = 0) -> tuple[Layer, ...]:
    """What every arch running at `resolution` (0: native) runs before its elastic blocks: the
    resize from the native input (when smaller), the stem 3x3 and the fixed first block."""
    geo = space.geometry(resolution)
    stem: list[Layer] = []
    if geo.resolution != space.resolution:
        stem.append(ResizeLayer(space.in_channels, space.resolution, geo.resolution))
    stem.append(ConvLayer("stem", geo.in_channels, geo.stem_channels, 3, geo.stem_stride, geo.resolution,
                          act=geo.stem_act))
    first = geo.first_block_config()
    if first is not None:
        stem.append(mbconv_layers("first", first))
    return tuple(stem)


def head_layers(space: SearchSpace, in_channels: int | None = None, resolution: int = 0) -> tuple[Layer, ...]:
    """What every arch runs after its elastic blocks: head 1x1, pool, [feature mix], classifier;
    `in_channels` is the last stage's width in the arch (its full width when None) and
    `resolution` the side it runs at (0: native)."""
    geo = space.geometry(resolution)
    head: list[Layer] = [ConvLayer("head", in_channels or space.last_channels, space.head_channels, 1, 1,
                                   geo.final_size(), act=space.head_act), PoolLayer()]
    features = space.head_channels
    if space.mix_channels:
        head.append(LinearLayer(features, "mix", space.mix_channels, "hswish"))
        features = space.mix_channels
    return (*head, LinearLayer(features))


@lru_cache(maxsize=256)
def subnet_layers(space: SearchSpace, arch: Arch, slot_names: bool = False) -> tuple[Layer, ...]:
    """[resize ->] stem (+ first block) -> the arch's active blocks (`blocks.{i}`, i counting active blocks
    only) -> head 1x1 -> global average pool -> (feature mix ->) classifier. `slot_names` names
    each block by its supernet slot instead, as the supernet's state does (`net/slicing.py`).
    Kept per (space, arch): slicing, folding and costs of one specialisation share one build."""
    blocks = tuple(mbconv_layers(f"blocks.{slot if slot_names else i}", cfg) for slot, i, cfg in space.slots(arch))
    return (*stem_layers(space, arch.resolution), *blocks,
            *head_layers(space, space.stage_widths(arch)[-1], arch.resolution))


def conv_layers(layers: tuple[Layer, ...]) -> Iterator[ConvLayer]:
    """Every conv, in execution order, blocks included."""
    for layer in layers:
        if isinstance(layer, ConvLayer):
            yield layer
        elif isinstance(layer, BlockLayer):
            yield from conv_layers(layer.body)


def walk(layers: tuple[Layer, ...]) -> Iterator[Layer]:
    """Every layer, blocks opened, in execution order."""
    for layer in layers:
        if isinstance(layer, BlockLayer):
            yield from walk(layer.body)
        else:
            yield layer


def weight_names(layers: tuple[Layer, ...]) -> list[str]:
    """Every tensor name a sub-network's weight dict holds, in execution order."""
    names: list[str] = []
    for layer in walk(layers):
        if isinstance(layer, ConvLayer):
            names += [layer.weight_name, *(layer.bn_name(s) for s in BN_STATS)]
        elif isinstance(layer, SELayer):
            names += list(layer.weight_shapes())
        elif isinstance(layer, LinearLayer):
            names += [layer.weight_name, layer.bias_name]
    return names
