"""Search baselines on the same space and evaluator as the generator: random search and
OFA-style constraint-aware evolutionary search. They cost thousands of sub-network
evaluations per scenario; the generator costs one forward pass."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_eas.net.space import Arch, SearchSpace

Fitness = Callable[[Arch], tuple[float, float]]   # arch -> (accuracy, -loss): compared lexicographically
Cost = Callable[[np.ndarray], np.ndarray]          # (N, D) choice vectors -> (N,) costs


@dataclass
class SearchResult:
    arch: Arch
    fitness: tuple[float, float]
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)   # best accuracy after each generation / batch


class _CachedFitness:
    """Evaluates each distinct arch once. `evaluations` counts real evaluations only: two
    searches given the same budget pay for the same number of sub-networks scored."""

    def __init__(self, fitness: Fitness) -> None:
        self.fitness, self.cache = fitness, {}  # type: ignore[var-annotated]

    @property
    def evaluations(self) -> int:
        return len(self.cache)

    def __call__(self, arch: Arch) -> tuple[float, float]:
        if arch not in self.cache:
            self.cache[arch] = self.fitness(arch)
        return self.cache[arch]


def sample_within(space: SearchSpace, cost: Cost, budget: float, rng: np.random.Generator, n: int,
                  max_tries: int = 200) -> list[np.ndarray]:
    """n random choice vectors within budget (rejection sampling in batches; the smallest arch
    fills in when the budget is so tight that random archs almost never fit)."""
    sizes = np.array(space.decision_sizes())
    out: list[np.ndarray] = []
    for _ in range(max_tries):
        cand = (rng.random((max(n, 64), len(sizes))) * sizes).astype(np.int64)
        out.extend(cand[cost(cand) <= budget])
        if len(out) >= n:
            return out[:n]
    smallest = space.encode(space.smallest())
    return out + [smallest.copy() for _ in range(n - len(out))]


def random_search(space: SearchSpace, fitness: Fitness, cost: Cost, budget: float, rng: np.random.Generator,
                  samples: int = 1000) -> SearchResult:
    start = time.perf_counter()
    f = _CachedFitness(fitness)
    best, best_fit, history = None, (-1.0, -np.inf), []
    for _ in range(100):  # until `samples` distinct archs are scored (or the space runs dry)
        before = f.evaluations
        for vec in sample_within(space, cost, budget, rng, samples - f.evaluations):
            arch = space.decode(vec)
            fit = f(arch)
            if fit > best_fit:
                best, best_fit = arch, fit
            history.append(best_fit[0])
        if f.evaluations >= samples or f.evaluations == before:
            break
    assert best is not None
    return SearchResult(best, best_fit, f.evaluations, time.perf_counter() - start, history)


@dataclass
class EvolutionConfig:
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5      # share of each new generation made by mutation (rest: crossover)
    mutation_prob: float = 0.1       # per-decision resampling probability
    evaluations: int = 1000          # total fitness evaluations (population * generations)


def evolutionary_search(space: SearchSpace, fitness: Fitness, cost: Cost, budget: float, rng: np.random.Generator,
                        cfg: EvolutionConfig | None = None) -> SearchResult:
    """OFA's evolution: keep the top parent_ratio, refill by mutation and crossover, and only
    admit children within budget (constraint-aware)."""
    cfg = cfg or EvolutionConfig()
    start = time.perf_counter()
    sizes = np.array(space.decision_sizes())
    f = _CachedFitness(fitness)
    pop = sample_within(space, cost, budget, rng, cfg.population)
    scored = [(f(space.decode(v)), v) for v in pop]
    history = [max(s for s, _ in scored)[0]]
    n_parents = max(2, int(cfg.population * cfg.parent_ratio))
    n_mut = int(round((cfg.population - n_parents) * cfg.mutation_ratio))
    stalled = 0
    while f.evaluations < cfg.evaluations and stalled < 20:
        before = f.evaluations
        scored.sort(key=lambda t: t[0], reverse=True)
        parents = [v for _, v in scored[:n_parents]]
        children: list[np.ndarray] = []
        for kind_count, make in ((n_mut, lambda: _mutate(parents, sizes, cfg.mutation_prob, rng)),
                                 (cfg.population - n_parents - n_mut, lambda: _crossover(parents, rng))):
            made = 0
            for _ in range(kind_count * 50):
                if made == kind_count:
                    break
                child = make()
                if cost(child[None])[0] <= budget:
                    children.append(child)
                    made += 1
        scored = scored[:n_parents]
        for v in children:
            arch = space.decode(v)
            if f.evaluations >= cfg.evaluations and arch not in f.cache:
                break  # the evaluation budget is exact: no new arch beyond it
            scored.append((f(arch), v))
        history.append(max(s for s, _ in scored)[0])
        if not children:
            break
        stalled = stalled + 1 if f.evaluations == before else 0  # only re-visited archs: converged
    best_fit, best_vec = max(scored, key=lambda t: t[0])
    return SearchResult(space.decode(best_vec), best_fit, f.evaluations, time.perf_counter() - start, history)


def _mutate(parents: list[np.ndarray], sizes: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    child = parents[rng.integers(len(parents))].copy()
    flip = rng.random(len(sizes)) < prob
    child[flip] = (rng.random(int(flip.sum())) * sizes[flip]).astype(np.int64)
    return child


def _crossover(parents: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    a, b = rng.choice(len(parents), size=2, replace=False)
    pick = rng.random(len(parents[a])) < 0.5
    return np.where(pick, parents[a], parents[b])
