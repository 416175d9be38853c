"""Tasks: the groups of classes a deployment cares about, and the masks task dropout uses.

numpy only, so the device runtime can validate tasks without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Task:
    """A sorted set of distinct class ids (and an optional name)."""

    classes: tuple[int, ...]
    name: str | None = None

    @classmethod
    def create(cls, classes: Iterable[int], num_classes: int, name: str | None = None) -> "Task":
        """Validate user-given class ids: non-empty, no duplicates, each within 0..num_classes-1."""
        ids = list(classes)
        if not ids:
            raise ValueError("the task is empty: give at least one class id")
        for c in ids:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                raise ValueError(f"class id {c!r} is not an integer")
        bad = [int(c) for c in ids if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(f"class id {bad[0]} is out of range: valid ids are 0..{num_classes - 1}")
        dups = sorted({int(c) for c in ids if ids.count(c) > 1})
        if dups:
            raise ValueError(f"class id {dups[0]} appears more than once in the task")
        return cls(tuple(sorted(int(c) for c in ids)), name)

    def __len__(self) -> int:
        return len(self.classes)


def parse_classes(text: str) -> list[int]:
    """'1,4,7' -> [1, 4, 7] with a clear error for anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    if not text or not any(parts):
        raise ValueError("--classes is empty: give comma-separated class ids, e.g. 1,4,7")
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            raise ValueError(f"--classes: {p!r} is not an integer class id") from None
    return out


@dataclass(frozen=True)
class TaskSampler:
    """Random tasks: with probability `full_prob` all classes, else a size drawn uniformly from
    min_size..max_size (clipped to the number of classes).

    With class `groups` (superclasses, e.g. Fashion-MNIST's tops / footwear / other) a share
    `in_group_prob` of tasks is drawn inside one group, as in EAS's superclass dropout: those
    are the hard tasks (shirt vs T-shirt vs coat) a deployment is most often about."""

    num_classes: int
    min_size: int = 2
    max_size: int = 5
    full_prob: float = 0.0
    groups: tuple[tuple[int, ...], ...] = ()
    in_group_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.in_group_prob <= 1.0 or not 0.0 <= self.full_prob <= 1.0:
            raise ValueError("in_group_prob and full_prob must lie in [0, 1]")
        seen: set[int] = set()
        groups = tuple(tuple(sorted(int(c) for c in g)) for g in self.groups if len(g) >= 2)
        for g in groups:
            if seen & set(g) or not all(0 <= c < self.num_classes for c in g):
                raise ValueError(f"class groups must be disjoint class ids in 0..{self.num_classes - 1}, got {g}")
            seen |= set(g)
        object.__setattr__(self, "groups", groups)

    @property
    def _group_index(self) -> np.ndarray:
        """Per class: the index of its group, or -1."""
        out = np.full(self.num_classes, -1, dtype=np.int64)
        for i, g in enumerate(self.groups):
            out[list(g)] = i
        return out

    def sizes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        hi = min(self.max_size, self.num_classes)
        lo = min(self.min_size, hi)
        sizes = rng.integers(lo, hi + 1, size=n)
        if self.full_prob > 0:
            sizes = np.where(rng.random(n) < self.full_prob, self.num_classes, sizes)
        return sizes

    def sample(self, rng: np.random.Generator) -> Task:
        if self.groups and rng.random() < self.in_group_prob:
            return self.sample_in_group(rng)
        size = int(self.sizes(rng, 1)[0])
        return Task(tuple(sorted(int(c) for c in rng.choice(self.num_classes, size=size, replace=False))))

    def sample_in_group(self, rng: np.random.Generator, group: int | None = None) -> Task:
        """A task of min_size..max_size classes (clipped to the group) from one group."""
        members = self.groups[int(rng.integers(len(self.groups))) if group is None else group]
        hi = min(self.max_size, len(members))
        size = int(rng.integers(min(self.min_size, hi), hi + 1))
        return Task(tuple(sorted(int(c) for c in rng.choice(members, size=size, replace=False))))

    def masks_containing(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Task dropout: for each sample a random task that contains its label, as a (N, C) bool mask
        (a share `in_group_prob` of them inside the label's group). Vectorised: rank the other
        classes by random scores (classes outside the group last) and keep the size-1 best."""
        n, c = len(labels), self.num_classes
        sizes = self.sizes(rng, n)
        scores = rng.random((n, c))
        if self.groups and self.in_group_prob > 0:
            gi = self._group_index
            own = gi[labels]
            in_group = (own >= 0) & (rng.random(n) < self.in_group_prob)
            group_size = np.bincount(gi[gi >= 0], minlength=len(self.groups))
            hi = np.minimum(self.max_size, group_size[own[in_group]])
            sizes[in_group] = rng.integers(np.minimum(self.min_size, hi), hi + 1)
            outside = gi[None, :] != own[:, None]
            scores[in_group[:, None] & outside] += 2.0  # every in-group class ranks before them
        scores[np.arange(n), labels] = -1.0  # the label always ranks first
        ranks = np.argsort(np.argsort(scores, axis=1), axis=1)
        return ranks < sizes[:, None]


def task_mask(classes: Sequence[int], num_classes: int) -> np.ndarray:
    mask = np.zeros(num_classes, dtype=bool)
    mask[list(classes)] = True
    return mask
