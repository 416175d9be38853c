"""Block micro-benchmarks on the device (nn-Meter / OFA style): fill the latency look-up table
by timing every distinct block configuration of the space on the engine itself.

Engines run whole networks, so a block is timed inside a minimal host network — a 1x1 stem
(cin -> cin), the block, a 1-channel head and classifier — and the same network without the
block is timed too; the entry is the difference. The fixed part (stem, head, invoke) is then
the smallest arch's measured latency minus its blocks' entries.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..cost.latency import block_key, latency_ms
from ..space import BlockConfig
from ..subnet import ConvLayer, Layer, LinearLayer, PoolLayer, conv_layers, mbconv_layers
from .api import timed_call
from .engines import create_engine
from .folded import FoldedNet, fold_layers
from .messages import BlockProfile
from .timing import measure_many, on_fixed_input


def _random_weights(layers: tuple[Layer, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random conv weights, identity BatchNorms and a one-class classifier: latency does not
    depend on the values."""
    w: dict[str, np.ndarray] = {}
    for conv in conv_layers(layers):
        w[conv.weight_name] = (rng.standard_normal(conv.weight_shape) * 0.1).astype(np.float32)
        for stat, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            w[conv.bn_name(stat)] = np.full(conv.out_channels, value, np.float32)
    for layer in layers:
        if isinstance(layer, LinearLayer):
            w[layer.weight_name] = np.ones((1, layer.in_features), np.float32)
            w[layer.bias_name] = np.zeros(1, np.float32)
    return w


def _host_net(cfg: BlockConfig, with_block: bool, rng: np.random.Generator) -> FoldedNet:
    cin, size = cfg.in_channels, cfg.in_size
    layers: list[Layer] = [ConvLayer("stem", cin, cin, 1, 1, size)]
    last = cin
    if with_block:
        layers.append(mbconv_layers("blocks.0", cfg))
        last, size = cfg.out_channels, cfg.out_size
    layers += [ConvLayer("head", last, 1, 1, 1, size), PoolLayer(), LinearLayer(1)]
    net = tuple(layers)
    return fold_layers(_random_weights(net, rng), net, (cin, cfg.in_size, cfg.in_size))


def distinct_blocks(space: Any) -> list[BlockConfig]:
    seen: dict[str, BlockConfig] = {}
    size = space.stem_out_size
    for _, _, cin, cout, stride in space.block_slots():
        for k in space.kernel_choices:
            for e in space.expand_choices:
                cfg = BlockConfig(cin, cout, k, e, stride, size)
                seen.setdefault(block_key(cfg), cfg)
        size = (size - 1) // stride + 1
    return list(seen.values())


def _timer(net: FoldedNet, engine: str, threads: int | None):  # type: ignore[no-untyped-def]
    return on_fixed_input(create_engine(engine, net, batch_size=1, threads=threads), net.input_shape)


INSTANCES = 2  # engine instances per host network; the fastest counts (see profile_blocks)


def profile_blocks(rt: Any, engine: str = "auto", threads: int | None = None, warmup: int = 10,
                   runs: int = 50) -> Iterator[BlockProfile]:
    """One row per distinct block config, then a 'fixed' row.

    Every host network and the smallest arch are timed in one interleaved protocol, so the
    differences are not differences between machine states. Each host network runs as
    INSTANCES separate engine instances and its time is the fastest: on a 2-core VM, networks
    of 5-10 us differed by up to 2x between instances of the same network timed side by side
    (a per-instance penalty, not noise), which made single differences swing by the size of a
    block. The networks without a block depend only on the block's input (channels, size), so
    configs sharing an input share that baseline."""
    name = rt._pick_engine(engine)
    rng = np.random.default_rng(0)
    configs = distinct_blocks(rt.space)
    smallest = rt.space.smallest()
    m = rt.specialize(classes=list(range(rt.num_classes)), arch=smallest, engine=name, threads=threads)
    inputs = sorted({(c.in_channels, c.in_size) for c in configs})
    base = {key: next(c for c in configs if (c.in_channels, c.in_size) == key) for key in inputs}
    nets = [_host_net(cfg, True, rng) for cfg in configs] + [_host_net(base[key], False, rng) for key in inputs]
    fns = [_timer(net, name, threads) for net in nets for _ in range(INSTANCES)]
    stats = measure_many([*fns, timed_call(m)], warmup=warmup, runs=runs)  # m's own engine, not a second one
    fastest = [min(latency_ms(st) for st in stats[i * INSTANCES:(i + 1) * INSTANCES]) for i in range(len(nets))]
    without = dict(zip(inputs, fastest[len(configs):]))
    entries: dict[str, float] = {}
    for cfg, with_b in zip(configs, fastest):
        base_ms = without[(cfg.in_channels, cfg.in_size)]
        ms = max(0.0, with_b - base_ms)
        entries[block_key(cfg)] = ms
        yield BlockProfile(block_key(cfg), ms, name, threads, with_block_ms=with_b, without_block_ms=base_ms)
    fixed = latency_ms(stats[-1]) - sum(entries[block_key(c)] for c in rt.space.active_blocks(smallest))
    yield BlockProfile("fixed", max(0.0, fixed), name, threads)
