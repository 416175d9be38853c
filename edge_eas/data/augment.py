"""Training-loop helpers: numpy augmentation and batch index streams (cheap to import)."""

from __future__ import annotations

from typing import Iterator

import numpy as np


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
