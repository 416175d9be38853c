"""Image preprocessing shared by host training and the on-device runtime.

numpy only: this module runs on devices without torch or Pillow, and the same
:class:`Preprocess` travels in the deployment bundle as JSON so that the device
normalises exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Preprocess", "resize_bilinear"]


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 images become network input; travels in the deployment bundle as JSON."""

    channels: int            # 1 or 3
    resolution: int          # model input H == W
    mean: tuple[float, ...]  # per channel, on the [0,1] scale
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        # Normalise list inputs (e.g. from JSON) to tuples so the object stays hashable.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.channels not in (1, 3):
            raise ValueError(f"Preprocess.channels must be 1 or 3, got {self.channels}")
        if int(self.resolution) != self.resolution or self.resolution < 1:
            raise ValueError(f"Preprocess.resolution must be a positive integer, got {self.resolution}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"Preprocess needs {self.channels} mean/std values, got "
                             f"{len(self.mean)} mean and {len(self.std)} std")
        if not all(s > 0 and np.isfinite(s) for s in self.std):
            raise ValueError(f"Preprocess.std must be positive and finite, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, plain Python numbers)."""
        return {"channels": int(self.channels), "resolution": int(self.resolution),
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`; extra keys are ignored so newer bundles stay readable."""
        return cls(channels=int(d["channels"]), resolution=int(d["resolution"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) the network expects."""
        return (self.channels, self.resolution, self.resolution)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """NCHW (or CHW / NHW for 1-channel) uint8 in 0..255 or float already in 0..1
        -> float32 NCHW normalised, resized to ``resolution`` if needed.

        Raises ValueError naming the expected vs received shape on a wrong rank or
        channel count, and on integer dtypes other than uint8 (their scale is ambiguous).
        """
        x = _to_unit_float(np.asarray(images))
        x = self._to_nchw(x)
        if x.shape[2] != self.resolution or x.shape[3] != self.resolution:
            x = resize_bilinear(x, self.resolution)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def _to_nchw(self, x: np.ndarray) -> np.ndarray:
        """Add the missing batch / channel axis, or explain why the shape is wrong."""
        expected = (f"expected (N, {self.channels}, H, W) or ({self.channels}, H, W)"
                    + (" or (N, H, W)" if self.channels == 1 else ""))
        if x.ndim == 4:
            nchw = x
        elif x.ndim == 3 and x.shape[0] == self.channels:
            nchw = x[None]                      # CHW (for 1 channel, NHW with N == 1 is the same)
        elif x.ndim == 3 and self.channels == 1:
            nchw = x[:, None]                   # NHW greyscale
        else:
            raise ValueError(f"Preprocess: {expected}, got shape {tuple(x.shape)}")
        if nchw.shape[1] != self.channels:
            raise ValueError(f"Preprocess: {expected}, got shape {tuple(x.shape)} "
                             f"({nchw.shape[1]} channels)")
        if nchw.shape[2] < 1 or nchw.shape[3] < 1:
            raise ValueError(f"Preprocess: {expected}, got empty image shape {tuple(x.shape)}")
        return nchw


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 -> /255; floats are taken as already on the 0..1 scale."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise ValueError(f"Preprocess: expected uint8 (0..255) or float (0..1) images, got dtype {x.dtype}")


def _resize_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out, in) interpolation matrix for one axis, half-pixel centres (align_corners=False).

    This is PIL's separable triangle filter: when upsampling (or with antialias off) it is
    exactly torch's bilinear with align_corners=False (edge samples clamp); when
    downsampling with antialias the triangle widens by the scale factor, as in PIL and
    torch ``antialias=True``, so that large camera frames do not alias.
    """
    scale = in_size / out_size
    support = max(scale, 1.0) if antialias else 1.0
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * scale           # in source pixels
    taps = np.arange(in_size, dtype=np.float64) + 0.5
    w = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    # Every row has a non-zero tap: each centre lies within [0, in_size] and support >= 1.
    return w / w.sum(axis=1, keepdims=True)


def resize_bilinear(images: np.ndarray, size: int, antialias: bool = True) -> np.ndarray:
    """Resize NCHW images to (size, size) with bilinear interpolation; returns float32 NCHW.

    Upsampling matches ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``; downsampling antialiases like PIL unless ``antialias=False``
    (then it matches torch's default ``antialias=False``). Values keep their scale.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"resize_bilinear: expected NCHW images, got shape {tuple(x.shape)}")
    if int(size) != size or size < 1:
        raise ValueError(f"resize_bilinear: size must be a positive integer, got {size}")
    x = x.astype(np.float32, copy=False)
    h, w = x.shape[2], x.shape[3]
    if h == size and w == size:
        return x.copy()
    wh = _resize_weights(h, size, antialias).astype(np.float32)
    ww = _resize_weights(w, size, antialias).astype(np.float32)
    out = np.matmul(np.matmul(wh, x), ww.T)     # (size,H) @ NCHW @ (W,size)
    return np.ascontiguousarray(out, dtype=np.float32)
