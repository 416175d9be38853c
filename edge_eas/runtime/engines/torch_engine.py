"""Eager torch engine, and the FoldedNet -> torch module builders the ExecuTorch engine exports.

The modules themselves live in `edge_eas.torchnet.folded` (torch at import time); this module
imports torch, and that one, only when a module or engine is built, so that importing it, and
`engine_available("torch")`, work on a device without torch.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edge_eas.net.folded import FoldedNet
from edge_eas.runtime.app_io import AppIO
from edge_eas.runtime.engines.base import EngineUnavailable, as_input


def import_torch():  # type: ignore[no-untyped-def]
    """torch, or EngineUnavailable saying it is missing."""
    try:
        import torch  # lazy: the device runtime imports without torch; only this opt-in engine needs it
    except ImportError as exc:
        raise EngineUnavailable(f"this engine needs torch ({exc})") from None
    return torch


def build_module(folded: FoldedNet, xnnpack: bool = False) -> Any:
    """A float32 eval-mode `torch.nn.Module` computing the same logits as `folded`; xnnpack=True
    is the form ExecuTorch lowers (see edge_eas.torchnet.folded.build_module)."""
    import_torch()
    from edge_eas.torchnet import folded as torch_folded  # lazy: imports torch

    return torch_folded.build_module(folded, xnnpack=xnnpack)


def build_app_module(folded: FoldedNet, app: AppIO, xnnpack: bool = False) -> Any:
    """`build_module` with a standalone export's edges (runtime/app_io.py): uint8 NHWC image in,
    normalised inside, softmax probabilities out."""
    import_torch()
    from edge_eas.torchnet import folded as torch_folded  # lazy: imports torch

    scale, shift = app.scale_and_shift()
    return torch_folded.build_app_module(folded, scale, shift, xnnpack=xnnpack)


class TorchEngine:
    """Eager torch on CPU under inference_mode. `threads` sets torch's process-wide intra-op pool."""

    name = "torch"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None) -> None:
        self._torch = import_torch()
        if threads is not None:
            self._torch.set_num_threads(threads)
        self.threads: Optional[int] = self._torch.get_num_threads()
        self.folded = folded
        self.batch_size = batch_size
        self.module = build_module(folded)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(x)).numpy()
