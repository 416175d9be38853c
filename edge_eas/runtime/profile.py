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

from ..cost.latency import block_key
from ..space import BlockConfig
from .api import timed_call
from .engines import create_engine
from .folded import FoldedBlock, FoldedConv, FoldedNet
from .timing import latency_ms, measure_many, on_fixed_input


def _conv(rng: np.random.Generator, cout: int, cin: int, k: int, stride: int = 1, groups: int = 1,
          relu6: bool = True) -> FoldedConv:
    w = (rng.standard_normal((cout, cin // groups, k, k)) * 0.1).astype(np.float32)
    return FoldedConv(w, np.zeros(cout, np.float32), stride, groups, relu6)


def _host_net(cfg: BlockConfig, with_block: bool, rng: np.random.Generator) -> FoldedNet:
    cin = cfg.in_channels
    blocks: tuple[FoldedBlock, ...] = ()
    last = cin
    if with_block:
        h = cfg.hidden
        blocks = (FoldedBlock(_conv(rng, h, cin, 1), _conv(rng, h, h, cfg.kernel, cfg.stride, groups=h),
                              _conv(rng, cfg.out_channels, h, 1, relu6=False), cfg.residual),)
        last = cfg.out_channels
    return FoldedNet((cin, cfg.in_size, cfg.in_size), _conv(rng, cin, cin, 1), blocks, _conv(rng, 1, last, 1),
                     np.ones((1, 1), np.float32), np.zeros(1, np.float32))


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
                   runs: int = 50) -> Iterator[dict[str, Any]]:
    """One row per distinct block config, then a 'fixed' row: {block_key, median_ms, ...}.

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
        yield {"block_key": block_key(cfg), "median_ms": ms, "with_block_ms": with_b,
               "without_block_ms": base_ms, "engine": name, "threads": threads}
    fixed = latency_ms(stats[-1]) - sum(entries[block_key(c)] for c in rt.space.active_blocks(smallest))
    yield {"block_key": "fixed", "median_ms": max(0.0, fixed), "engine": name, "threads": threads}
