"""Per-slot cost tables: any cost that is a fixed part plus a sum over active blocks, where a
block's cost depends only on its slot and its (kernel, expand) choice — MACs, parameters,
and the latency look-up table all have this form. Vectorised over many choice vectors, so
the generator's budget repair costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edge_eas.net.space import Arch, BlockConfig, SearchSpace


@dataclass(frozen=True)
class SlotCostTable:
    fixed: float
    table: np.ndarray          # (max_blocks, n_kernels, n_expands)
    slot_stage: np.ndarray     # (max_blocks,) stage of each slot
    slot_pos: np.ndarray       # (max_blocks,) index of the slot within its stage

    @classmethod
    def build(cls, space: SearchSpace, block_cost: Callable[[BlockConfig], float], fixed: float) -> "SlotCostTable":
        """Tabulate `block_cost` for every slot and choice (`SearchSpace.slot_configs`)."""
        if any(stage.width_choices for stage in space.stages):
            # a width changes the next stage's first block: a cost no longer separates by slot
            raise ValueError(f"space {space.name!r} has width choices, which cost tables do not cover yet")
        slots = space.slot_configs()
        table = np.zeros((len(slots), len(space.kernel_choices), len(space.expand_choices)))
        for sc in slots:
            for i, j, cfg in sc.choices():
                table[sc.slot, i, j] = block_cost(cfg)
        return cls(float(fixed), table, np.array([sc.stage for sc in slots]), np.array([sc.pos for sc in slots]))

    def to_dict(self) -> dict:
        return {"fixed": self.fixed, "table": self.table.tolist(), "slot_stage": self.slot_stage.tolist(),
                "slot_pos": self.slot_pos.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SlotCostTable":
        return cls(float(d["fixed"]), np.asarray(d["table"], dtype=np.float64), np.asarray(d["slot_stage"]),
                   np.asarray(d["slot_pos"]))

    def active(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        """(N, max_blocks) bool: which block slots each choice vector runs."""
        lay = space.decisions
        depths = space.depth_values[np.arange(lay.n_stages)[None, :], vecs[:, lay.depths]]     # (N, n_stages)
        return self.slot_pos[None, :] < depths[:, self.slot_stage]

    def block_costs(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        """(N, max_blocks) cost of each slot's chosen (kernel, expand), ignoring activity."""
        lay = space.decisions
        return self.table[np.arange(lay.n_slots)[None, :], vecs[:, lay.kernels], vecs[:, lay.expands]]

    def cost_of_vectors(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        vecs = np.atleast_2d(np.asarray(vecs, dtype=np.int64))
        return self.fixed + (self.active(space, vecs) * self.block_costs(space, vecs)).sum(1)

    def cost(self, space: SearchSpace, arch: Arch) -> float:
        return float(self.cost_of_vectors(space, space.encode(arch)[None, :])[0])

    def expected(self, space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any, expand_probs: Any) -> Any:
        """E[cost] = fixed + sum over slots of P(slot active) * sum_{k,e} p_k p_e table[slot, k, e]
        under independent per-decision distributions: exact, and differentiable when given torch
        tensors (works unchanged on numpy arrays). depth_probs: per stage (n_depth_choices,);
        kernel_probs: (max_blocks, n_kernels); expand_probs: (max_blocks, n_expands). A slot at
        index b of its stage is active with probability P(depth > b)."""
        total: Any = float(self.fixed)
        nk, ne = self.table.shape[1], self.table.shape[2]
        for slot, (s, b) in enumerate(zip(self.slot_stage.tolist(), self.slot_pos.tolist())):
            p_active = sum(depth_probs[s][i] for i, d in enumerate(space.stages[s].depth_choices) if d > b)
            cost = sum(kernel_probs[slot][i] * expand_probs[slot][j] * float(self.table[slot, i, j])
                       for i in range(nk) for j in range(ne))
            total = total + p_active * cost
        return total

