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

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge_eas.devices.hardware import Hardware
from edge_eas.net.space import Arch, BlockConfig, SearchSpace
from edge_eas.cost.features import block_features, fixed_features
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


@dataclass
class LatencyModel:
    """latency_ms(arch) = overhead + fixed part + sum over active blocks of entry-or-prior."""

    target: str
    engine: str
    threads: int | None
    hardware: Hardware = field(default_factory=Hardware)
    # coefficients (ms per unit) of features.FEATURES, and the constant ms
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

    def fixed_part_ms(self, space: SearchSpace, resolution: int = 0, last_width: int | None = None) -> float:
        """The fixed part of an arch at `resolution` whose last stage is `last_width` wide. A
        measured fixed part (profiled at the native side and full width) moves by what the
        features say the other side and width change."""
        coef, const = self.coefficients()
        if self.fixed_ms is not None:
            shift = 0.0
            if resolution not in (0, space.resolution) or last_width not in (None, space.last_channels):
                shift = float((fixed_features(space, self.num_classes, resolution, last_width)
                               - fixed_features(space, self.num_classes)) @ coef)
            return self.fixed_ms + shift + const
        return float(fixed_features(space, self.num_classes, resolution, last_width) @ coef) + const

    def made_for(self, space: SearchSpace) -> bool:
        """Fitted for this space (a model from before spaces were recorded is taken as one)."""
        return self.space_digest is None or self.space_digest == space.digest()

    # ---- prediction ---------------------------------------------------------------------
    def predict(self, space: SearchSpace, arch: Arch) -> float:
        fixed = self.fixed_part_ms(space, arch.resolution, space.stage_widths(arch)[-1])
        return fixed + sum(self.block_ms(c) for c in space.active_blocks(arch))

    def table(self, space: SearchSpace) -> SlotCostTable:
        """The model as a per-slot table (unbiased predictions)."""
        return SlotCostTable.build(space, self.block_ms, lambda side, width: self.fixed_part_ms(space, side, width))

    def budget_table(self, space: SearchSpace) -> SlotCostTable:
        """What ms budgets are repaired against: predictions raised by the learnt margin, so an
        arch that fits its budget here also fits it as measured (>= 90 % of the time)."""
        return self.table(space).scaled(1.0 + max(0.0, self.margin))

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
