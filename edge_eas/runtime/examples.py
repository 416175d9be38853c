"""A user's labelled examples for a task head fitted on the device (`specialize(examples=...)`).

Given as {label: images} (uint8 or 0..1 float arrays, NCHW, CHW-per-image lists, or NHW for grey)
or as a folder with one sub-folder of images per label (the folder loader's rules: a label's
images lie directly inside its folder; dot-files and other files are skipped). A `.npy` file in a
label folder is a stack of that label's images as a numpy array (what a device without Pillow
reads; no pickle).

A label is a class the bundle knows when it is an int (a class id) or a string equal to a class
name (case-insensitive); any other string names a new class. Folder names are strings, so a
folder `3` in a digits bundle means the class named "3".

Everything is checked before anything is fitted or written, and each problem is one line that
names the label or file: nothing already on the device is touched by bad input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from edge_eas.net.preprocess import Preprocess
from edge_eas.runtime.image_files import IMAGE_SUFFIXES, image_files, read_image

Label = Union[int, str]
ExamplesLike = Union[Mapping[Label, object], str, Path]
MIN_PER_LABEL = 2        # one image has no spread: the fit would just memorise it
MAX_LABELS = 64          # a few-shot head is for a device's small task, not a 500-way classifier
MAX_PER_LABEL = 1000     # beyond this, train on the host (edge_eas train --data folder:DIR)
HASH_CHARS = 16          # 64 bits of each example's SHA-256: identifies it in the saved head


@dataclass(frozen=True)
class Examples:
    """Checked examples: network-ready inputs, the label index of each, and where they came from."""

    labels: tuple[str, ...]            # display names, in head-row order
    class_ids: tuple[int | None, ...]  # the bundle's class id per label; None: a new class
    inputs: np.ndarray                 # float32 NCHW, preprocessed as at inference
    targets: np.ndarray                # int64 label index per input
    hashes: tuple[tuple[str, ...], ...]  # per label, each example's hash

    @property
    def new_labels(self) -> list[str]:
        return [lab for lab, cid in zip(self.labels, self.class_ids) if cid is None]

    def counts(self) -> list[int]:
        return [int(c) for c in np.bincount(self.targets, minlength=len(self.labels))]


def resolve_label(label: Label, class_names: Sequence[str]) -> tuple[str, int | None]:
    """(display name, the bundle's class id or None for a new class)."""
    if isinstance(label, (bool, np.bool_)):
        raise ValueError(f"example label {label!r} is neither a class id nor a name")
    if isinstance(label, (int, np.integer)):
        if not 0 <= int(label) < len(class_names):
            raise ValueError(f"example label {int(label)} is not a class id of this bundle (0..{len(class_names) - 1}); "
                             f"name a new class with a string")
        return class_names[int(label)], int(label)
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"example label {label!r} must be a class id (int) or a non-empty name (str)")
    name = label.strip()
    lowered = [c.lower() for c in class_names]
    return (class_names[lowered.index(name.lower())], lowered.index(name.lower())) if name.lower() in lowered \
        else (name, None)


def load_examples(source: ExamplesLike, pre: Preprocess, class_names: Sequence[str]) -> Examples:
    """Read and check the examples (see the module docstring); raise ValueError with one line."""
    raw = _from_folder(Path(source).expanduser(), pre.channels) if isinstance(source, (str, Path)) \
        else _from_mapping(source, pre.channels)
    if not raw:
        raise ValueError("no examples given: pass {label: images} or a folder with one sub-folder per label")
    if len(raw) > MAX_LABELS:
        raise ValueError(f"{len(raw)} labels: a task head fitted on the device takes at most {MAX_LABELS}; "
                         f"train on the host for more (edge_eas train --data folder:DIR)")
    if len(raw) < 2:
        raise ValueError(f"only one label ({next(iter(raw))!r}): a task needs at least 2")
    labels, ids, inputs, targets, hashes = [], [], [], [], []
    for row, (label, images) in enumerate(raw.items()):
        name, cid = resolve_label(label, class_names)
        if name in labels or (cid is not None and cid in ids):
            raise ValueError(f"example label {label!r} names the same class as another label ({name!r})")
        if len(images) < MIN_PER_LABEL:
            raise ValueError(f"label {name!r} has {len(images)} example: give at least {MIN_PER_LABEL} "
                             f"(10 or more fit well)")
        if len(images) > MAX_PER_LABEL:
            raise ValueError(f"label {name!r} has {len(images)} examples: at most {MAX_PER_LABEL} on the device; "
                             f"train on the host for more")
        labels.append(name)
        ids.append(cid)
        hashes.append(tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:HASH_CHARS]
                            for a in images))
        inputs += [pre(a) for a in images]
        targets += [row] * len(images)
    return Examples(tuple(labels), tuple(ids), np.concatenate(inputs), np.asarray(targets, dtype=np.int64),
                    tuple(hashes))


def _from_mapping(source: Mapping[Label, object], channels: int) -> dict[Label, list[np.ndarray]]:
    if not isinstance(source, Mapping):
        raise ValueError(f"examples must be {{label: images}} or a folder, got {type(source).__name__}")
    return {label: _checked_images(label, images, channels) for label, images in source.items()}


def _checked_images(label: Label, images: object, channels: int) -> list[np.ndarray]:
    """One label's images as a list of (channels, H, W) arrays, shapes and dtypes checked."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    out: list[np.ndarray] = []
    for item in items:
        a = np.asarray(item)
        if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"label {label!r}: images must be uint8 (0..255) or float (0..1), got {a.dtype}")
        if a.ndim == 2 and channels == 1:
            a = a[None]
        if a.ndim == 3 and channels == 1 and a.shape[0] != 1 and len(items) == 1:
            a = a[:, None]  # an (N, H, W) grey stack
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4:
            raise ValueError(f"label {label!r}: expected images as (N, {channels}, H, W), got shape {a.shape}")
        if a.shape[1] != channels:
            raise ValueError(f"label {label!r}: images have {a.shape[1]} channel(s), the network takes {channels} "
                             f"(shape (N, {channels}, H, W))")
        out += [_square(label, img) for img in a]
    return out


def _square(label: Label, image: np.ndarray, where: object = None) -> np.ndarray:
    h, w = image.shape[-2:]
    if h != w or h < 4:
        what = where or f"label {label!r}"
        raise ValueError(f"{what}: an image is {h}x{w}; examples must be square and at least 4x4 (crop them: "
                         f"resizing a non-square image would distort it)")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError(f"label {label!r}: an image holds NaN or infinite values")
    return image


def _from_folder(root: Path, channels: int) -> dict[Label, list[np.ndarray]]:
    if not root.is_dir():
        raise ValueError(f"examples folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = image_files(root)
        hint = " (it holds images: put each label's images in a sub-folder named after the label)" if loose else ""
        raise ValueError(f"{root} has no label folders{hint}")
    out: dict[Label, list[np.ndarray]] = {}
    if len(folders) > MAX_LABELS:  # checked before reading thousands of files
        raise ValueError(f"{len(folders)} labels: a task head fitted on the device takes at most {MAX_LABELS}; "
                         f"train on the host for more (edge_eas train --data folder:DIR)")
    for folder in folders:
        files = image_files(folder)
        stacks = sorted(p for p in folder.glob("*.npy") if p.is_file() and not p.name.startswith("."))
        if not files and not stacks:
            raise ValueError(f"label folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)} or .npy directly "
                             f"inside it)")
        images = [_square(folder.name, read_image(f, channels), f) for f in files]
        for stack in stacks:
            try:
                array = np.load(stack, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ValueError(f"cannot read {stack}: {str(exc).splitlines()[0]}") from None
            images += _checked_images(folder.name, array, channels)
        out[folder.name] = images
    return out
