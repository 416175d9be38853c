"""Accuracy targets: the cheapest sub-network predicted to be good enough for a task, or the most
accurate one within a budget. Runs in numpy on the device as on the host.

Candidates: the generator's picks for the task at a ladder of budgets over the whole range (its
task-conditioned front) and a fixed pool of uniformly sampled archs (OFA's sampling), each
priced by the budget kind's cost table and scored by the accuracy predictor. A candidate meets a
target when its prediction minus the predictor's margin (in standard errors of the task's
validation images, calibrated on answers: host/accuracy_margin.py) does; a target only the
margin puts out of reach gets the likeliest candidate, flagged as not certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge_eas.archgen.accuracy import AccuracyPredictor, Prediction
from edge_eas.archgen.generator import ArchGenerator
from edge_eas.cost.table import SlotCostTable
from edge_eas.errors import UserError
from edge_eas.net.budget import UNITS
from edge_eas.net.space import Arch, SearchSpace

LADDER_STEPS = 24   # generator picks per answer, log-spaced over the cost range
POOL_SIZE = 1500    # uniformly sampled archs per answer (a fixed seed: the same pool every time)


class TargetUnreachable(UserError):
    """No candidate is predicted to reach the target (within the budget, if one was given)."""


@dataclass(frozen=True)
class TargetAnswer:
    arch: Arch
    cost: float          # in the budget kind's unit
    prediction: Prediction
    candidates: int


def candidate_vectors(generator: ArchGenerator, classes: Sequence[int], kind: str, table: SlotCostTable,
                      pool_seed: int = 0) -> np.ndarray:
    """The generator's picks at LADDER_STEPS budgets plus the sampled pool, in canonical form
    (duplicates are left in: they cost and score the same, and removing them costs more)."""
    lo, hi = generator.bounds(kind, table)
    ladder = np.exp(np.linspace(np.log(lo), np.log(hi), LADDER_STEPS))
    picks = generator.generate_vectors([list(classes)] * LADDER_STEPS, ladder, kind, table=table)
    sizes = np.asarray(generator.space.decision_sizes())
    pool = np.random.default_rng(pool_seed).integers(0, sizes, size=(POOL_SIZE, len(sizes)))
    pool = np.vstack([pool, generator.space.encode(generator.space.smallest())[None, :]])
    return canonical(generator.space, np.vstack([picks, pool]))


def canonical(space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
    """Choice vectors with the choices of blocks that do not run set to 0, as `encode` writes
    them: one arch, one row."""
    slots = space.decisions.decision_slots
    active = space.decisions.active(vecs)
    out = vecs.copy()
    block = slots >= 0
    out[:, block] *= active[:, slots[block]]
    return out


def meet_target(generator: ArchGenerator, predictor: AccuracyPredictor, classes: Sequence[int], target: float,
                kind: str, table: SlotCostTable, budget: float | None = None,
                candidates: np.ndarray | None = None) -> TargetAnswer:
    """Without `budget`: the cheapest candidate whose safe prediction reaches `target` (accuracy
    in [0, 1]). With it: the most accurate predicted candidate within the budget, which must
    reach the target too. A target that only the margin puts out of reach (some prediction
    reaches it, no safe one does) is answered with the candidate most likely to reach it (the
    highest safe prediction; with a budget, the best within it): its `prediction.safe` below the
    target says the answer is not certain. A target no prediction reaches raises
    TargetUnreachable naming the best there is. `candidates`: the task's `candidate_vectors`,
    when the caller already built them."""
    vecs = candidate_vectors(generator, classes, kind, table) if candidates is None else candidates
    cost = table.cost_of_vectors(generator.space, vecs)
    pred = predictor.predict_vectors(vecs, classes)
    safe = predictor.safe(pred, classes)
    unit = UNITS[kind]
    if budget is not None:
        inside = cost <= budget
        if not inside.any():
            raise TargetUnreachable(f"no sub-network fits {budget:g} {unit}")
        pick = int(np.flatnonzero(inside)[np.argmax(pred[inside])])
        if pred[pick] < target:
            raise TargetUnreachable(
                f"no network within {budget:g} {unit} is predicted to reach {100 * target:.2f}%: the best is "
                f"{100 * pred[pick]:.2f}% (at least {100 * safe[pick]:.2f}% after the "
                f"margin) at {cost[pick]:.4g} {unit}")
    else:
        ok = np.flatnonzero(safe >= target)
        if len(ok):  # the cheapest; among equal costs the better predicted
            pick = int(ok[np.lexsort((-pred[ok], cost[ok]))[0]])
        elif pred.max() >= target:  # within reach of the prediction, not of its margin
            pick = int(np.argmax(safe))
        else:
            best = int(np.argmax(pred))
            raise TargetUnreachable(
                f"no network is predicted to reach {100 * target:.2f}% on classes {list(classes)}: the best is "
                f"{100 * pred[best]:.2f}% (at least {100 * safe[best]:.2f}% after the "
                f"margin) at {cost[best]:.4g} {unit}")
    return TargetAnswer(generator.space.decode(vecs[pick]), float(cost[pick]),
                        predictor.interval(float(pred[pick]), classes), len(vecs))
