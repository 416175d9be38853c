"""An architecture of a search space (`Arch`: what the generator emits and every consumer
takes) and the flat decision-vector layout it is encoded in (`DecisionLayout`). Python + numpy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Arch:
    """A sub-network: depth per stage, kernel and expand ratio per active block of each stage,
    and, in a space with width choices, each stage's output width (() runs every stage at its
    full width, and keeps `to_dict` as it was before widths existed); in a space with
    resolution choices, the input side the network runs at (0: the space's native input size,
    which is also what `predict` takes: the network resizes its input itself)."""

    depths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]
    widths: tuple[int, ...] = ()
    resolution: int = 0

    def __post_init__(self) -> None:
        # Normalise lists (e.g. from JSON) into tuples so Arch stays hashable.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "kernels", tuple(tuple(int(k) for k in s) for s in self.kernels))
        object.__setattr__(self, "expands", tuple(tuple(int(e) for e in s) for s in self.expands))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "resolution", int(self.resolution))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"depths": list(self.depths), "kernels": [list(s) for s in self.kernels],
                             "expands": [list(s) for s in self.expands]}
        if self.widths:
            d["widths"] = list(self.widths)
        if self.resolution:
            d["resolution"] = self.resolution
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Arch":
        if not isinstance(data, dict):
            raise ValueError("arch must be a JSON object with keys depths, kernels, expands")
        missing = [k for k in ("depths", "kernels", "expands") if k not in data]
        if missing:
            raise ValueError(f"arch is missing field(s): {', '.join(missing)}")
        try:
            return cls(data["depths"], data["kernels"], data["expands"], data.get("widths", ()),
                       data.get("resolution", 0))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"arch fields must be integer lists: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arch is not valid JSON: {exc.msg} at position {exc.pos}") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class DecisionLayout:
    """Where each decision sits in the flat choice vector the generator emits and costs read:
    [depth of each stage | kernel of each block slot | expand of each block slot | width of each
    stage | input resolution], and what each choice index means. Block slots are in
    `SearchSpace.block_slots()` order (each stage's deepest choice of slots, in turn). A space
    without width (resolution) choices has no width (resolution) decisions, so its vectors are
    what they were before those dimensions existed. The one place that knows this layout."""

    depth_choices: tuple[tuple[int, ...], ...]   # per stage
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    width_choices: tuple[tuple[int, ...], ...] = ()   # per stage; () when the space has none
    resolution_choices: tuple[int, ...] = ()          # () when the space has none

    @property
    def depth_sizes(self) -> tuple[int, ...]:
        return tuple(len(d) for d in self.depth_choices)

    @property
    def n_kernels(self) -> int:
        return len(self.kernel_choices)

    @property
    def n_expands(self) -> int:
        return len(self.expand_choices)

    @property
    def n_slots(self) -> int:
        return sum(max(d) for d in self.depth_choices)

    @property
    def width_sizes(self) -> tuple[int, ...]:
        return tuple(len(w) for w in self.width_choices)

    @property
    def n_resolutions(self) -> int:
        return len(self.resolution_choices)

    @property
    def n_stages(self) -> int:
        return len(self.depth_choices)

    @property
    def sizes(self) -> list[int]:
        """Number of choices of every decision, in vector order."""
        return [*self.depth_sizes, *[self.n_kernels] * self.n_slots, *[self.n_expands] * self.n_slots,
                *self.width_sizes, *([self.n_resolutions] if self.n_resolutions else [])]

    @property
    def depths(self) -> slice:
        return slice(0, self.n_stages)

    @property
    def kernels(self) -> slice:
        return slice(self.n_stages, self.n_stages + self.n_slots)

    @property
    def expands(self) -> slice:
        return slice(self.n_stages + self.n_slots, self.n_stages + 2 * self.n_slots)

    @property
    def widths(self) -> slice:
        start = self.n_stages + 2 * self.n_slots
        return slice(start, start + len(self.width_sizes))

    @property
    def resolution_index(self) -> int | None:
        """Where the resolution decision sits; None when the space has no resolution choice."""
        return self.widths.stop if self.n_resolutions else None

    def kernel_index(self, slot: int) -> int:
        return self.n_stages + slot

    def expand_index(self, slot: int) -> int:
        return self.n_stages + self.n_slots + slot

    def slot_of(self, decision: int) -> int | None:
        """The block slot a kernel or expand decision belongs to; None for a stage's depth or
        width and for the resolution."""
        if decision < self.n_stages or decision >= self.widths.start:
            return None
        return (decision - self.n_stages) % self.n_slots

    @cached_property
    def decision_slots(self) -> np.ndarray:
        """(n_decisions,) the block slot of each decision (`slot_of`), -1 for the others: what
        budget repair reads on every step, built once per layout."""
        slots = np.array([-1 if s is None else s for s in map(self.slot_of, range(len(self.sizes)))])
        slots.flags.writeable = False
        return slots

    @cached_property
    def _slot_stage_and_depth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_slots,) each block slot's stage and position in it, and (n_stages, most depth
        choices) the depth each stage's choice index means, 0-padded."""
        stage = np.concatenate([np.full(max(c), s) for s, c in enumerate(self.depth_choices)])
        pos = np.concatenate([np.arange(max(c)) for c in self.depth_choices])
        most = max(len(c) for c in self.depth_choices)
        depth = np.array([list(c) + [0] * (most - len(c)) for c in self.depth_choices])
        for a in (stage, pos, depth):
            a.flags.writeable = False
        return stage, pos, depth

    def active(self, vecs: np.ndarray) -> np.ndarray:
        """(N, n_slots) bool: which block slots each choice vector runs (its stage is deep enough)."""
        stage, pos, depth = self._slot_stage_and_depth
        depths = depth[np.arange(self.n_stages)[None, :], np.asarray(vecs)[:, self.depths]]    # (N, n_stages)
        return pos[None, :] < depths[:, stage]

    def split(self, per_decision: Sequence[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        """Any per-decision sequence (choices, logits, probabilities) -> (depths, kernels, expands)."""
        items = list(per_decision)
        return items[self.depths], items[self.kernels], items[self.expands]

    def split_extra(self, per_decision: Sequence[Any]) -> tuple[list[Any], Any | None]:
        """The same sequence's (per-stage widths, resolution): ([], None) where there are none."""
        items = list(per_decision)
        res = self.resolution_index
        return items[self.widths], (None if res is None else items[res])

    def encode(self, arch: Arch, widths: Sequence[int], resolution: int) -> np.ndarray:
        """A validated arch, with the stage widths and input side it runs at (the space fills in
        the widest and the native one where the arch names none: `SearchSpace.encode`) -> its
        choice indices; inactive block slots are 0."""
        vec = np.zeros(len(self.sizes), dtype=np.int64)
        slot = 0
        for s, choices in enumerate(self.depth_choices):
            vec[s] = choices.index(arch.depths[s])
            for b in range(arch.depths[s]):
                vec[self.kernel_index(slot + b)] = self.kernel_choices.index(arch.kernels[s][b])
                vec[self.expand_index(slot + b)] = self.expand_choices.index(arch.expands[s][b])
            slot += max(choices)
        if self.width_choices:
            vec[self.widths] = [w.index(x) for w, x in zip(self.width_choices, widths)]
        if self.resolution_choices:
            vec[self.resolution_index] = self.resolution_choices.index(resolution)
        return vec

    def decode(self, vec: Sequence[int], space_name: str = "") -> Arch:
        """Choice indices -> Arch; choices of inactive block slots are ignored."""
        vec = [int(v) for v in vec]
        sizes = self.sizes
        if len(vec) != len(sizes):
            raise ValueError(f"choice vector has {len(vec)} entries, space {space_name!r} needs {len(sizes)}")
        for i, (v, n) in enumerate(zip(vec, sizes)):
            if not 0 <= v < n:
                raise ValueError(f"choice vector entry {i}={v} is outside 0..{n - 1}")
        depths, kernels, expands = [], [], []
        slot = 0
        for s, choices in enumerate(self.depth_choices):
            d = choices[vec[s]]
            depths.append(d)
            kernels.append(tuple(self.kernel_choices[vec[self.kernel_index(slot + b)]] for b in range(d)))
            expands.append(tuple(self.expand_choices[vec[self.expand_index(slot + b)]] for b in range(d)))
            slot += max(choices)
        widths = tuple(w[v] for w, v in zip(self.width_choices, vec[self.widths]))
        res = self.resolution_index
        return Arch(tuple(depths), tuple(kernels), tuple(expands), widths,
                    0 if res is None else self.resolution_choices[vec[res]])
