"""Read and write the safetensors format with numpy alone.

The device runtime must not need torch, and on a Pi every wheel counts: the format is an
8-byte little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}},
then the raw little-endian tensor bytes — simple enough to read without the Rust wheel.
Files written here load with the official `safetensors` library and vice versa (tested).
"""

from __future__ import annotations

import json
import struct
from typing import Mapping

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class SafetensorsError(ValueError):
    pass


def loads(buf: bytes) -> dict[str, np.ndarray]:
    """Parse a safetensors file's bytes into numpy arrays (copies, little-endian, writable)."""
    if len(buf) < 8:
        raise SafetensorsError("safetensors data is truncated (no header)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        raise SafetensorsError("safetensors header runs past the end of the data (truncated)")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SafetensorsError("safetensors header is not valid JSON") from None
    body = memoryview(buf)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(spec.get("dtype"))
        if dtype is None:
            raise SafetensorsError(f"tensor {name!r} has unsupported dtype {spec.get('dtype')!r}")
        start, end = spec["data_offsets"]
        shape = tuple(int(s) for s in spec["shape"])
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= start <= end <= len(body) or end - start != count * np.dtype(dtype).itemsize:
            raise SafetensorsError(f"tensor {name!r} has inconsistent offsets (truncated or corrupt data)")
        arr = np.frombuffer(body[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        out[name] = arr.astype(dtype, copy=True).reshape(shape)
    return out


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in NAMES:
            raise SafetensorsError(f"tensor {name!r} has unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the body to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)
