"""Image folders: `folder:DIR` with one sub-folder of images per class, or `DIR/train` and `DIR/test`
each holding the same class folders (then that is the split, and val is carved from train).

The documented rules (README "Data"):
- class folders are DIR's top-level folders, and their images are the files directly inside
  them (no recursion: a `train/ test/` layout must never turn into a two-class task);
- a top-level folder that holds folders instead of images, or split-like names that are not
  exactly `train` + `test` (+ optional `val`), is an error that says so;
- images keep their size when they all share one (non-square ones are resized to the larger
  side), else they are resized to 32 px; `resolution` overrides; grey (every image grey) loads
  as 1 channel, anything else as 3;
- augmentation is a random crop only: flips are on only when asked (`--augment flip,crop`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_eas.errors import UserError
from edge_eas.data.base import (OFFICIAL_VAL_FRAC, TEST_FRAC, VAL_FRAC, Augmentation, Dataset, make_dataset, one_line,
                   split_indices)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
# Pillow modes that carry no colour; a folder made only of these loads as 1 channel.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
DEFAULT_FOLDER_RESOLUTION = 32
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval"})


def load_folder(arg: str, resolution: int | None, seed: int) -> Dataset:
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset directory not found: {root}")
    tops = _subdirs(root)
    names = {d.name.lower() for d in tops}
    if names & SPLIT_NAMES:
        if {"train", "test"} <= names and names <= {"train", "test", "val"}:
            return _load_split_layout(root, resolution, seed)
        raise UserError(f"{root} looks like split folders ({', '.join(sorted(d.name for d in tops))}): use exactly "
                        f"{root}/train and {root}/test (optionally {root}/val), each with one folder per class, "
                        f"or point folder: at a directory of class folders")
    classes, files, labels = _scan(root)
    x, r = _read_all(files, resolution)
    y = np.asarray(labels, dtype=np.int64)
    parts = split_indices(y, seed, VAL_FRAC, TEST_FRAC)
    return make_dataset(f"folder:{root.resolve().name}", x, y, parts, classes, r, _default_aug(r))


def _load_split_layout(root: Path, resolution: int | None, seed: int) -> Dataset:
    scans = {d.name.lower(): _scan(d) for d in _subdirs(root)}
    classes = scans["train"][0]
    for split, (names, _, _) in scans.items():
        if names != classes:
            raise UserError(f"{root}/{split} has classes {names} but {root}/train has {classes}: the splits must "
                            f"hold the same class folders")
    files = [f for s in scans.values() for f in s[1]]
    x, r = _read_all(files, resolution)
    y = np.asarray([lab for s in scans.values() for lab in s[2]], dtype=np.int64)
    offsets = np.cumsum([0] + [len(s[1]) for s in scans.values()])
    where = {name: np.arange(offsets[i], offsets[i + 1]) for i, name in enumerate(scans)}
    train_idx, test_idx = where["train"], where["test"]
    if "val" in where:
        val_idx = where["val"]
    else:
        tr, va, _ = split_indices(y[train_idx], seed, OFFICIAL_VAL_FRAC, 0.0)
        train_idx, val_idx = train_idx[tr], train_idx[va]
    return make_dataset(f"folder:{root.resolve().name}", x, y, (train_idx, val_idx, test_idx), classes, r,
                        _default_aug(r))


def _default_aug(side: int) -> Augmentation:
    return Augmentation(flip=False, crop_padding=max(1, side // 8))


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names, image files and labels of one directory of class folders."""
    class_dirs = _subdirs(root)
    if len(class_dirs) < 2:
        raise UserError(f"{root}: expected one sub-folder per class and at least 2 classes, found {len(class_dirs)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        images = _image_files(d)
        if not images:
            nested = _subdirs(d)
            if nested:
                raise UserError(f"class folder {d} holds folders ({', '.join(n.name for n in nested[:3])}), not "
                                f"images: a class folder's images must lie directly inside it")
            raise UserError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += images
        labels += [label] * len(images)
    return [d.name for d in class_dirs], files, labels


def _read_all(files: list[Path], resolution: int | None) -> tuple[np.ndarray, int]:
    headers = [_image_header(p) for p in files]
    grey = all(mode in GREY_MODES for mode, _ in headers)
    sizes = {size for _, size in headers}
    r = int(resolution or (max(next(iter(sizes))) if len(sizes) == 1 else DEFAULT_FOLDER_RESOLUTION))
    x = np.empty((len(files), 1 if grey else 3, r, r), dtype=np.uint8)
    for i, p in enumerate(files):
        x[i] = _read_image(p, grey, r)
    return x, r


def _image_files(class_dir: Path) -> list[Path]:
    """Images directly inside a class folder, sorted; dot-files (e.g. macOS ._x.jpg) skipped."""
    return sorted(p for p in class_dir.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def _image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """Pillow mode and size from the header only (no decode), to pick channels and size up front."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except Exception as e:
        raise UserError(f"cannot read image {path} ({one_line(e)})") from e


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
        raise UserError(f"cannot read image {path} ({one_line(e)})") from e
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
