"""Inference engines for a `FoldedNet`: numpy (always), TFLite/LiteRT, ExecuTorch, torch.

This module imports numpy only; each engine imports its own library when it is created, so
`available_engines()` and the numpy engine work on a device where only numpy is installed.
Every engine takes NCHW float32 images and returns (N, num_classes) float32 logits.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Optional, Protocol

import numpy as np

from edge_eas.errors import UserError

if TYPE_CHECKING:
    from edge_eas.net.folded import FoldedNet

ENGINE_NAMES = ("numpy", "tflite", "executorch", "torch")


class EngineUnavailable(UserError, RuntimeError):
    """The engine's library is not installed here; the message says what to pip install."""


class Engine(Protocol):
    name: str
    threads: Optional[int]

    def run(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 images -> (N, num_classes) float32 logits."""
        ...


def _has(module: str) -> bool:
    """Installed? find_spec on a top-level name does not import the package."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def engine_available(name: str) -> bool:
    """Cheap check (nothing heavy is imported) that `create_engine(name, ...)` can work."""
    _check_name(name)
    if name == "numpy":
        return True
    if name == "tflite":
        # Building needs flatbuffers + a TFLite schema module (shipped by ai-edge-litert).
        schema = _has("tensorflow") or _has("edge_eas_tflite_schema")  # deploy ships the latter
        return _has("flatbuffers") and (_has("ai_edge_litert") or (_has("tflite_runtime") and schema))
    if name == "executorch":
        return _has("executorch") and _has("torch")
    return _has("torch")


def available_engines() -> list[str]:
    """Engines whose libraries are installed, in preference order of ENGINE_NAMES."""
    return [name for name in ENGINE_NAMES if engine_available(name)]


def create_engine(name: str, folded: "FoldedNet", batch_size: int = 1, threads: Optional[int] = None) -> Engine:
    """Build engine `name` for `folded`. `batch_size` is the batch it is prepared for (engines
    with static shapes re-plan on another batch); `threads=None` keeps the library default."""
    _check_name(name)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    if name == "numpy":
        from edge_eas.runtime.engines.numpy_engine import NumpyEngine
        return NumpyEngine(folded, batch_size=batch_size, threads=threads)
    if name == "tflite":
        from edge_eas.runtime.engines.tflite_engine import TFLiteEngine
        return TFLiteEngine(folded, batch_size=batch_size, threads=threads)
    if name == "executorch":
        from edge_eas.runtime.engines.executorch_engine import ExecuTorchEngine
        return ExecuTorchEngine(folded, batch_size=batch_size, threads=threads)
    from edge_eas.runtime.engines.torch_engine import TorchEngine
    return TorchEngine(folded, batch_size=batch_size, threads=threads)


def _check_name(name: str) -> None:
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")


def as_input(x: np.ndarray, folded: "FoldedNet") -> np.ndarray:
    """Validate an NCHW batch against the net's input shape; return it as C-contiguous float32."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(folded.input_shape):
        raise ValueError(f"expected NCHW input of shape (N, {', '.join(map(str, folded.input_shape))}), "
                         f"got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("input batch is empty")
    return np.ascontiguousarray(x, dtype=np.float32)


__all__ = ["ENGINE_NAMES", "Engine", "EngineUnavailable", "available_engines", "create_engine",
           "engine_available", "as_input"]
