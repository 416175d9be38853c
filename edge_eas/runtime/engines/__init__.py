"""Inference engines for a `FoldedNet`: numpy (always), TFLite/LiteRT (float and int8), ExecuTorch, torch,
ONNX Runtime (its execution provider as a variant: onnxruntime:cuda).

`registry.ENGINES` describes them; this package only re-exports. It imports numpy only; each
engine imports its own library when it is created, so `available_engines()` and the numpy engine
work on a device where only numpy is installed.
Every engine takes NCHW float32 images and returns (N, num_classes) float32 logits.
"""

from __future__ import annotations

from edge_eas.runtime.engines.base import Calibration, Engine, EngineUnavailable, as_input
from edge_eas.runtime.engines.registry import (ENGINE_NAMES, ENGINES, EngineSpec, auto_engines, available_engines,
                                               create_engine, engine_available, engine_candidates, engine_choices, engine_spec, engine_warning,
                                               pick_engine, preferred_engines, split_engine)

__all__ = ["Calibration", "ENGINES", "ENGINE_NAMES", "Engine", "EngineSpec", "EngineUnavailable", "as_input", "auto_engines",
           "available_engines", "create_engine", "engine_available", "engine_candidates", "engine_choices", "engine_spec", "engine_warning", "pick_engine",
           "preferred_engines", "split_engine"]
