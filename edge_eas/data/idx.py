"""IDX files (the MNIST format): `fashion-mnist` from Debian's dataset-fashion-mnist package (or any
folder with the four files), and `idx:DIR` for any IDX image/label pair.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), the
dimensions as big-endian uint32, then the data, C order; `.gz` files are read as such.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from edge_eas.errors import UserError
from edge_eas.data.base import TEST_FRAC, VAL_FRAC, Augmentation, Dataset, make_dataset, official_split, split_indices

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
# the natural superclasses; tasks inside one (e.g. Shirt vs T-shirt vs Coat) are the hard ones
FASHION_GROUPS = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
           0x0E: np.dtype(">f8")}
_MAX_BYTES = 4 << 30  # refuse headers that claim more than 4 GiB


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array in native byte order."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
        raise UserError(f"{path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    ndim, dtype = raw[3], np.dtype(_DTYPES[raw[2]])
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size > _MAX_BYTES or len(raw) != 4 + 4 * ndim + size:
        raise UserError(f"{path}: IDX header says {dims} of {dtype}, which does not match the file's "
                        f"{len(raw) - 4 - 4 * ndim} data bytes")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def _pairs(root: Path) -> dict[str, tuple[Path, Path]]:
    """prefix -> (images, labels) for files named like `PREFIX-images-idx3-ubyte[.gz]` and
    `PREFIX-labels-idx1-ubyte[.gz]` (MNIST naming; `.` or `_` separators work too)."""
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(root.iterdir()):
        m = re.fullmatch(r"(.*?)[-_.]?(images|labels)[-_.]idx([13])[-_.]ubyte(\.gz)?", p.name)
        if m and p.is_file() and (m.group(2) == "images") == (m.group(3) == "3"):
            found.setdefault(m.group(1), {})[m.group(2)] = p
    return {k: (v["images"], v["labels"]) for k, v in found.items() if len(v) == 2}


def _images_labels(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim not in (3, 4) or x.dtype != np.uint8:
        raise UserError(f"{images}: expected uint8 images of shape (N, H, W) or (N, H, W, C), got {x.shape} "
                        f"{x.dtype}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{labels}: expected {len(x)} integer labels, got shape {y.shape} {y.dtype}")
    if y.min() < 0:
        raise UserError(f"{labels}: labels must be >= 0, got {y.min()}")
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    if x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise UserError(f"{images}: expected square 1- or 3-channel images, got {x.shape[1:]} (C, H, W)")
    return np.ascontiguousarray(x), y.astype(np.int64)


def load_idx(arg: str, resolution: int | None, seed: int, name: str | None = None,
             class_names: list[str] | None = None, groups: dict[str, tuple[int, ...]] | None = None,
             aug: Augmentation | None = None) -> Dataset:
    """`idx:DIR`: a train pair (`train-...`) and a test pair (`t10k-...` or `test-...`) keep the official
    split (val carved from train); a single pair is split 70/10/20, stratified."""
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise UserError(f"IDX directory not found: {root}")
    pairs = _pairs(root)
    if not pairs:
        raise UserError(f"{root} has no IDX image/label pair (files like train-images-idx3-ubyte[.gz] and "
                        f"train-labels-idx1-ubyte[.gz])")
    train = pairs.get("train")
    test = pairs.get("t10k") or pairs.get("test")
    if (train is None or test is None) and len(pairs) > 1:
        raise UserError(f"{root}: several IDX pairs ({', '.join(sorted(pairs))}) but not one 'train' and one "
                        f"'t10k'/'test' pair")
    name = name or f"idx:{root.resolve().name}"
    if train is not None and test is not None:
        x_tr, y_tr = _images_labels(*train)
        x_te, y_te = _images_labels(*test)
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise UserError(f"{root}: train images are {x_tr.shape[1:]} but test images are {x_te.shape[1:]}")
        k = int(max(y_tr.max(), y_te.max())) + 1
        names = _names(class_names, k, root)
        return official_split(name, x_tr, y_tr, x_te, y_te, names, resolution or x_tr.shape[-1],
                              aug or Augmentation(flip=False, crop_padding=max(1, x_tr.shape[-1] // 8)), seed,
                              groups)
    x, y = _images_labels(*next(iter(pairs.values())))
    names = _names(class_names, int(y.max()) + 1, root)
    parts = split_indices(y, seed, VAL_FRAC, TEST_FRAC)
    return make_dataset(name, x, y, parts, names, resolution or x.shape[-1],
                        aug or Augmentation(flip=False, crop_padding=max(1, x.shape[-1] // 8)), groups)


def _names(given: list[str] | None, k: int, root: Path) -> list[str]:
    if given is None:
        return [str(i) for i in range(k)]
    if k > len(given):
        raise UserError(f"{root}: labels go up to {k - 1} but the data set has {len(given)} classes")
    return list(given)


def load_fashion(arg: str, resolution: int | None, seed: int) -> Dataset:
    """Fashion-MNIST: Debian's package by default, or `fashion-mnist:DIR`. Official 60k/10k split,
    6k of train held out for validation. Clothes are left-right symmetric: flips are on."""
    root = Path(arg).expanduser() if arg else FASHION_DIR
    if not arg and not root.is_dir():
        raise UserError(f"Fashion-MNIST is not installed: apt-get install {FASHION_PACKAGE} (it puts the IDX files "
                        f"in {FASHION_DIR}), or give fashion-mnist:DIR")
    return load_idx(str(root), resolution, seed, name="fashion-mnist", class_names=FASHION_CLASSES,
                    groups=FASHION_GROUPS, aug=Augmentation(flip=True, crop_padding=2))
