"""Per-slot cost tables: any cost that is a fixed part plus a sum over active blocks, where a
block's cost depends only on its slot and its (kernel, expand) choice — MACs, parameters,
and the latency look-up table all have this form. Vectorised over many choice vectors, so
the generator's budget repair costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
        """Tabulate `block_cost` for every slot and choice (a slot's input size is arch-independent)."""
        nk, ne = len(space.kernel_choices), len(space.expand_choices)
        table = np.zeros((space.max_blocks, nk, ne))
        stage_of, pos_of = [], []
        size = space.stem_out_size
        for slot, (s, b, cin, cout, stride) in enumerate(space.block_slots()):
            for i, k in enumerate(space.kernel_choices):
                for j, e in enumerate(space.expand_choices):
                    table[slot, i, j] = block_cost(space.block_config(s, cin, cout, k, e, stride, size))
            size = (size - 1) // stride + 1
            stage_of.append(s)
            pos_of.append(b)
        return cls(float(fixed), table, np.array(stage_of), np.array(pos_of))

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

