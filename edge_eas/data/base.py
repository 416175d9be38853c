"""The loaded data set every source produces, its splits and its normalisation.

Every data set is held as uint8 NCHW arrays with int64 labels, split into train / val / test
deterministically from a seed, with the :class:`~edge_eas.net.preprocess.Preprocess` (mean/std
of the train split) that travels to the device. Search and selection use `val`; `test` only
reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from edge_eas.errors import UserError
from edge_eas.net.preprocess import Preprocess

SPLITS = ("train", "val", "test")
TRAIN_FRAC, VAL_FRAC, TEST_FRAC = 0.7, 0.1, 0.2   # sources without an official test split
OFFICIAL_VAL_FRAC = 0.1                            # carved out of an official train split
AUGMENTATIONS = ("flip", "crop")


@dataclass(frozen=True)
class Augmentation:
    """Label-preserving training augmentation: random crop (zero padding, in stored pixels)
    and horizontal flip. Flips are wrong for digits and text, so each source states its own."""

    flip: bool
    crop_padding: int

    @classmethod
    def parse(cls, spec: str, side: int) -> "Augmentation":
        """`--augment flip,crop` | `crop` | `flip` | `none`; crop pads by side // 8 (>= 1)."""
        words = {w.strip().lower() for w in spec.split(",") if w.strip()} - {"none"}
        unknown = words - set(AUGMENTATIONS)
        if unknown:
            raise UserError(f"--augment: unknown augmentation {sorted(unknown)[0]!r}; use a comma-separated "
                            f"subset of {', '.join(AUGMENTATIONS)}, or none")
        return cls(flip="flip" in words, crop_padding=max(1, side // 8) if "crop" in words else 0)

    def describe(self) -> str:
        parts = (["flip"] if self.flip else []) + ([f"crop (pad {self.crop_padding})"] if self.crop_padding else [])
        return ", ".join(parts) or "none"


@dataclass
class Dataset:
    """A loaded data set: uint8 NCHW images, int64 labels, and how to feed them to a network."""

    name: str                      # e.g. "digits", "fashion-mnist", "cifar10", "folder:<dirname>"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    preprocess: Preprocess         # mean/std computed from x_train per channel
    flip: bool                     # horizontal flip is label-preserving (not for digits)
    crop_padding: int              # random-crop padding in stored-image pixels
    # superclasses (EAS's superclass dropout): name -> class ids, e.g. fashion's "footwear"
    class_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def side(self) -> int:
        """Side of the stored (square) images."""
        return int(self.x_train.shape[-1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of "train", "val" or "test"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def with_augmentation(self, aug: Augmentation) -> "Dataset":
        self.flip, self.crop_padding = aug.flip, aug.crop_padding
        return self

    def without_classes(self, held_out: Sequence[int]) -> "Dataset":
        """The data set with every image of the `held_out` classes removed from all three splits
        and the rest renumbered 0..n-1 in their old order: a supernet that has never seen those
        classes (`train --hold-out-classes`), whose normalisation and class groups are its own."""
        drop = sorted({int(c) for c in held_out})
        bad = [c for c in drop if not 0 <= c < self.num_classes]
        if bad:
            raise UserError(f"--hold-out-classes: class {bad[0]} does not exist ({self.name} has classes "
                            f"0..{self.num_classes - 1})")
        keep = [c for c in range(self.num_classes) if c not in drop]
        if len(keep) < 2:
            raise UserError(f"--hold-out-classes leaves {len(keep)} class(es) of {self.num_classes}: keep at least 2")
        new_id = np.full(self.num_classes, -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        parts = {}
        for name in SPLITS:
            x, y = self.split(name)
            mask = new_id[y] >= 0
            parts[f"x_{name}"], parts[f"y_{name}"] = np.ascontiguousarray(x[mask]), new_id[y[mask]]
        mean, std = channel_stats(parts["x_train"])
        groups = {g: tuple(int(new_id[c]) for c in ids if new_id[c] >= 0) for g, ids in self.class_groups.items()}
        return replace(self, **parts, class_names=[self.class_names[c] for c in keep],
                       preprocess=replace(self.preprocess, mean=mean, std=std),
                       class_groups={g: ids for g, ids in groups.items() if len(ids) >= 2})


def make_dataset(name: str, x: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, ...],
                 class_names: list[str], resolution: int, aug: Augmentation,
                 class_groups: dict[str, tuple[int, ...]] | None = None) -> Dataset:
    """Assemble splits (index arrays into x/y) and compute train-split normalisation."""
    tr, va, te = (np.ascontiguousarray(p, dtype=np.int64) for p in parts)
    x_train = np.ascontiguousarray(x[tr])
    mean, std = channel_stats(x_train)
    pre = Preprocess(channels=int(x.shape[1]), resolution=int(resolution), mean=mean, std=std)
    return Dataset(name=name,
                   x_train=x_train, y_train=y[tr].astype(np.int64),
                   x_val=np.ascontiguousarray(x[va]), y_val=y[va].astype(np.int64),
                   x_test=np.ascontiguousarray(x[te]), y_test=y[te].astype(np.int64),
                   class_names=list(class_names), preprocess=pre, flip=aug.flip,
                   crop_padding=int(aug.crop_padding), class_groups=dict(class_groups or {}))


def official_split(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   class_names: list[str], resolution: int, aug: Augmentation, seed: int,
                   class_groups: dict[str, tuple[int, ...]] | None = None) -> Dataset:
    """Keep the official test split; carve a stratified validation split out of train."""
    train, val, _ = split_indices(y_train, seed, OFFICIAL_VAL_FRAC, 0.0)
    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test])
    test = np.arange(len(x_train), len(x))
    return make_dataset(name, x, y, (train, val, test), class_names, resolution, aug, class_groups)


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the [0,1] scale, exact, via a 256-bin histogram per channel.

    The histogram avoids a float copy of the whole train set (CIFAR would need > 1 GB).
    A constant channel gets std 1 so that normalisation never divides by zero.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        std = float(np.sqrt((counts * (values - mean) ** 2).sum() / n))
        means.append(mean)
        stds.append(std if std > 1e-12 else 1.0)
    return tuple(means), tuple(stds)


def split_indices(y: np.ndarray, seed: int, val_frac: float,
                  test_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic stratified (train, val, test) index arrays.

    Uses scikit-learn's stratified ``train_test_split``; when a class is too small for
    that, falls back to a seeded per-class split that keeps >= 1 image per class in train.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        if test_frac > 0:
            rest, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
        else:
            rest, test = idx, idx[:0]
        train, val = train_test_split(rest, test_size=val_frac / (1.0 - test_frac),
                                      stratify=y[rest], random_state=seed)
    except ValueError:
        return _per_class_split(y, seed, val_frac, test_frac)
    return train, val, test


def _per_class_split(y: np.ndarray, seed: int, val_frac: float,
                     test_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded fallback for tiny classes: one image of every class is reserved for train,
    the rest is dealt out round-robin across classes (so held-out splits stay close to
    stratified) into test, then val, then train, at the requested overall fractions."""
    rng = np.random.default_rng(seed)
    reserved, pool, rank = [], [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        reserved.append(members[:1])
        pool.append(members[1:])
        rank.append(np.arange(1, len(members)))
    pool_idx = np.concatenate(pool)
    order = np.lexsort((rng.random(len(pool_idx)), np.concatenate(rank)))   # by rank, ties random
    pool_idx = pool_idx[order]
    n_test = min(int(round(len(y) * test_frac)), len(pool_idx))
    n_val = min(int(round(len(y) * val_frac)), len(pool_idx) - n_test)
    test = pool_idx[:n_test]
    val = pool_idx[n_test:n_test + n_val]
    train = np.concatenate([*reserved, pool_idx[n_test + n_val:]])
    return rng.permutation(train), rng.permutation(val), rng.permutation(test)


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"
