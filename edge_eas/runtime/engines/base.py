"""What every engine module shares: the Engine protocol, EngineUnavailable and input checking.

The engine modules import this (never the registry, which imports them lazily), so the engines
package has no import loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Protocol

import numpy as np

from edge_eas.errors import UserError

if TYPE_CHECKING:
    from edge_eas.net.folded import FoldedNet


class EngineUnavailable(UserError, RuntimeError):
    """The engine's library is not installed here; the message says what to pip install."""


@dataclass
class Calibration:
    """Images an engine calibrates on (NCHW float32, normalised as its input: the bundle's
    calibration images or the user's), and what engines derived from them, kept so that a
    second instance of an engine for the same network does not calibrate again. `synthetic`:
    random images, for latency work only (an untrained run, a profiled block)."""

    images: np.ndarray
    synthetic: bool = False
    derived: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def random(cls, input_shape: tuple, count: int = 16, seed: int = 0) -> "Calibration":
        """Standard-normal images: ranges that time like real ones but mean nothing for accuracy."""
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((count, *input_shape)).astype(np.float32), synthetic=True)


MAX_CALIBRATION_IMAGES = 64  # spread over the classes; an mbv3 at 224 px takes ~0.2 s an image on x86


def calibration_subset(images: np.ndarray, limit: int = MAX_CALIBRATION_IMAGES) -> np.ndarray:
    """At most `limit` images spread evenly over the set (bundles store them class by class)."""
    if len(images) <= limit:
        return images
    return images[np.linspace(0, len(images) - 1, limit).round().astype(int)]


def static_batches(images: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """`images` in contiguous chunks of exactly `batch` (a graph's static batch); the last is
    filled with images already seen, which leaves observed ranges unchanged."""
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, images[:batch - len(chunk)]])
        yield np.ascontiguousarray(chunk)


class Engine(Protocol):
    name: str
    threads: Optional[int]

    def run(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 images -> (N, num_classes) float32 logits."""
        ...


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
