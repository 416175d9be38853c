"""The accuracy targets' safety margin, calibrated on answers rather than on random networks.

A margin taken from random held-out networks is too small for what `meet_target` returns: an
answer is the cheapest of many candidates whose margin-lowered prediction clears the target, a
choice that favours the candidates the predictor over-rates; and the held-out networks were
measured on the very images the predictor learnt each task's level from. So the margin is
cross-fitted on the validation split alone: a predictor fitted on one half of the images
answers targets spread over each task's predicted reachable range, the answers are scored on
the other half, and the margin is the smallest on a grid that makes `RATE` of them reach their
target there. A test set collected apart from the training images can still be harder; no
validation-only procedure sees that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from edge_eas.archgen.accuracy import AccuracyPredictor
from edge_eas.archgen.generator import ArchGenerator
from edge_eas.archgen.targets import candidate_vectors, meet_target
from edge_eas.common.console import Progress
from edge_eas.cost.table import SlotCostTable

GRID = tuple(round(0.1 * i, 1) for i in range(41))    # margins tried, in standard errors: 0 to 4
LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)                    # targets, as fractions of a task's reachable range
RATE = 0.9                                            # share of answers that must reach their target


@dataclass(frozen=True)
class MarginCalibration:
    margin_se: float                # the smallest grid margin whose answers reach RATE (the grid's top if none does)
    rates: dict[str, float]         # margin -> share of answers that reached their target on the other half
    answers_per_margin: int
    tasks: int


def calibrate_margin(predictor: AccuracyPredictor, generator: ArchGenerator, table: SlotCostTable,
                     tasks: Sequence[Sequence[int]], other_half: Callable[[np.ndarray, Sequence[int]], float],
                     rate: float = RATE) -> MarginCalibration:
    """`predictor` was fitted on one half of the images; `other_half(vec, classes)` scores a
    choice vector on the task's other half. The share that reaches its target grows with the
    margin, so the grid is bisected (about 7 margins tried, each with every task and level)."""
    space = predictor.space
    candidates = {tuple(t): candidate_vectors(generator, t, "mflops", table) for t in tasks}
    smallest = space.encode(space.smallest())[None]
    rates: dict[str, float] = {}

    def reaches(i: int) -> bool:
        p = replace(predictor, errors=replace(predictor.errors, margin_se=GRID[i]))
        met = []
        for t in tasks:
            low = float(p.safe_vectors(smallest, t)[0])
            top = float(p.safe_vectors(candidates[tuple(t)], t).max())
            for level in LEVELS:
                target = low + level * (top - low)
                answer = meet_target(generator, p, t, target, "mflops", table, candidates=candidates[tuple(t)])
                met.append(other_half(space.encode(answer.arch), t) >= target)
        rates[f"{GRID[i]:.1f}"] = float(np.mean(met))
        bar.advance(1, f"margin {GRID[i]:.1f} SE: {100 * rates[f'{GRID[i]:.1f}']:.0f}% reach their target")
        return rates[f"{GRID[i]:.1f}"] >= rate

    with Progress(int(np.ceil(np.log2(len(GRID)))) + 1, "accuracy predictor: calibrating the margin") as bar:
        lo, hi = -1, len(GRID) - 1          # GRID[hi] reaches the rate (or is the top); GRID[lo] does not
        if reaches(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return MarginCalibration(GRID[hi], dict(sorted(rates.items())), len(tasks) * len(LEVELS), len(tasks))
