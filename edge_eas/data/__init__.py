"""Data sets for supernet training (host side), without torchvision and without downloads.

Sources (`--data`): `digits` (embedded in scikit-learn), `fashion-mnist` (Debian's
dataset-fashion-mnist, or `fashion-mnist:DIR`), `idx:DIR` (any IDX image/label pair),
`cifar10:DIR` / `cifar100:DIR` (python pickles) and `folder:DIR` (one folder per class).
Each is split into train / val / test (an official test split is kept; val is carved from
train); search and selection use val, test only reports. Data sets with natural superclasses
declare them as `class_groups` (Fashion-MNIST's tops/footwear/other, CIFAR-100's 20 coarse labels).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edge_eas.errors import UserError
from edge_eas.data.augment import augment, iterate_batches
from edge_eas.data.base import AUGMENTATIONS, TEST_FRAC, VAL_FRAC, Augmentation, Dataset, make_dataset, split_indices
from edge_eas.data.cifar import CIFAR_FORMATS, load_cifar
from edge_eas.data.folder import IMAGE_EXTENSIONS, load_folder
from edge_eas.data.idx import load_fashion, load_idx, read_idx

__all__ = ["Dataset", "Augmentation", "load_dataset", "run_dataset", "augment", "iterate_batches", "read_idx",
           "SPEC_FORMS", "IMAGE_EXTENSIONS", "AUGMENTATIONS"]

SPEC_FORMS = "digits, fashion-mnist[:DIR], idx:DIR, cifar10:DIR, cifar100:DIR, folder:DIR"


def load_dataset(spec: str, resolution: int | None = None, seed: int = 0, augment: str | None = None,
                 hold_out: Sequence[int] = ()) -> Dataset:
    """Load a data set from its spec (see SPEC_FORMS).

    ``resolution`` is the network input size: array sources keep native-size arrays and only
    record it in ``preprocess`` (resized at run time); folders are resized to it on load.
    ``augment`` ("flip,crop", "crop", "none", ...) replaces the source's default augmentation.
    ``hold_out``: class ids removed from every split (the rest renumbered), as a run trained with
    `--hold-out-classes` saw its data.
    Raises UserError with a one-line message on any bad input.
    """
    if resolution is not None and (isinstance(resolution, bool) or int(resolution) != resolution
                                   or resolution < 1):
        raise UserError(f"resolution must be a positive integer, got {resolution!r}")
    kind, sep, arg = str(spec).partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "digits" and not sep:
        data = _load_digits(resolution, seed)
    elif kind == "fashion-mnist":
        data = load_fashion(arg, resolution, seed)
    elif kind in CIFAR_FORMATS or kind in ("folder", "idx"):
        if not arg:
            raise UserError(f"dataset spec {spec!r} needs a directory, e.g. {kind}:/path/to/data")
        if kind == "folder":
            data = load_folder(arg, resolution, seed)
        elif kind == "idx":
            data = load_idx(arg, resolution, seed)
        else:
            data = load_cifar(kind, arg, resolution, seed)
    else:
        raise UserError(f"unknown dataset spec {spec!r}; valid forms: {SPEC_FORMS}")
    if augment is not None:
        data.with_augmentation(Augmentation.parse(augment, data.side))
    return data.without_classes(hold_out) if hold_out else data


def run_dataset(meta: Mapping[str, Any], resolution: int | None = None) -> Dataset:
    """The data a run (its run.json) trained on: its source and seed, without the classes it held out."""
    config = meta["config"]
    return load_dataset(meta["data"], resolution=resolution, seed=config["seed"],
                        hold_out=config.get("hold_out_classes") or ())


def _load_digits(resolution: int | None, seed: int) -> Dataset:
    """scikit-learn's embedded 8x8 digits (0..16 grey levels), stratified 70/10/20; no flips."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[:, None]   # (N,1,8,8)
    y = np.asarray(bunch.target, dtype=np.int64)
    parts = split_indices(y, seed, VAL_FRAC, TEST_FRAC)
    return make_dataset("digits", x, y, parts, [str(i) for i in range(10)], resolution or x.shape[-1],
                        Augmentation(flip=False, crop_padding=1))
