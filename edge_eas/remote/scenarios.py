"""Deployment scenarios for a benchmark: random tasks x budgets spread over the space."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_eas.archgen.generator import budget_cost_table
from edge_eas.common.paths import models_file
from edge_eas.cost.flops import macs, params
from edge_eas.cost.latency import LatencyModel
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.devices.targets import Target
from edge_eas.errors import UserError
from edge_eas.net.budget import KINDS, Budget
from edge_eas.net.space import SearchSpace
from edge_eas.runtime.engines import engine_candidates


def target_model(target: str, engine: str, threads: int | None, space: SearchSpace) -> LatencyModel | None:
    """The target's calibrated model on this host for `space` (engine "auto": the first
    calibrated of those the device would pick)."""
    engines = engine_candidates(engine)
    return LatencyModels.read(models_file(target)).for_space(space).first(engines, threads)


def local_model_args(target: Target, kind: str) -> list[str]:
    """For ms budgets a local agent reads this host's models file (deploy ships it to a device)."""
    path = models_file(target.name)
    return ["--latency-models", str(path)] if kind == "ms" and target.local and path.is_file() else []


def budget_range(space: SearchSpace, num_classes: int, kind: str = "mflops",
                 latency: LatencyModel | None = None) -> tuple[float, float]:
    """The smallest arch's cost (+2 %) and the largest's: MFLOPs or parameters counted, ms as
    the target's latency model predicts them with its margin (what ms budgets are met against)."""
    if kind == "ms":
        if latency is None:
            raise UserError("ms budgets need the target's calibrated latency model: run `edge_eas bench --target "
                            "TARGET --calibrate` with this bundle first")
        table = budget_cost_table("ms", space, {}, latency)
        lo, hi = (float(table.cost(space, a)) for a in (space.smallest(), space.largest()))
    elif kind == "mflops":
        lo, hi = (macs(space, a, num_classes) / 1e6 for a in (space.smallest(), space.largest()))
    elif kind == "params":
        lo, hi = (float(params(space, a, num_classes)) for a in (space.smallest(), space.largest()))
    else:
        raise UserError(f"unknown budget kind {kind!r}; use one of {', '.join(KINDS)}")
    return lo * 1.02, hi


def make_scenarios(space: SearchSpace, num_classes: int, n: int, seed: int = 0, min_task: int = 2,
                   max_task: int = 5, kind: str = "mflops", latency: LatencyModel | None = None,
                   min_accuracy: float | None = None) -> list[dict[str, Any]]:
    """n scenarios `{id, classes, budget}`: tasks of min_task..max_task classes, budgets of
    `kind` log-uniform over `budget_range` (ms through the target's `latency` model). With
    `min_accuracy` (a fraction) each asks for that accuracy instead of a budget: the device
    answers with the cheapest network its bundle predicts reaches it."""
    if n < 1:
        raise ValueError("--scenarios must be >= 1")
    lo, hi = budget_range(space, num_classes, kind, latency)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(min_task, min(max_task, num_classes) + 1))
        classes = sorted(int(c) for c in rng.choice(num_classes, size=size, replace=False))
        budget = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        ask: dict[str, Any] = ({"min_accuracy": min_accuracy} if min_accuracy is not None
                               else {"budget": Budget(kind, round(budget, 6)).to_dict()})
        out.append({"id": f"s{i:03d}", "classes": classes, **ask})
    return out


def budget_column(scenario: dict[str, Any]) -> dict[str, float]:
    """A scenario's budget as the bench report's column: `budget_mflops` (`budget_ms` ...)."""
    budget = Budget.in_scenario(scenario)
    return {f"budget_{budget.kind}": budget.value} if budget is not None else {}


def in_budget(scenario: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether a measured row fits its scenario's budget (an ms budget as measured)."""
    budget = Budget.in_scenario(scenario)
    if budget is None:
        return True
    used = {"mflops": row["mflops"], "params": row["params"], "ms": row["latency_ms"]}[budget.kind]
    return bool(used <= budget.value + 1e-9)
