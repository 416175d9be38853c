"""What a target profile says about a device's hardware: the facts the latency prior starts
from. Its own module because both the target profiles (host) and the cost models (host and
device) read it, and neither should depend on the other for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hardware:
    """Facts from a target profile that the roofline prior needs."""

    peak_gflops: float = 20.0          # effective dense fp32 GFLOP/s for this engine/threads
    memory_gbps: float = 5.0
    depthwise_efficiency: float = 0.15  # depthwise convs reach this fraction of peak
    layer_overhead_us: float = 4.0      # dispatch cost per conv layer
    fixed_overhead_us: float = 30.0     # per inference (engine invoke, pooling, classifier)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Hardware":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: float(v) for k, v in d.items() if k in known})
