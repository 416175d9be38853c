"""Block micro-benchmarks on the device (nn-Meter / OFA style): fill the latency look-up table
by timing every distinct block configuration of the space on the engine itself.

Engines run whole networks, so a block is timed inside a minimal host network — a 1x1 stem
(cin -> cin), the block, a 1-channel head and classifier — and the same network without the
block is timed too, beside it; the entry is the difference. The fixed part (stem, first
block, head, invoke) and a scale on the entries are then fitted to a few probe archs spread
over the space (least squares: no arch is predicted exactly by construction), and the probes
are named in the 'fixed' row, so an evaluation can leave them out of its held-out set.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np

from edge_eas.net.arch import Arch
from edge_eas.cost.latency import block_key, latency_ms
from edge_eas.net.space import BlockConfig
from edge_eas.net.subnet import (ConvLayer, Layer, LinearLayer, PoolLayer, SELayer, head_layers, mbconv_layers, stem_layers,
                      walk)
from edge_eas.runtime.model import benchmark_many
from edge_eas.runtime.engines import Calibration, create_engine
from edge_eas.net.folded import FoldedNet, fold_layers
from edge_eas.runtime.agent.messages import BlockProfile
from edge_eas.runtime.timing import on_fixed_input


def _random_weights(layers: tuple[Layer, ...], rng: np.random.Generator, classes: int = 1) -> dict[str, np.ndarray]:
    """Random weights for every tensor the layers name (identity BatchNorms, a `classes`-way
    classifier): latency does not depend on the values."""
    w: dict[str, np.ndarray] = {}
    for layer in walk(layers):
        if isinstance(layer, ConvLayer):
            w[layer.weight_name] = (rng.standard_normal(layer.weight_shape) * 0.1).astype(np.float32)
            for stat, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                w[layer.bn_name(stat)] = np.full(layer.out_channels, value, np.float32)
        elif isinstance(layer, SELayer):
            for name, shape in layer.weight_shapes().items():
                w[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        elif isinstance(layer, LinearLayer):
            w[layer.weight_name] = np.ones((layer.out_features or classes, layer.in_features), np.float32)
            w[layer.bias_name] = np.zeros(layer.out_features or classes, np.float32)
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


def fixed_part_nets(space: Any, num_classes: int, rng: np.random.Generator) -> dict[str, FoldedNet]:
    """The parts every arch runs, each as a network of its own: 'stem' (stem and fixed first
    block, then a 1-channel head) and 'head' (head 1x1, pool, feature mix, classifier, on the
    last stage's output). Timed alone they are the fixed entries of an OFA-style per-op table."""
    stem = stem_layers(space)
    first = space.first_block_config()
    channels, size = ((first.out_channels, first.out_size) if first is not None
                      else (space.stem_channels, space.stem_out_size))
    stem_net = (*stem, ConvLayer("probe_head", channels, 1, 1, 1, size), PoolLayer(), LinearLayer(1))
    head_net = head_layers(space)
    final = space.final_size()
    return {"stem": fold_layers(_random_weights(stem_net, rng), stem_net, space.input_shape),
            "head": fold_layers(_random_weights(head_net, rng, num_classes), head_net,
                                (space.last_channels, final, final))}


def isolated_fixed_ms(rt: Any, engine: str = "auto", threads: int | None = None, warmup: int = 10,
                      runs: int = 50) -> dict[str, float]:
    """OFA-style entries for the fixed parts: 'stem' and 'head' (fixed_part_nets) timed alone,
    under the protocol, beside the speed reference; the fastest of INSTANCES engine instances.
    With the blocks' `with_block_ms` from profile_blocks (each block timed as a network of its
    own) they sum to a latency with no whole-network term: the baseline cost models beat."""
    name = rt._pick_engine(engine)
    nets = fixed_part_nets(rt.space, rt.num_classes, np.random.default_rng(1))
    reference = rt.speed_reference(name, threads, warmup=warmup, runs=runs)
    fns = [_timer(net, name, threads) for net in nets.values() for _ in range(INSTANCES)]
    stats = reference.measure(fns, warmup=warmup, runs=runs)
    return {part: min(latency_ms(st) for st in stats[i * INSTANCES:(i + 1) * INSTANCES])
            for i, part in enumerate(nets)}


def distinct_blocks(space: Any) -> list[BlockConfig]:
    """Every block config the space's slots may run (`slot_configs`), each once, in slot order."""
    seen: dict[str, BlockConfig] = {}
    for slot in space.slot_configs():
        for _, _, cfg in slot.choices():
            seen.setdefault(block_key(cfg), cfg)
    return list(seen.values())


def _timer(net: FoldedNet, engine: str, threads: int | None):  # type: ignore[no-untyped-def]
    # a probe network's int8 ranges come from random images: its latency does not depend on them
    return on_fixed_input(create_engine(engine, net, batch_size=1, threads=threads,
                                        calibration=Calibration.random(net.input_shape)), net.input_shape)


INSTANCES = 2  # engine instances per host network; the fastest counts (see profile_blocks)
CONFIGS_PER_GROUP = 9  # timed beside their shared baseline: every kernel x expand of a 3x3 space at once


def profile_blocks(rt: Any, engine: str = "auto", threads: int | None = None, warmup: int = 10,
                   runs: int = 50, reference_hints: dict[str, float] | None = None) -> Iterator[BlockProfile]:
    """One row per distinct block config, then a 'fixed' row.

    Configs that share an input (channels, size) share one baseline network without the block.
    Each group times a few of them *beside that baseline*, interleaved (runtime/timing.py), and
    an entry is the difference within its group: never a difference between machine states.
    Every group also times the speed reference (the smallest arch) and is measured again while
    the reference runs above its best by more than the tolerance (SpeedReference), as bench groups are: a quick-start
    profile taken whole in one slow stretch once came out 40 % off. Each host network runs as
    INSTANCES separate engine instances and its time is the fastest (on a 2-core VM, instances
    of 5-10 us networks differed by up to 2x side by side). The fixed part (stem, head, invoke)
    and a scale on the entries are fitted to a few probe archs (fit_probes)."""
    name = rt._pick_engine(engine)
    rng = np.random.default_rng(0)
    reference = rt.speed_reference(name, threads, warmup=warmup, runs=runs, hints=reference_hints)
    probes = fixed_probes(rt.space)
    models = [rt.specialize(classes=list(range(rt.num_classes)), arch=a, engine=name, threads=threads) for a in probes]
    name = models[0].engine  # what ran: an execution provider that failed to load fell back (onnxruntime)
    ran = models[0].threads_used()[0]  # rows are filed under the threads that ran, read back
    by_input: dict[tuple[int, int], list[BlockConfig]] = {}
    for cfg in distinct_blocks(rt.space):
        by_input.setdefault((cfg.in_channels, cfg.in_size), []).append(cfg)
    entries: dict[str, float] = {}
    for configs in by_input.values():
        for start in range(0, len(configs), CONFIGS_PER_GROUP):
            chunk = configs[start:start + CONFIGS_PER_GROUP]
            nets = [_host_net(chunk[0], False, rng)] + [_host_net(cfg, True, rng) for cfg in chunk]
            fns = [_timer(net, name, threads) for net in nets for _ in range(INSTANCES)]
            stats = reference.measure(fns, warmup=warmup, runs=runs)
            fastest = [min(latency_ms(st) for st in stats[i * INSTANCES:(i + 1) * INSTANCES])
                       for i in range(len(nets))]
            base_ms = fastest[0]
            for cfg, with_b, st in zip(chunk, fastest[1:], stats[INSTANCES::INSTANCES]):
                ms = max(0.0, with_b - base_ms)
                entries[block_key(cfg)] = ms
                yield BlockProfile(block_key(cfg), ms, name, ran, with_block_ms=with_b, without_block_ms=base_ms,
                                   reference_ms=st.get("reference_ms"), group_attempts=st.get("group_attempts"))
    measured = [latency_ms(st) for st in benchmark_many(models, warmup=warmup, runs=runs, reference=reference)]
    sums = [sum(entries[block_key(c)] for c in rt.space.active_blocks(a)) for a in probes]
    fixed, scale = fit_probes(sums, measured)
    yield BlockProfile("fixed", fixed, name, ran, reference_ms=reference.best_ms, entry_scale=scale,
                       probe_archs=[a.to_dict() for a in probes], probe_ms=measured,
                       probe_residual_ms=[ms - fixed - scale * x for x, ms in zip(sums, measured)])


def fit_probes(block_sums: list[float], measured: list[float]) -> tuple[float, float]:
    """(fixed, entry_scale) with measured ~ fixed + entry_scale * (sum of the probe's block
    entries), least squares on relative error over the probes.

    Why a scale: a block timed beside its baseline in a one-block host network is not quite the
    block inside a whole network (more of the network's working set competes for the caches).
    On a digits profile the probes' residual grew with size, 5.3 us for the smallest arch to
    8.1 us for the largest, so one median fixed term over-predicted the smallest by 10 % and
    under-predicted the largest; a fitted scale (~1.02) leaves every probe within ~3 %."""
    x, y = np.asarray(block_sums, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if len(set(np.round(x, 12))) >= 2:
        (fixed, scale), *_ = np.linalg.lstsq(np.stack([1.0 / y, x / y], axis=1), np.ones_like(y), rcond=None)
        if scale > 0 and fixed >= 0:
            return float(fixed), float(scale)
    return max(0.0, float(np.median(y - x))), 1.0

def _middle(choices: Any) -> int:
    return sorted(choices)[len(choices) // 2]


def fixed_probes(space: Any) -> list[Arch]:
    """The archs the fixed term is estimated from: smallest, middle, largest, and the two
    mixed corners (deepest with the smallest blocks, shallowest with the largest), distinct."""
    picks = [(min, min, min), (_middle, _middle, _middle), (max, max, max), (max, min, min), (min, max, max)]
    archs = [space.uniform(*p) for p in picks]
    return list({json.dumps(a.to_dict(), sort_keys=True): a for a in archs}.values())
