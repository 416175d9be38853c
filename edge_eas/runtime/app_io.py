"""The edges of a standalone exported model (`export-subnet`): what an app feeds it and gets back.

A user's app holds an image as uint8 pixels, height x width x channels. A model that wants
float32 NCHW normalised with a mean and std the app must re-implement is a trap: fed raw
pixels the way its description suggested, one export scored 57 % where `edge_eas eval` said
99 %. So the exported graph takes uint8 NHWC, normalises inside, and ends in softmax over the
task's classes; its labels and layout travel beside it as `NAME.json` (and inside a .tflite as
a metadata entry of the same name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SIGNATURE = "serving_default"
METADATA_NAME = "edge_eas"


@dataclass(frozen=True)
class AppIO:
    """uint8 NHWC in, normalised as training did ((x / 255 - mean) / std per channel), softmax out."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def scale_and_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, shift) with x_normalised = x_uint8 * scale + shift."""
        std = np.asarray(self.std, dtype=np.float64)
        mean = np.asarray(self.mean, dtype=np.float64)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def sidecar(fmt: str, io: AppIO, input_shape_nchw: Sequence[int | str], classes: Sequence[int | None],
            labels: Sequence[str], extra: dict[str, Any]) -> dict[str, Any]:
    """What `NAME.json` says: enough for an app to use the file without edge_eas. A batch given
    as a name ("N") is dynamic: any batch."""
    batch, *chw = input_shape_nchw
    n = batch if isinstance(batch, str) else int(batch)
    c, h, w = (int(v) for v in chw)
    return {
        "format": fmt,
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "shape": [n, h, w, c],
                  "pixels": f"0..255, resized to {h}x{w} by the app", "channels": "RGB" if c == 3 else "grey"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [n, len(classes)],
                   "meaning": "softmax probabilities; index i is labels[i]"},
        "labels": list(labels),
        "class_ids": [None if k is None else int(k) for k in classes],  # None: a class fitted on the device
        "normalisation": {"inside_graph": True, "formula": "(x / 255 - mean) / std per channel", **asdict(io)},
        **extra,
    }


def sidecar_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()
