"""Cut one sub-network's weights out of the supernet's state, in numpy: the only extraction.

The host (`Supernet.extract_weights`) and the torch-free device both call `slice_subnet`.
It walks the sub-network description (`edge_eas.net.subnet`): every conv takes the first output
and input channels of its supernet tensor and the centre k x k of its kernel, every BN the
first channels; squeeze-excite its first rows and columns. The supernet's own tensor names
(`stem.weight`, `stem_bn.*`, `blocks.{slot}.{part}.weight`, `blocks.{slot}.{part}_bn.bn.*`,
`first.*`, `mix.*`) are mapped here and nowhere else.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import BN_STATS, ConvLayer, LinearLayer, SELayer, conv_layers, subnet_layers, walk


def _supernet_name(name: str, slots: Sequence[int]) -> str:
    """A sub-network tensor prefix as the supernet names it: `blocks.{active index}` becomes
    `blocks.{supernet slot}`; everything else (stem, first, head, mix) keeps its name."""
    parts = name.split(".")
    if parts[0] == "blocks":
        parts[1] = str(slots[int(parts[1])])
    return ".".join(parts)


def _bn_prefix(layer: ConvLayer, src: str) -> str:
    """The supernet's BN of a conv: `{src}_bn` for the stem and head, the inner `.bn` of the
    elastic block's DynamicBatchNorm for convs inside a block."""
    return f"{src}_bn.bn" if "." in layer.name else f"{src}_bn"


def _crop(full: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The first rows (and columns) and, for a conv, the centre k x k taps (elastic kernels
    share their centre)."""
    if len(shape) == 4:
        o, i, k, _ = shape
        start = (full.shape[-1] - k) // 2
        return full[:o, :i, start:start + k, start:start + k]
    return full[tuple(slice(n) for n in shape)]


def slice_subnet(state: Mapping[str, np.ndarray], space: SearchSpace, arch: Arch,
                 classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The sub-network's weights (names of `edge_eas.net.subnet`), float32 and contiguous;
    `classes` keeps only those rows of the classifier."""
    layers = subnet_layers(space, arch)
    slots = [slot for slot, _, _ in space.slots(arch)]
    out: dict[str, np.ndarray] = {}
    for se in (layer for layer in walk(layers) if isinstance(layer, SELayer)):
        for name, shape in se.weight_shapes().items():
            out[name] = _crop(np.asarray(state[_supernet_name(name, slots)]), shape)
    for layer in conv_layers(layers):
        conv_src = _supernet_name(layer.name, slots)
        bn_src = _bn_prefix(layer, conv_src)
        out[layer.weight_name] = _crop(np.asarray(state[f"{conv_src}.weight"]), layer.weight_shape)
        for stat in BN_STATS:
            full = state.get(f"{bn_src}.{stat}")
            if full is None and stat.startswith("running_"):
                # bundles omit the supernet's shared BN statistics: every extracted sub-network
                # gets its own from `recalibrate` on the device
                fill = 0.0 if stat == "running_mean" else 1.0
                full = np.full(layer.out_channels, fill, np.float32)
            out[layer.bn_name(stat)] = np.asarray(full)[:layer.out_channels]
    for linear in (layer for layer in layers if isinstance(layer, LinearLayer)):
        # the classifier keeps the task's rows; a fixed-width layer (the feature mix) all of them
        rows = slice(None) if classes is None or linear.out_features is not None else list(classes)
        out[linear.weight_name] = np.asarray(state[linear.weight_name])[rows]
        out[linear.bias_name] = np.asarray(state[linear.bias_name])[rows]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
