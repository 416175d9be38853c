"""Cut one sub-network's weights out of the supernet's state, in numpy: the only extraction.

The host (`Supernet.extract_weights`) and the torch-free device both call `slice_subnet`.
It walks the sub-network description (`edge_eas.subnet`): every conv takes the first output
and input channels of its supernet tensor and the centre k x k of its kernel, every BN the
first channels. The supernet's own tensor names (`stem.weight`, `stem_bn.*`,
`blocks.{slot}.{part}.weight`, `blocks.{slot}.{part}_bn.bn.*`) are mapped here and nowhere else.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..space import Arch, SearchSpace
from ..subnet import BN_STATS, ConvLayer, LinearLayer, conv_layers, subnet_layers


def _supernet_prefixes(layer: ConvLayer, slots: Sequence[int]) -> tuple[str, str]:
    """(conv tensor prefix, BN prefix) in the supernet's state for a sub-network conv."""
    parts = layer.name.split(".")
    if parts[0] == "blocks":  # blocks.{active index}.{part} -> blocks.{supernet slot}.{part}
        src = f"blocks.{slots[int(parts[1])]}.{'.'.join(parts[2:])}"
        return src, f"{src}_bn.bn"
    return layer.name, f"{layer.name}_bn"


def _crop(full: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """The first out/in channels and the centre k x k taps (elastic kernels share their centre)."""
    o, i, k, _ = shape
    start = (full.shape[-1] - k) // 2
    return full[:o, :i, start:start + k, start:start + k]


def slice_subnet(state: Mapping[str, np.ndarray], space: SearchSpace, arch: Arch,
                 classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The sub-network's weights (names of `edge_eas.subnet`), float32 and contiguous;
    `classes` keeps only those rows of the classifier."""
    layers = subnet_layers(space, arch)
    slots = [slot for slot, _, _ in space.slots(arch)]
    out: dict[str, np.ndarray] = {}
    for layer in conv_layers(layers):
        conv_src, bn_src = _supernet_prefixes(layer, slots)
        out[layer.weight_name] = _crop(np.asarray(state[f"{conv_src}.weight"]), layer.weight_shape)
        for stat in BN_STATS:
            full = state.get(f"{bn_src}.{stat}")
            if full is None and stat.startswith("running_"):
                # bundles omit the supernet's shared BN statistics: every extracted sub-network
                # gets its own from `recalibrate` on the device
                fill = 0.0 if stat == "running_mean" else 1.0
                full = np.full(layer.out_channels, fill, np.float32)
            out[layer.bn_name(stat)] = np.asarray(full)[:layer.out_channels]
    rows = slice(None) if classes is None else list(classes)
    for linear in (layer for layer in layers if isinstance(layer, LinearLayer)):
        out[linear.weight_name] = np.asarray(state[linear.weight_name])[rows]
        out[linear.bias_name] = np.asarray(state[linear.bias_name])[rows]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
