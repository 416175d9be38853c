"""The user's own images for BN recalibration on the device, for bundles that carry none
(`edge_eas export --calibration-images 0`): a numpy array, a `.npy` file, or a folder of
images (decoded with Pillow when it is installed; numpy-only devices use an array or .npy)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from edge_eas.net.preprocess import Preprocess
from edge_eas.runtime.image_files import IMAGE_SUFFIXES, image_files, pillow

CalibrationLike = Union[np.ndarray, str, Path]
MIN_IMAGES = 8  # BN statistics from fewer images are noise


def load_calibration(source: CalibrationLike, pre: Preprocess) -> np.ndarray:
    """NCHW images (uint8, or float in 0..1) checked against the bundle's input: Preprocess
    resizes them and normalises them exactly as at inference."""
    if isinstance(source, np.ndarray):
        images = source
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            images = _read_folder(path, pre.channels)
        elif path.suffix == ".npy" and path.is_file():
            images = np.load(path, allow_pickle=False)
        else:
            raise ValueError(f"calibration images {path}: expected a folder of images or a .npy file")
    if images.ndim == 3 and pre.channels == 1:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] != pre.channels:
        raise ValueError(f"calibration images must be NCHW with {pre.channels} channel(s), got shape "
                         f"{tuple(images.shape)}")
    if len(images) < MIN_IMAGES:
        raise ValueError(f"give at least {MIN_IMAGES} calibration images (got {len(images)}): BN statistics "
                         f"from fewer are noise")
    return images


def _read_folder(path: Path, channels: int) -> np.ndarray:
    image = pillow(f"reading calibration images from {path}")
    files = image_files(path, recursive=True)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    out = []
    for f in files:  # calibration images may be of either kind: BN statistics only
        with image.open(f) as im:
            a = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        out.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    sizes = {a.shape for a in out}
    if len(sizes) != 1:
        raise ValueError(f"calibration images under {path} differ in size ({sorted(sizes)[:3]}): resize them to one")
    return np.stack(out)
