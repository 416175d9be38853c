"""The on-device runtime: load a bundle, specialise it to a task and budget, run it.

Imports numpy only (torch, TFLite and ExecuTorch load lazily inside their engines):

    from edge_eas.runtime import Runtime
    rt = Runtime.load("model.eas")
    m = rt.specialize(classes=[3, 5, 7], budget="mflops=1.0")   # or "ms=4", "params=2e5"
    probs = m.predict(images)            # NCHW uint8 or float32 at the data set's native size
    stats = m.benchmark(warmup=10, runs=50)

The names below load on first use (PEP 562), so `python -m edge_eas.runtime` can show a sign
of life before numpy and the bundle reader are imported: that matters on a slow board.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_eas.runtime.api import Runtime
    from edge_eas.runtime.model import SpecializedModel
    from edge_eas.format.bundle_reader import BundleError
    from edge_eas.runtime.engines import ENGINE_NAMES, EngineUnavailable

__all__ = ["Runtime", "SpecializedModel", "BundleError", "EngineUnavailable", "ENGINE_NAMES"]

_WHERE = {"Runtime": ".api", "SpecializedModel": ".model", "BundleError": "edge_eas.format.bundle_reader",
          "EngineUnavailable": ".engines", "ENGINE_NAMES": ".engines"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
