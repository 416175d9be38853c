"""Per-device latency model: a look-up table of per-block latencies (keyed by block config and
input size) plus stem/head and a fixed overhead, as in OFA's latency tables.

Where the table has no entry, a roofline prior from the target profile fills in: a block's
time is its compute at the device's effective GFLOP/s (depthwise convs run at a fraction of
it) or its memory traffic at the memory bandwidth, whichever is larger, plus a per-layer
dispatch cost. `calibrate.py` refines the prior's coefficients from whole sub-network
measurements; `--profile-blocks` on the device fills the table directly.

numpy only: the device runtime uses it to predict and to turn ms budgets into costs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_eas.devices.hardware import Hardware
from edge_eas.net.space import Arch, BlockConfig, SearchSpace
from edge_eas.cost.table import SlotCostTable


def latency_ms(stats: dict[str, Any]) -> float:
    """The figure a measurement stands for in cost models and budget checks: the fastest
    interleaved sample (runtime/timing.py). Measurements from runtimes before that protocol
    carry only a median."""
    return float(stats["latency_ms"] if "latency_ms" in stats else stats["median_ms"])


def model_key(engine: str, threads: int | None) -> str:
    return f"{engine}/t{threads or 0}"


def block_key(cfg: BlockConfig) -> str:
    """The look-up table's key: everything a block's time depends on (the activation and SE
    are named only when they differ from the MobileNetV2-style ReLU6 block)."""
    extra = (f"-{cfg.act}" if cfg.act != "relu6" else "") + ("-se" if cfg.se else "")
    return f"i{cfg.in_channels}-o{cfg.out_channels}-k{cfg.kernel}-e{cfg.expand}-s{cfg.stride}-r{cfg.in_size}{extra}"


FEATURES = ("pointwise_macs", "dw_macs_k<=3", "dw_macs_k5", "dw_macs_k>=7", "bytes", "conv_layers")


def block_features(cfg: BlockConfig) -> np.ndarray:
    """Per-block features (see FEATURES). Depthwise MACs are split by kernel size because
    engines run each size with its own kernel at its own efficiency (XNNPACK, oneDNN).
    Squeeze-excite adds its two small matmuls and a read and a scaling of the hidden map; an
    h-swish map costs one more pass over it; a block with expand 1 has no expand conv."""
    hidden, o, i = cfg.hidden, cfg.out_size, cfg.in_size
    expand = cfg.expand != 1
    pw = expand * i ** 2 * cfg.in_channels * hidden + o ** 2 * hidden * cfg.out_channels
    dw = o ** 2 * hidden * cfg.kernel ** 2
    act = 4 * (i ** 2 * cfg.in_channels + i ** 2 * hidden + 2 * o ** 2 * hidden + o ** 2 * cfg.out_channels)
    weights = 4 * (expand * cfg.in_channels * hidden + hidden * cfg.kernel ** 2 + hidden * cfg.out_channels)
    layers = 2.0 + expand
    if cfg.se:
        mid = cfg.se_channels
        pw += 2 * hidden * mid
        act += 4 * 2 * o ** 2 * hidden
        weights += 4 * 2 * hidden * mid
        layers += 2
    if cfg.act == "hswish":
        act += 4 * (expand * i ** 2 * hidden + o ** 2 * hidden)
    k = cfg.kernel
    return np.array([pw, dw * (k <= 3), dw * (k == 5), dw * (k >= 7), act + weights, layers])


def fixed_features(space: SearchSpace, num_classes: int) -> np.ndarray:
    """Stem, the fixed first block, head, feature mix and classifier as the same features (the
    per-inference constant is separate)."""
    s, f = space.stem_out_size, space.final_size()
    features_in = space.mix_channels or space.head_channels
    pw = s ** 2 * space.stem_channels * space.in_channels * 9 + f ** 2 * space.last_channels * space.head_channels \
        + space.head_channels * space.mix_channels + features_in * num_classes
    act = 4 * (space.resolution ** 2 * space.in_channels + s ** 2 * space.stem_channels
               + f ** 2 * (space.last_channels + space.head_channels))
    act += 4 * ((space.stem_act == "hswish") * s ** 2 * space.stem_channels
                + (space.head_act == "hswish") * f ** 2 * space.head_channels)
    fixed = np.array([pw, 0.0, 0.0, 0.0, act, 2.0 + (space.mix_channels > 0)])
    first = space.first_block_config()
    return fixed if first is None else fixed + block_features(first)


@dataclass
class LatencyModel:
    """latency_ms(arch) = overhead + fixed part + sum over active blocks of entry-or-prior."""

    target: str
    engine: str
    threads: int | None
    hardware: Hardware = field(default_factory=Hardware)
    # coefficients (ms per unit) of FEATURES, and the constant ms
    coef: tuple[float, ...] | None = None
    const_ms: float | None = None
    entries: dict[str, float] = field(default_factory=dict)       # profiled per-block ms
    fixed_ms: float | None = None                                  # profiled stem+head ms
    num_classes: int = 10
    source: str = "prior"
    fit: dict[str, Any] = field(default_factory=dict)
    # ms budgets are met against predicted x (1 + margin): the 90th-percentile relative
    # under-prediction seen on held-out measurements (cost/calibrate.py), 0 until validated
    margin: float = 0.0
    space_digest: str | None = None   # SearchSpace.digest() of the space it was fitted for

    # ---- the prior ----------------------------------------------------------------------
    def prior_coef(self) -> tuple[np.ndarray, float]:
        hw = self.hardware
        flop_ms = 2.0 / (hw.peak_gflops * 1e9) * 1e3          # ms per MAC at peak
        dw = flop_ms / hw.depthwise_efficiency
        coef = np.array([flop_ms, dw, dw, dw, 1e3 / (hw.memory_gbps * 1e9), hw.layer_overhead_us / 1e3])
        return coef, hw.fixed_overhead_us / 1e3

    def coefficients(self) -> tuple[np.ndarray, float]:
        if self.coef is not None and self.const_ms is not None:
            return np.asarray(self.coef, dtype=np.float64), float(self.const_ms)
        return self.prior_coef()

    def block_ms(self, cfg: BlockConfig) -> float:
        if block_key(cfg) in self.entries:
            return self.entries[block_key(cfg)]
        coef, _ = self.coefficients()
        return float(block_features(cfg) @ coef)

    def fixed_part_ms(self, space: SearchSpace) -> float:
        coef, const = self.coefficients()
        if self.fixed_ms is not None:
            return self.fixed_ms + const
        return float(fixed_features(space, self.num_classes) @ coef) + const

    def made_for(self, space: SearchSpace) -> bool:
        """Fitted for this space (a model from before spaces were recorded is taken as one)."""
        return self.space_digest is None or self.space_digest == space.digest()

    # ---- prediction ---------------------------------------------------------------------
    def predict(self, space: SearchSpace, arch: Arch) -> float:
        return self.fixed_part_ms(space) + sum(self.block_ms(c) for c in space.active_blocks(arch))

    def table(self, space: SearchSpace) -> SlotCostTable:
        """The model as a per-slot table (unbiased predictions)."""
        return SlotCostTable.build(space, self.block_ms, self.fixed_part_ms(space))

    def budget_table(self, space: SearchSpace) -> SlotCostTable:
        """What ms budgets are repaired against: predictions raised by the learnt margin, so an
        arch that fits its budget here also fits it as measured (>= 90 % of the time)."""
        t = self.table(space)
        k = 1.0 + max(0.0, self.margin)
        return SlotCostTable(t.fixed * k, t.table * k, t.slot_stage, t.slot_pos)

    def expected(self, space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any, expand_probs: Any) -> Any:
        """Expected latency under per-decision probabilities; differentiable with torch tensors."""
        return expected_table_cost(self.table(space), space, depth_probs, kernel_probs, expand_probs)

    # ---- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["coef"] = list(self.coef) if self.coef is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyModel":
        d = dict(d)
        d["hardware"] = Hardware.from_dict(d.get("hardware", {}))
        if d.get("coef") is not None:
            d["coef"] = tuple(float(c) for c in d["coef"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def expected_table_cost(table: SlotCostTable, space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any,
                        expand_probs: Any) -> Any:
    """E[cost] = fixed + sum_slots P(slot active) * sum_{k,e} p_k p_e table[slot, k, e]."""
    total: Any = table.fixed
    slot = 0
    for s, stage in enumerate(space.stages):
        for b in range(stage.max_depth):
            p_active = sum(depth_probs[s][i] for i, d in enumerate(stage.depth_choices) if d > b)
            cell = 0.0
            for i in range(table.table.shape[1]):
                for j in range(table.table.shape[2]):
                    cell = cell + kernel_probs[slot][i] * expand_probs[slot][j] * float(table.table[slot, i, j])
            total = total + p_active * cell
            slot += 1
    return total


def model_for(doc: dict[str, Any], key: str, space: SearchSpace) -> LatencyModel | None:
    """The model filed under `key` (engine/tN) for `space`, from a cost-model file
    ({"models": latest, "by_space": {digest: {key: model}}}) or a run's per-target dict
    ({key: model}); None when there is none for this space: a model fitted for another space
    predicts it wrongly, silently."""
    by_space = (doc.get("by_space") or {}).get(space.digest(), {})
    for source in (by_space, doc.get("models", doc)):
        data = source.get(key) if isinstance(source, dict) else None
        if isinstance(data, dict) and "target" in data:
            model = LatencyModel.from_dict(data)
            if model.made_for(space):
                return model
    return None


def models_path(run_dir: Path) -> Path:
    return Path(run_dir) / "latency_models.json"


def load_run_models(run_dir: Path) -> dict[str, Any]:
    """{target: {engine/tN: model dict}} calibrated for a run (empty before any calibration)."""
    p = models_path(run_dir)
    return json.loads(p.read_text()) if p.is_file() else {}
