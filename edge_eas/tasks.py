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

    def multi_hot(self, num_classes: int) -> np.ndarray:
        v = np.zeros(num_classes, dtype=np.float32)
        v[list(self.classes)] = 1.0
        return v


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
    """Random tasks: with probability `full_prob` all classes, else a size drawn uniformly
    from min_size..max_size (clipped to the number of classes)."""

    num_classes: int
    min_size: int = 2
    max_size: int = 5
    full_prob: float = 0.0

    def sizes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        hi = min(self.max_size, self.num_classes)
        lo = min(self.min_size, hi)
        sizes = rng.integers(lo, hi + 1, size=n)
        if self.full_prob > 0:
            sizes = np.where(rng.random(n) < self.full_prob, self.num_classes, sizes)
        return sizes

    def sample(self, rng: np.random.Generator) -> Task:
        size = int(self.sizes(rng, 1)[0])
        return Task(tuple(sorted(int(c) for c in rng.choice(self.num_classes, size=size, replace=False))))

    def masks_containing(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Task dropout: for each sample a random task that contains its label, as a (N, C) bool mask.
        Vectorised: rank the other classes by random scores and keep the size-1 best."""
        n, c = len(labels), self.num_classes
        sizes = self.sizes(rng, n)
        scores = rng.random((n, c))
        scores[np.arange(n), labels] = -1.0  # the label always ranks first
        ranks = np.argsort(np.argsort(scores, axis=1), axis=1)
        return ranks < sizes[:, None]


def task_mask(classes: Sequence[int], num_classes: int) -> np.ndarray:
    mask = np.zeros(num_classes, dtype=bool)
    mask[list(classes)] = True
    return mask
