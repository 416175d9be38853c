"""Datasets for supernet training (host side) and the numpy augmentation the training loop uses.

Every dataset is held as uint8 NCHW arrays with int64 labels, split into
train / val / test deterministically from a seed, together with the
:class:`~edge_eas.preprocess.Preprocess` (mean/std from the train split) that
travels to the device. Nothing here downloads anything: digits is embedded in
scikit-learn, CIFAR and image folders are read from a local directory.

Pillow and scikit-learn are imported lazily so ``augment`` / ``iterate_batches``
stay cheap to import for the training loop.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError
from .preprocess import Preprocess

__all__ = ["Dataset", "load_dataset", "augment", "iterate_batches",
           "SPEC_FORMS", "IMAGE_EXTENSIONS"]

SPEC_FORMS = "digits, cifar10:DIR, cifar100:DIR, folder:DIR"
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
# Pillow modes that carry no colour; a folder made only of these loads as 1 channel.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

TRAIN_FRAC, VAL_FRAC, TEST_FRAC = 0.7, 0.1, 0.2   # digits and folders (no official split)
CIFAR_VAL_FRAC = 0.1                               # carved out of the official train set
DEFAULT_FOLDER_RESOLUTION = 32


@dataclass
class Dataset:
    """A loaded dataset: uint8 NCHW images, int64 labels, and how to feed them to a network."""

    name: str                      # e.g. "digits", "cifar10", "folder:<dirname>"
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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of "train", "val" or "test"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


# --------------------------------------------------------------------------- entry point

def load_dataset(spec: str, resolution: int | None = None, seed: int = 0) -> Dataset:
    """Load ``digits``, ``cifar10:DIR``, ``cifar100:DIR`` or ``folder:DIR``.

    ``resolution`` is the network input size: digits/CIFAR keep native-size arrays and
    only record it in ``preprocess`` (resized at run time); folders are resized to it on
    load (default 32). Raises UserError with a one-line message on any bad input.
    """
    if resolution is not None and (isinstance(resolution, bool) or int(resolution) != resolution
                                   or resolution < 1):
        raise UserError(f"resolution must be a positive integer, got {resolution!r}")
    kind, sep, arg = str(spec).partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "digits" and not sep:
        return _load_digits(resolution, seed)
    if kind in _CIFAR_FORMATS or kind == "folder":
        if not arg:
            raise UserError(f"dataset spec {spec!r} needs a directory, e.g. {kind}:/path/to/data")
        if kind == "folder":
            return _load_folder(arg, resolution, seed)
        return _load_cifar(_CIFAR_FORMATS[kind], arg, resolution, seed)
    raise UserError(f"unknown dataset spec {spec!r}; valid forms: {SPEC_FORMS}")


def _make_dataset(name: str, x: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, ...],
                  class_names: list[str], resolution: int, flip: bool,
                  crop_padding: int) -> Dataset:
    """Assemble splits (index arrays into x/y) and compute train-split normalisation."""
    tr, va, te = (np.ascontiguousarray(p, dtype=np.int64) for p in parts)
    x_train = np.ascontiguousarray(x[tr])
    mean, std = _channel_stats(x_train)
    pre = Preprocess(channels=int(x.shape[1]), resolution=int(resolution), mean=mean, std=std)
    return Dataset(name=name,
                   x_train=x_train, y_train=y[tr].astype(np.int64),
                   x_val=np.ascontiguousarray(x[va]), y_val=y[va].astype(np.int64),
                   x_test=np.ascontiguousarray(x[te]), y_test=y[te].astype(np.int64),
                   class_names=list(class_names), preprocess=pre, flip=flip,
                   crop_padding=int(crop_padding))


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


# --------------------------------------------------------------------------- splitting

def _split_indices(y: np.ndarray, seed: int, val_frac: float,
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


# --------------------------------------------------------------------------- digits

def _load_digits(resolution: int | None, seed: int) -> Dataset:
    """scikit-learn's embedded 8x8 digits (0..16 grey levels), stratified 70/10/20."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[:, None]   # (N,1,8,8)
    y = np.asarray(bunch.target, dtype=np.int64)
    parts = _split_indices(y, seed, VAL_FRAC, TEST_FRAC)
    return _make_dataset("digits", x, y, parts, [str(i) for i in range(10)],
                         resolution or x.shape[-1], flip=False, crop_padding=1)


# --------------------------------------------------------------------------- CIFAR

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

    @property
    def required(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


_CIFAR_FORMATS = {
    "cifar10": _CifarFormat("cifar10", "cifar-10-batches-py",
                            tuple(f"data_batch_{i}" for i in range(1, 6)),
                            "test_batch", "batches.meta", "labels", "label_names"),
    "cifar100": _CifarFormat("cifar100", "cifar-100-python", ("train",), "test", "meta",
                             "fine_labels", "fine_label_names"),
}
_CIFAR_SIDE = 32


def _load_cifar(fmt: _CifarFormat, arg: str, resolution: int | None, seed: int) -> Dataset:
    """CIFAR-10/100 python pickles; val is a stratified 10 % of the official train set."""
    root = _cifar_dir(fmt, arg)
    class_names = _read_class_names(root / fmt.meta_file, fmt.names_key)
    batches = [_read_batch(root / f, fmt.label_key, len(class_names)) for f in fmt.train_files]
    x_test, y_test = _read_batch(root / fmt.test_file, fmt.label_key, len(class_names))
    x_tv = np.concatenate([b[0] for b in batches])
    y_tv = np.concatenate([b[1] for b in batches])
    train, val, _ = _split_indices(y_tv, seed, CIFAR_VAL_FRAC, 0.0)
    # One array with the test set appended, so _make_dataset can index all three splits.
    x = np.concatenate([x_tv, x_test])
    y = np.concatenate([y_tv, y_test])
    test = np.arange(len(x_tv), len(x))
    return _make_dataset(fmt.name, x, y, (train, val, test), class_names,
                         resolution or _CIFAR_SIDE, flip=True, crop_padding=4)


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


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle -> (uint8 (N,3,32,32), int64 (N,)), with shape and range checks."""
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
    return np.ascontiguousarray(x), labels.astype(np.int64)


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
        raise UserError(f"cannot read {path}: not a valid CIFAR pickle ({_one_line(e)})") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


# --------------------------------------------------------------------------- image folders

def _load_folder(arg: str, resolution: int | None, seed: int) -> Dataset:
    """One sub-folder per class; images resized to ``resolution`` with Pillow bilinear."""
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset directory not found: {root}")
    r = int(resolution or DEFAULT_FOLDER_RESOLUTION)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise UserError(f"{root}: expected one sub-folder per class and at least 2 classes, "
                        f"found {len(class_dirs)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        images = _image_files(d)
        if not images:
            raise UserError(f"class folder {d} has no images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += images
        labels += [label] * len(images)
    grey = all(_image_mode(p) in GREY_MODES for p in files)
    x = np.empty((len(files), 1 if grey else 3, r, r), dtype=np.uint8)
    for i, p in enumerate(files):
        x[i] = _read_image(p, grey, r)
    y = np.asarray(labels, dtype=np.int64)
    parts = _split_indices(y, seed, VAL_FRAC, TEST_FRAC)
    return _make_dataset(f"folder:{root.resolve().name}", x, y, parts,
                         [d.name for d in class_dirs], r, flip=True, crop_padding=max(1, r // 8))


def _image_files(class_dir: Path) -> list[Path]:
    """Images under a class folder (recursively), sorted; dot-files (e.g. macOS ._x.jpg) skipped."""
    return sorted(p for p in class_dir.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                  and p.is_file())


def _image_mode(path: Path) -> str:
    """Pillow mode from the header only (no decode), to pick 1 or 3 channels up front."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode
    except Exception as e:
        raise UserError(f"cannot read image {path} ({_one_line(e)})") from e


def _read_image(path: Path, grey: bool, size: int) -> np.ndarray:
    """Decode, convert to L or RGB, resize; returns uint8 CHW."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            im = _to_grey(im) if grey else _to_rgb(im)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except Exception as e:
        raise UserError(f"cannot read image {path} ({_one_line(e)})") from e
    return a[None] if grey else a.transpose(2, 0, 1)


def _to_grey(im: Any) -> Any:
    """Mode "L"; 16-bit images are scaled (Pillow's convert would clip them at 255)."""
    from PIL import Image

    if im.mode in SIXTEEN_BIT_MODES:
        a = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))
    return im if im.mode == "L" else im.convert("L")


def _to_rgb(im: Any) -> Any:
    if im.mode in ("P", "PA"):          # via RGBA: avoids Pillow's palette-transparency warning
        im = im.convert("RGBA")
    if im.mode in SIXTEEN_BIT_MODES:
        im = _to_grey(im)
    return im if im.mode == "RGB" else im.convert("RGB")


# --------------------------------------------------------------------------- training-loop helpers

def augment(images: np.ndarray, rng: np.random.Generator, crop_padding: int,
            flip: bool) -> np.ndarray:
    """uint8 NCHW -> uint8 NCHW: random crop with zero padding (per-image offsets) and
    random horizontal flip (p = 0.5). Vectorised through a strided window view."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"augment: expected NCHW images, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    p = int(crop_padding)
    if p < 0:
        raise ValueError(f"augment: crop_padding must be >= 0, got {crop_padding}")
    if p > 0 and n > 0:
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
        dy = rng.integers(0, 2 * p + 1, size=n)
        dx = rng.integers(0, 2 * p + 1, size=n)
        out = windows[np.arange(n), :, dy, dx]          # (N, C, H, W), a fresh array
    else:
        out = x.copy()
    if flip and n > 0:
        mask = rng.random(n) < 0.5
        out[mask] = out[mask][..., ::-1]
    return out


def iterate_batches(n: int, batch_size: int, rng: np.random.Generator, shuffle: bool = True,
                    drop_last: bool = False) -> Iterator[np.ndarray]:
    """Index arrays covering range(n) once, in batches (shuffled with ``rng`` if asked)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        if drop_last and len(batch) < batch_size:
            return
        yield batch
