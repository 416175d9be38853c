"""Deployment scenarios for a benchmark: random tasks x budgets spread over the space."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_eas.cost.flops import macs
from edge_eas.net.space import SearchSpace


def make_scenarios(space: SearchSpace, num_classes: int, n: int, seed: int = 0, min_task: int = 2,
                   max_task: int = 5) -> list[dict[str, Any]]:
    """n scenarios: tasks of min_task..max_task classes, MFLOPs budgets log-uniform between the
    smallest arch's cost (+2 %) and the largest's."""
    if n < 1:
        raise ValueError("--scenarios must be >= 1")
    lo = macs(space, space.smallest(), num_classes) / 1e6 * 1.02
    hi = macs(space, space.largest(), num_classes) / 1e6
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(min_task, min(max_task, num_classes) + 1))
        classes = sorted(int(c) for c in rng.choice(num_classes, size=size, replace=False))
        budget = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        out.append({"id": f"s{i:03d}", "classes": classes, "budget_mflops": round(budget, 6)})
    return out
