"""Per-slot cost tables: any cost that is a fixed part plus a sum over active blocks, where a
block's cost depends only on its slot, its (kernel, expand) choice, its input and output widths
and the input resolution, and the fixed part only on the resolution and the last stage's width.
MACs, parameters and the latency model all have this form. Vectorised over many choice vectors,
so the generator's budget repair costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edge_eas.net.space import Arch, BlockConfig, SearchSpace

FixedCost = Callable[[int, int], float]
"""The fixed part's cost at (resolution, last stage's width)."""


@dataclass(frozen=True)
class SlotCostTable:
    fixed: np.ndarray          # (n_resolutions, n_last_widths)
    table: np.ndarray          # (max_blocks, n_kernels, n_expands, n_in_widths, n_out_widths, n_resolutions)
    slot_stage: np.ndarray     # (max_blocks,) stage of each slot
    slot_pos: np.ndarray       # (max_blocks,) index of the slot within its stage

    def __post_init__(self) -> None:
        # tables from before widths and resolutions (a float fixed part, (slots, k, e) blocks)
        object.__setattr__(self, "fixed", np.asarray(self.fixed, dtype=np.float64).reshape(
            np.shape(self.fixed) if np.ndim(self.fixed) == 2 else (1, 1)))
        table = np.asarray(self.table, dtype=np.float64)
        object.__setattr__(self, "table", table.reshape(*table.shape, 1, 1, 1) if table.ndim == 3 else table)
        object.__setattr__(self, "slot_stage", np.asarray(self.slot_stage, dtype=np.int64))
        object.__setattr__(self, "slot_pos", np.asarray(self.slot_pos, dtype=np.int64))

    @property
    def slot_in_stage(self) -> np.ndarray:
        """(max_blocks,) the stage whose width is each slot's input width: the previous stage's
        for a stage's first block (-1, the stem, for the first stage's), else its own."""
        return np.where(self.slot_pos == 0, self.slot_stage - 1, self.slot_stage)

    @classmethod
    def build(cls, space: SearchSpace, block_cost: Callable[[BlockConfig], float],
              fixed: float | FixedCost) -> "SlotCostTable":
        """Tabulate `block_cost` for every slot, choice, width pair and resolution, and `fixed`
        (a constant, or a function of the resolution and the last stage's width)."""
        slots = space.slot_configs()
        nw = max(len(s.widths) for s in space.stages)
        res = space.resolutions
        table = np.zeros((len(slots), len(space.kernel_choices), len(space.expand_choices), nw, nw, len(res)))
        for r, side in enumerate(res):
            for sc in space.geometry(side).slot_configs():
                in_stage = sc.stage - 1 if sc.pos == 0 else sc.stage
                ins = space.stages[in_stage].widths if in_stage >= 0 else (space.stem_channels,)
                for a, cin in enumerate(ins):
                    for b, cout in enumerate(space.stages[sc.stage].widths):
                        if sc.pos > 0 and a != b:
                            continue  # inside a stage the input width is the stage's own
                        for i, j, full in sc.choices():
                            cfg = space.block_config(sc.stage, cin, cout, full.kernel, full.expand, full.stride,
                                                     sc.in_size)
                            table[sc.slot, i, j, a, b, r] = block_cost(cfg)
        last = space.stages[-1].widths
        fixed_part = np.array([[fixed(side, w) if callable(fixed) else fixed for w in last] for side in res])
        return cls(fixed_part, table, np.array([sc.stage for sc in slots]), np.array([sc.pos for sc in slots]))

    def scaled(self, factor: float) -> "SlotCostTable":
        """Every cost times `factor` (a latency margin)."""
        return SlotCostTable(self.fixed * factor, self.table * factor, self.slot_stage, self.slot_pos)

    def in_units_of(self, unit: float) -> "SlotCostTable":
        """Every cost divided by `unit` (MACs -> MFLOPs)."""
        return SlotCostTable(self.fixed / unit, self.table / unit, self.slot_stage, self.slot_pos)

    def to_dict(self) -> dict:
        """A space without width and resolution choices writes the form older runtimes read
        (a number for the fixed part, (slots, kernels, expands) blocks)."""
        plain = self.fixed.size == 1 and self.table.shape[3:] == (1, 1, 1)
        return {"fixed": float(self.fixed[0, 0]) if plain else self.fixed.tolist(),
                "table": (self.table[..., 0, 0, 0] if plain else self.table).tolist(),
                "slot_stage": self.slot_stage.tolist(), "slot_pos": self.slot_pos.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SlotCostTable":
        return cls(d["fixed"], np.asarray(d["table"], dtype=np.float64), np.asarray(d["slot_stage"]),
                   np.asarray(d["slot_pos"]))

    # ---- hard choices -------------------------------------------------------------------
    def _widths_and_resolution(self, space: SearchSpace, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, n_stages) width choice indices and (N,) resolution indices, 0 where none."""
        lay = space.decisions
        widths = vecs[:, lay.widths] if lay.width_sizes else np.zeros((len(vecs), lay.n_stages), np.int64)
        res = lay.resolution_index
        return widths, (vecs[:, res] if res is not None else np.zeros(len(vecs), np.int64))

    def block_costs(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        """(N, max_blocks) cost of each slot's chosen block, ignoring activity."""
        lay = space.decisions
        widths, res = self._widths_and_resolution(space, vecs)
        in_stage = self.slot_in_stage
        w_in = np.where(in_stage >= 0, widths[:, np.maximum(in_stage, 0)], 0)
        w_out = widths[:, self.slot_stage]
        return self.table[np.arange(lay.n_slots)[None, :], vecs[:, lay.kernels], vecs[:, lay.expands],
                          w_in, w_out, res[:, None]]

    def fixed_costs(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        widths, res = self._widths_and_resolution(space, vecs)
        return self.fixed[res, widths[:, -1]]

    def cost_of_vectors(self, space: SearchSpace, vecs: np.ndarray) -> np.ndarray:
        vecs = np.atleast_2d(np.asarray(vecs, dtype=np.int64))
        return self.fixed_costs(space, vecs) + (space.decisions.active(vecs) * self.block_costs(space, vecs)).sum(1)

    def cost(self, space: SearchSpace, arch: Arch) -> float:
        return float(self.cost_of_vectors(space, space.encode(arch)[None, :])[0])

    # ---- probabilities ------------------------------------------------------------------
    def expected(self, space: SearchSpace, depth_probs: Sequence[Any], kernel_probs: Any, expand_probs: Any,
                 width_probs: Sequence[Any] = (), resolution_probs: Any = None) -> Any:
        """E[cost] under independent per-decision distributions: exact, and differentiable when
        given torch tensors (works unchanged on numpy arrays). depth_probs: per stage
        (n_depth_choices,); kernel_probs: (max_blocks, n_kernels); expand_probs: (max_blocks,
        n_expands); width_probs: per stage (n_widths,), empty without width choices;
        resolution_probs: (n_resolutions,) or None. A slot at index b of its stage is active
        with probability P(depth > b)."""
        if bool(width_probs) != space.has_widths or (resolution_probs is not None) != bool(space.resolution_choices):
            raise ValueError(f"space {space.name!r} needs width probabilities ({space.has_widths}) and resolution "
                             f"probabilities ({bool(space.resolution_choices)}), exactly where it has those choices")
        like = kernel_probs[0]
        const = (lambda a: like.new_tensor(a)) if hasattr(like, "new_tensor") else np.asarray
        one = const(np.ones(1))
        widths = list(width_probs) or [one] * len(space.stages)
        res = resolution_probs if resolution_probs is not None else one
        last = widths[-1]
        total: Any = res @ const(self.fixed) @ last
        for slot, (s, b) in enumerate(zip(self.slot_stage.tolist(), self.slot_pos.tolist())):
            p_active = sum(depth_probs[s][i] for i, d in enumerate(space.stages[s].depth_choices) if d > b)
            w_in = widths[s] if b > 0 else (widths[s - 1] if s > 0 else one)
            t = const(self.table[slot, :, :, :len(w_in), :len(widths[s]), :len(res)]) @ res  # (k, e, w_in, w_out)
            if b > 0:   # in and out width are the stage's one decision
                t = t.diagonal(dim1=2, dim2=3) if hasattr(t, "new_tensor") else t.diagonal(axis1=2, axis2=3)
                t = t @ widths[s]
            else:
                t = (t @ widths[s]) @ w_in
            total = total + p_active * (kernel_probs[slot] @ t @ expand_probs[slot])
        return total
