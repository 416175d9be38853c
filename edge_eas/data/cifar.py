"""CIFAR-10/100 python-pickle releases (read with a restricted unpickler: arrays and strings only).
CIFAR-100's 20 coarse labels become class groups (superclasses)."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_eas.errors import UserError
from edge_eas.data.base import Augmentation, Dataset, official_split, one_line


@dataclass(frozen=True)
class _CifarFormat:
    """File layout of one CIFAR python-pickle release."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    coarse_key: str | None = None        # per-image superclass labels (CIFAR-100)
    coarse_names_key: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


CIFAR_FORMATS = {
    "cifar10": _CifarFormat("cifar10", "cifar-10-batches-py",
                            tuple(f"data_batch_{i}" for i in range(1, 6)),
                            "test_batch", "batches.meta", "labels", "label_names"),
    "cifar100": _CifarFormat("cifar100", "cifar-100-python", ("train",), "test", "meta",
                             "fine_labels", "fine_label_names", "coarse_labels", "coarse_label_names"),
}
_CIFAR_SIDE = 32


def load_cifar(kind: str, arg: str, resolution: int | None, seed: int) -> Dataset:
    """CIFAR-10/100 python pickles; val is a stratified 10 % of the official train set."""
    fmt = CIFAR_FORMATS[kind]
    root = _cifar_dir(fmt, arg)
    class_names = _read_class_names(root / fmt.meta_file, fmt.names_key)
    batches = [_read_batch(root / f, fmt.label_key, len(class_names)) for f in fmt.train_files]
    x_test, y_test, _ = _read_batch(root / fmt.test_file, fmt.label_key, len(class_names))
    x_tv = np.concatenate([b[0] for b in batches])
    y_tv = np.concatenate([b[1] for b in batches])
    groups = _coarse_groups(fmt, root, [b[2] for b in batches], y_tv)
    return official_split(fmt.name, x_tv, y_tv, x_test, y_test, class_names, resolution or _CIFAR_SIDE,
                          Augmentation(flip=True, crop_padding=4), seed, groups)


def _coarse_groups(fmt: _CifarFormat, root: Path, raw: list[dict], fine: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Superclass name -> fine class ids, from the release's per-image coarse labels (CIFAR-100)."""
    if fmt.coarse_key is None or fmt.coarse_names_key is None:
        return {}
    if not all(fmt.coarse_key in d or fmt.coarse_key.encode() in d for d in raw):
        return {}
    coarse = np.concatenate([np.asarray(_get(d, fmt.coarse_key, root)) for d in raw]).astype(np.int64)
    names = _read_class_names(root / fmt.meta_file, fmt.coarse_names_key)
    if coarse.shape != fine.shape or coarse.min() < 0 or coarse.max() >= len(names):
        raise UserError(f"{root}: {fmt.coarse_key!r} does not match the fine labels or {fmt.coarse_names_key!r}")
    return {names[g]: tuple(int(c) for c in np.unique(fine[coarse == g])) for g in range(len(names))
            if np.any(coarse == g)}


def _cifar_dir(fmt: _CifarFormat, arg: str) -> Path:
    """Accept the release folder itself or its parent; require every file of the release."""
    root = Path(arg).expanduser()
    if not root.exists():
        raise UserError(f"dataset directory not found: {root}")
    if not root.is_dir():
        raise UserError(f"dataset path is not a directory: {root}")
    if (root / fmt.folder).is_dir():
        root = root / fmt.folder
    missing = [f for f in fmt.required if not (root / f).is_file()]
    if missing:
        raise UserError(f"{fmt.name} file missing: {root / missing[0]} (need "
                        f"{', '.join(fmt.required)} in {fmt.folder} or its parent directory)")
    return root


def _read_class_names(path: Path, key: str) -> list[str]:
    names = _get(_load_dict_pickle(path), key, path)
    if not isinstance(names, (list, tuple)) or not names:
        raise UserError(f"{path}: {key!r} should be a non-empty list of class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """One pickle -> (uint8 (N,3,32,32), int64 (N,), the raw dict), with shape and range checks."""
    d = _load_dict_pickle(path)
    data = np.asarray(_get(d, "data", path))
    labels = np.asarray(_get(d, label_key, path))
    side = _CIFAR_SIDE
    if data.ndim != 2 or data.shape[1] != 3 * side * side:
        raise UserError(f"{path}: expected 'data' of shape (N, {3 * side * side}), "
                        f"got {tuple(data.shape)}")
    if labels.shape != (data.shape[0],) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise UserError(f"{path}: expected {data.shape[0]} integer labels in {label_key!r}, "
                        f"got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: labels must lie in 0..{num_classes - 1}, "
                        f"got {labels.min()}..{labels.max()}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or (data.size and (data.min() < 0 or data.max() > 255)):
            raise UserError(f"{path}: expected uint8 pixel data, got dtype {data.dtype}")
    x = data.astype(np.uint8, copy=False).reshape(-1, 3, side, side)
    return np.ascontiguousarray(x), labels.astype(np.int64), d


def _get(d: dict, key: str, path: Path) -> Any:
    """CIFAR pickles have bytes keys (Python 2); re-pickled copies may have str keys."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise UserError(f"{path}: key {key!r} not found - not a CIFAR python-pickle file")


# Globals a CIFAR pickle legitimately references (numpy array reconstruction; py2 bytes).
# Anything else is refused: an untrusted pickle could otherwise run arbitrary code.
_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """pickle.Unpickler that only resolves the numpy globals CIFAR files need."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} "
                                         "(CIFAR files hold only arrays, lists and strings)")
        with warnings.catch_warnings():        # numpy 2 warns on the legacy numpy.core path
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _load_dict_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # garbage bytes raise many different exception types
        raise UserError(f"cannot read {path}: not a valid CIFAR pickle ({one_line(e)})") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj

