"""The architecture generator's inference path, in plain numpy (runs on devices without torch).

(task, budget) -> per-decision logits -> argmax -> repair. Repair guarantees the budget: while
the decoded arch costs too much it steps one decision down to its next cheaper choice, taking
the step that loses the least generator log-probability per unit of cost saved.

The MLP here mirrors `generator_train.GeneratorNet`; weights travel as safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge_eas.archgen.mlp import layer_names, mlp_forward, task_features
from edge_eas.cost.flops import macs_table, params_table
from edge_eas.cost.latency import LatencyModel
from edge_eas.cost.table import SlotCostTable
from edge_eas.errors import UserError
from edge_eas.format.bundle_reader import Bundle
from edge_eas.net.budget import KINDS, UNITS, Budget
from edge_eas.net.space import Arch, SearchSpace

RESOURCE_KINDS = KINDS  # the generator's one-hot input order


def budget_features(budgets: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Budgets log-scaled so that the smallest arch's cost maps to 0 and the largest's to 1."""
    b = np.log(np.maximum(np.asarray(budgets, dtype=np.float64), 1e-12))
    return np.clip((b - np.log(lo)) / (np.log(hi) - np.log(lo)), -0.5, 1.5)


def generator_inputs(task_hot: np.ndarray, budget_feat: np.ndarray, kind: str) -> np.ndarray:
    """[multi-hot task | normalised budget | one-hot resource kind] — shared with the torch net."""
    n = len(task_hot)
    kind_hot = np.zeros((n, len(RESOURCE_KINDS)), dtype=np.float32)
    kind_hot[:, RESOURCE_KINDS.index(kind)] = 1.0
    return np.concatenate([task_hot.astype(np.float32), budget_feat.reshape(n, 1).astype(np.float32), kind_hot], 1)


def default_cost_tables(space: SearchSpace, num_classes: int) -> dict[str, SlotCostTable]:
    m = macs_table(space, num_classes)
    return {"mflops": m.in_units_of(1e6),
            "params": params_table(space, num_classes)}


def budget_cost_table(kind: str, space: SearchSpace, tables: Mapping[str, SlotCostTable],
                      latency: LatencyModel | None = None) -> SlotCostTable:
    """The one place a budget kind becomes the table its budgets are met against: MFLOPs and
    parameters from `tables` (a generator's, default_cost_tables), ms from the device's latency
    model: its budget table, predictions raised by its learnt margin."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"unknown budget kind {kind!r}; use one of {', '.join(RESOURCE_KINDS)}")
    if kind == "ms" and latency is not None:
        return latency.budget_table(space)
    if kind not in tables:
        raise UserError("no latency model for ms budgets: calibrate one for the target or budget in MFLOPs")
    return tables[kind]


@dataclass
class ArchGenerator:
    space: SearchSpace
    num_classes: int
    weights: dict[str, np.ndarray]
    cost_tables: dict[str, SlotCostTable] = field(default_factory=dict)
    trained_kinds: tuple[str, ...] = ("mflops",)

    def __post_init__(self) -> None:
        if not self.cost_tables:
            self.cost_tables = default_cost_tables(self.space, self.num_classes)
        self._layers = layer_names(self.weights)
        self._split = np.cumsum(self.space.decision_sizes())[:-1]
        self._smallest_vec = self.space.encode(self.space.smallest())
        self._largest_vec = self.space.encode(self.space.largest())

    # ---- budgets ------------------------------------------------------------------------
    def bounds(self, kind: str, table: SlotCostTable | None = None) -> tuple[float, float]:
        table = self._table(kind, table)
        lo, hi = table.cost_of_vectors(self.space, np.stack([self._smallest_vec, self._largest_vec]))
        return float(lo), float(hi)

    def _table(self, kind: str, table: SlotCostTable | None = None) -> SlotCostTable:
        if table is not None and kind in RESOURCE_KINDS:
            return table
        return budget_cost_table(kind, self.space, self.cost_tables)

    def cost_table(self, kind: str, latency: LatencyModel | None = None) -> SlotCostTable:
        """This generator's table for `kind` (ms: `latency`'s), see budget_cost_table."""
        return budget_cost_table(kind, self.space, self.cost_tables, latency)

    def generate_for(self, classes: Sequence[int], budget: Budget, latency: LatencyModel | None = None) -> Arch:
        """The arch for one task within `budget` (an ms budget through `latency`)."""
        table = self.cost_table(budget.kind, latency)
        return self.generate([list(classes)], [budget.value], budget.kind, table=table)[0]

    def cost(self, arch: Arch, kind: str = "mflops") -> float:
        return self._table(kind).cost(self.space, arch)

    # ---- forward ------------------------------------------------------------------------
    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return mlp_forward(self.weights, self._layers, inputs)

    def task_matrix(self, tasks: Sequence[Sequence[int]]) -> np.ndarray:
        return task_features(tasks, self.num_classes)

    def log_probs(self, tasks: Sequence[Sequence[int]], budgets: np.ndarray, kind: str,
                  table: SlotCostTable | None = None) -> list[np.ndarray]:
        """Per decision, (N, n_choices) log-probabilities."""
        lo, hi = self.bounds(kind, table)
        # A kind the generator was not trained on (e.g. ms on a newly calibrated device) is fed as
        # its position between the fastest and slowest arch under that kind's cost model — the
        # same normalisation the trained kind uses — and repair then enforces the real budget.
        input_kind = kind if kind in self.trained_kinds else self.trained_kinds[0]
        x = generator_inputs(self.task_matrix(tasks), budget_features(budgets, lo, hi), input_kind)
        out = []
        for seg in np.split(self.logits(x), self._split, axis=1):
            seg = seg - seg.max(1, keepdims=True)
            out.append(seg - np.log(np.exp(seg).sum(1, keepdims=True)))
        return out

    def generate(self, tasks: Sequence[Sequence[int]], budgets: Sequence[float], kind: str = "mflops", *,
                 table: SlotCostTable | None = None) -> list[Arch]:
        """One arch per (task, budget), batched; every returned arch fits its budget. `table`
        prices `kind` for this call (an ms budget needs the device's latency table); without
        it the generator's own table for `kind` is used."""
        return [self.space.decode(v) for v in self.generate_vectors(tasks, budgets, kind, table=table)]

    def generate_vectors(self, tasks: Sequence[Sequence[int]], budgets: Sequence[float], kind: str = "mflops", *,
                         table: SlotCostTable | None = None) -> np.ndarray:
        if budgets is None:
            raise ValueError("give a budget for every task")
        b = np.asarray(budgets, dtype=np.float64).reshape(-1)
        if len(b) != len(tasks):
            raise ValueError(f"{len(tasks)} tasks but {len(b)} budgets")
        table = self._table(kind, table)
        lo, _ = self.bounds(kind, table)
        if len(b) and (not np.all(np.isfinite(b)) or b.min() < lo):
            worst = float(b[~np.isfinite(b)][0]) if not np.all(np.isfinite(b)) else float(b.min())
            raise ValueError(f"budget {worst:g} {UNITS[kind]} is below the smallest sub-network's "
                             f"{lo:.6g} {UNITS[kind]}: the minimum feasible budget is {lo:.6g}")
        logp = self.log_probs(tasks, b, kind, table)
        vecs = np.stack([lp.argmax(1) for lp in logp], 1)
        self._repair(vecs, logp, b, table)
        self._fill(vecs, logp, b, table)
        return vecs

    # ---- repair and fill ----------------------------------------------------------------
    def _steps(self, rows: np.ndarray, cur: np.ndarray, logp: list[np.ndarray], table: SlotCostTable,
               step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each row's neighbours with one decision moved one choice by `step` (-1 down, +1 up):
        (candidates (R, D, D), their costs (R, D), the log-probability each move loses (R, D),
        which moves exist: the decision has that choice, and a block's decision its block runs)."""
        lay, n_dec = self.space.decisions, cur.shape[1]
        sizes, slots = np.array(lay.sizes), lay.decision_slots
        moved = np.clip(cur + step, 0, sizes - 1)
        active = self.space.decisions.active(cur)
        movable = (moved != cur) & np.where(slots < 0, True, active[:, np.maximum(slots, 0)])
        diag = np.arange(n_dec)
        cands = np.repeat(cur[:, None, :], n_dec, 1)
        cands[:, diag, diag] = moved  # candidate d: decision d moved
        costs = table.cost_of_vectors(self.space, cands.reshape(-1, n_dec)).reshape(len(rows), n_dec)
        loss = np.stack([logp[d][rows, cur[:, d]] - logp[d][rows, moved[:, d]] for d in range(n_dec)], 1)
        return cands, costs, loss, movable

    @staticmethod
    def _take(vecs: np.ndarray, rows: np.ndarray, cands: np.ndarray, loss: np.ndarray, amount: np.ndarray,
              ok: np.ndarray) -> None:
        """Each row takes its allowed move that loses the least log-probability per unit of cost."""
        score = np.where(ok, loss / np.where(ok, amount, 1.0), np.inf)
        vecs[rows] = cands[np.arange(len(rows)), score.argmin(1)]

    def _repair(self, vecs: np.ndarray, logp: list[np.ndarray], budgets: np.ndarray, table: SlotCostTable) -> None:
        """Greedy, in place: while a row is over its budget, step down the one choice that costs
        the least log-probability per unit of cost saved. Every over-budget row takes its steps
        together (one cost-table call per step for all of them, not per row and candidate)."""
        rows = np.arange(len(vecs))
        while len(rows):
            cost = table.cost_of_vectors(self.space, vecs[rows])
            rows, cost = rows[cost > budgets[rows]], cost[cost > budgets[rows]]
            if not len(rows):
                return
            cands, costs, loss, movable = self._steps(rows, vecs[rows], logp, table, -1)
            saving = cost[:, None] - costs
            ok = movable & (saving > 0)
            if not ok.any(1).all():  # cannot happen for a monotone cost; guard against an infinite loop
                raise RuntimeError("budget repair found no cheaper choice")
            self._take(vecs, rows, cands, loss, saving, ok)

    def _fill(self, vecs: np.ndarray, logp: list[np.ndarray], budgets: np.ndarray, table: SlotCostTable) -> None:
        """Greedy, in place, the mirror of `_repair`: while a row can step one decision up to its
        next larger choice and stay within its budget, take the step that costs the least
        generator log-probability per unit of cost added. The generator's argmax often left a
        large budget half used (on fashion, 24 px networks of 3.0-3.6 MFLOPs at 5.85), and in
        these spaces the larger choice is the more accurate one."""
        rows = np.arange(len(vecs))
        while len(rows):
            cost = table.cost_of_vectors(self.space, vecs[rows])
            cands, costs, loss, movable = self._steps(rows, vecs[rows], logp, table, +1)
            added = costs - cost[:, None]
            ok = movable & (added > 0) & (costs <= budgets[rows, None])
            grow = ok.any(1)
            rows, cands, loss, added, ok = rows[grow], cands[grow], loss[grow], added[grow], ok[grow]
            if not len(rows):
                return
            self._take(vecs, rows, cands, loss, added, ok)


def from_meta(space: dict[str, Any], num_classes: int, weights: dict[str, np.ndarray],
              meta: dict[str, Any]) -> ArchGenerator:
    """The generator of a run directory: `meta` is its generator.json."""
    return _assemble(space, num_classes, weights, meta.get("cost_tables", {}), meta.get("budget_bounds", {}))


def from_bundle(bundle: Bundle) -> ArchGenerator:
    """The generator a verified bundle carries."""
    m = bundle.manifest
    return _assemble(m.space, len(m.class_names), bundle.tensors("generator.safetensors"),
                     m.generator.cost_tables, m.generator.budget_bounds)


def _assemble(space: dict[str, Any], num_classes: int, weights: dict[str, np.ndarray],
              cost_tables: dict[str, Any], budget_bounds: dict[str, Any]) -> ArchGenerator:
    tables = {k: SlotCostTable.from_dict(v) for k, v in cost_tables.items()}
    kinds = tuple(budget_bounds) or ("mflops",)  # the budget kinds it was trained on
    gen = ArchGenerator(SearchSpace.from_dict(space), num_classes,
                        {k: v.astype(np.float32) for k, v in weights.items()}, trained_kinds=kinds)
    gen.cost_tables.update(tables)
    return gen
