"""Cut one sub-network's weights out of the supernet's state, in numpy: the only extraction.

The host (`Supernet.extract_weights`) and the torch-free device both call `slice_subnet`.
It walks the sub-network description (`edge_eas.net.subnet`) beside the same description
named as the supernet names its blocks (`blocks.{slot}`, `subnet_layers(..., slot_names=True)`),
so each layer finds its source tensors through its twin, with no renaming of strings: every conv
takes the first output and input channels of its supernet tensor and the centre k x k of its
kernel, every BN the first channels; squeeze-excite its first rows and columns. The supernet's
own tensor suffixes (`{conv}.weight`; `{conv}_bn.*` for the stem and head, whose BN is plain,
`{conv}_bn.bn.*` inside an elastic block) are spelled here and nowhere else.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import BN_STATS, BlockLayer, ConvLayer, Layer, LinearLayer, SELayer, subnet_layers


def _twins(space: SearchSpace, arch: Arch) -> Iterator[tuple[Layer, Layer, bool]]:
    """(layer, the same layer as the supernet names it, whether it sits in a block), in order."""
    for layer, source in zip(subnet_layers(space, arch), subnet_layers(space, arch, slot_names=True)):
        if isinstance(layer, BlockLayer) and isinstance(source, BlockLayer):
            yield from ((sub, src, True) for sub, src in zip(layer.body, source.body))
        else:
            yield layer, source, False


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
    twins = list(_twins(space, arch))
    out: dict[str, np.ndarray] = {}
    for layer, source, _ in twins:
        if isinstance(layer, SELayer) and isinstance(source, SELayer):
            for (name, shape), src in zip(layer.weight_shapes().items(), source.weight_shapes()):
                out[name] = _crop(np.asarray(state[src]), shape)
    for layer, source, in_block in twins:
        if not (isinstance(layer, ConvLayer) and isinstance(source, ConvLayer)):
            continue
        bn_src = f"{source.name}_bn.bn" if in_block else f"{source.name}_bn"
        out[layer.weight_name] = _crop(np.asarray(state[f"{source.name}.weight"]), layer.weight_shape)
        for stat in BN_STATS:
            full = state.get(f"{bn_src}.{stat}")
            if full is None and stat.startswith("running_"):
                # bundles omit the supernet's shared BN statistics: every extracted sub-network
                # gets its own from `recalibrate` on the device
                fill = 0.0 if stat == "running_mean" else 1.0
                full = np.full(layer.out_channels, fill, np.float32)
            out[layer.bn_name(stat)] = np.asarray(full)[:layer.out_channels]
    for linear in (layer for layer, _, _ in twins if isinstance(layer, LinearLayer)):
        # the classifier keeps the task's rows; a fixed-width layer (the feature mix) all of them
        rows = slice(None) if classes is None or linear.out_features is not None else list(classes)
        out[linear.weight_name] = np.asarray(state[linear.weight_name])[rows]
        out[linear.bias_name] = np.asarray(state[linear.bias_name])[rows]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
