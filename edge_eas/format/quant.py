"""Weight compression for bundles: int8 symmetric per-output-channel (+ fp32 scales), or fp16.

A quantised tensor `w` is stored as `w` (int8) and `w::scale` (float16, one per output
channel, i.e. along axis 0). In int8 bundles the 1-D tensors (BN parameters and statistics,
biases) go as float16: the device re-estimates BN statistics anyway, and fp16's 1e-3
relative precision is far below int8's. fp16 bundles store everything as float16.
"""

from __future__ import annotations

import numpy as np

SCALE_SUFFIX = "::scale"
DTYPES = ("int8", "fp16", "fp32")


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = w.reshape(w.shape[0], -1).astype(np.float32)
    # scales are stored as float16: round them first so quantisation uses the stored value
    scale = (np.abs(flat).max(1) / 127.0).astype(np.float16).astype(np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def compress(state: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    if dtype not in DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    out: dict[str, np.ndarray] = {}
    for name, w in state.items():
        w = np.asarray(w)
        if w.dtype.kind != "f":
            out[name] = w
        elif dtype == "fp32":
            out[name] = w.astype(np.float32)
        elif dtype == "fp16" or w.ndim < 2:
            out[name] = w.astype(np.float16)
        else:
            q, scale = quantize_int8(w)
            out[name], out[name + SCALE_SUFFIX] = q, scale.astype(np.float16)
    return out


def decompress(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Back to float32 arrays under the original names."""
    out: dict[str, np.ndarray] = {}
    for name, w in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = stored.get(name + SCALE_SUFFIX)
        if scale is not None:
            out[name] = (w.reshape(w.shape[0], -1).astype(np.float32)
                         * scale.astype(np.float32)[:, None]).reshape(w.shape)
        elif w.dtype.kind == "f":
            out[name] = w.astype(np.float32)
        else:
            out[name] = w
    return out
