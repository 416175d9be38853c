"""Search baselines count real evaluations (distinct sub-networks scored), never cache hits, so
methods compared "at the same number of evaluations" really paid the same."""

from __future__ import annotations

import numpy as np

from edge_eas.cost.flops import macs
from edge_eas.host.search import EvolutionConfig, evolutionary_search, random_search
from edge_eas.net.space import Arch, SearchSpace


def _problem() -> tuple[SearchSpace, object, object, float, list[Arch]]:
    space = SearchSpace.preset("digits")
    seen: list[Arch] = []

    def fitness(arch: Arch) -> tuple[float, float]:  # bigger is better, as a stand-in for accuracy
        seen.append(arch)
        v = space.encode(arch)
        return float(v.sum()), 0.0

    def cost(vecs: np.ndarray) -> np.ndarray:
        return np.array([macs(space, space.decode(v), 10) for v in vecs], dtype=float)

    budget = 0.6 * macs(space, space.largest(), 10) + 0.4 * macs(space, space.smallest(), 10)
    return space, fitness, cost, budget, seen


def test_random_search_scores_exactly_n_distinct_archs_within_budget() -> None:
    space, fitness, cost, budget, seen = _problem()
    r = random_search(space, fitness, cost, budget, np.random.default_rng(0), samples=60)  # type: ignore[arg-type]
    assert r.evaluations == 60 == len(seen) == len(set(seen))
    assert macs(space, r.arch, 10) <= budget


def test_evolution_stops_at_its_evaluation_budget_and_beats_random() -> None:
    space, fitness, cost, budget, seen = _problem()
    cfg = EvolutionConfig(population=20, evaluations=120)
    r = evolutionary_search(space, fitness, cost, budget, np.random.default_rng(1), cfg)  # type: ignore[arg-type]
    assert r.evaluations == 120 == len(seen) == len(set(seen))
    assert macs(space, r.arch, 10) <= budget
    _, fit2, cost2, _, _ = _problem()
    rnd = random_search(space, fit2, cost2, budget, np.random.default_rng(1), samples=120)  # type: ignore[arg-type]
    assert r.fitness >= rnd.fitness
