"""Eager torch engine, and the FoldedNet -> torch module builder that the ExecuTorch engine exports.

The module holds plain biased convs (BN already folded), so eager torch, torch.export and the
XNNPACK partitioner all see the same small graph of conv / hardtanh / add / mean / linear.
torch is imported lazily (when a module or engine is built), never at import time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import EngineUnavailable, as_input
from ..extract import FoldedConv, FoldedNet


def import_torch():  # type: ignore[no-untyped-def]
    """torch, or EngineUnavailable saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"this engine needs torch: pip install torch ({exc})") from None
    return torch


def build_module(folded: FoldedNet):  # type: ignore[no-untyped-def]
    """A float32 eval-mode `torch.nn.Module` computing the same logits as `folded`."""
    torch = import_torch()
    nn = torch.nn

    def conv(c: FoldedConv) -> nn.Module:
        layer = nn.Conv2d(c.in_channels, c.out_channels, c.kernel, c.stride, c.padding, groups=c.groups, bias=True)
        layer.weight.data = torch.from_numpy(np.array(c.weight, dtype=np.float32))
        layer.bias.data = torch.from_numpy(np.array(c.bias, dtype=np.float32))
        return nn.Sequential(layer, nn.ReLU6()) if c.relu6 else layer

    class Block(nn.Module):
        def __init__(self, expand: FoldedConv, dw: FoldedConv, project: FoldedConv, residual: bool) -> None:
            super().__init__()
            self.body = nn.Sequential(conv(expand), conv(dw), conv(project))
            self.residual = residual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.residual else y

    class FoldedModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = conv(folded.stem)
            self.blocks = nn.Sequential(*[Block(b.expand, b.dw, b.project, b.residual) for b in folded.blocks])
            self.head = conv(folded.head)
            self.classifier = nn.Linear(folded.classifier_weight.shape[1], folded.num_classes)
            self.classifier.weight.data = torch.from_numpy(np.array(folded.classifier_weight, dtype=np.float32))
            self.classifier.bias.data = torch.from_numpy(np.array(folded.classifier_bias, dtype=np.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.head(self.blocks(self.stem(x)))
            # keepdim mean over H, W is the form XNNPACK delegates; flatten afterwards.
            return self.classifier(torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1))

    return FoldedModule().eval().requires_grad_(False)


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
