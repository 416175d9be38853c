"""Eager torch engine, and the FoldedNet -> torch module builder that the ExecuTorch engine exports.

The module holds plain biased convs (BN already folded): conv / hardtanh / add / mean / linear.
For ExecuTorch it is built in XNNPACK form (`xnnpack=True`: the same `plan_conv` lowering as the
TFLite builder), and the whole graph lands in one XNNPACK delegate.
torch is imported lazily (when a module or engine is built), never at import time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import EngineUnavailable, as_input
from ..folded import XNNPACK_MAX_DW_TAPS, ConvPlan, FoldedBlock, FoldedConv, FoldedNet, plan_conv


def import_torch():  # type: ignore[no-untyped-def]
    """torch, or EngineUnavailable saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"this engine needs torch: pip install torch ({exc})") from None
    return torch


def build_module(folded: FoldedNet, xnnpack: bool = False):  # type: ignore[no-untyped-def]
    """A float32 eval-mode `torch.nn.Module` computing the same logits as `folded`.

    xnnpack=True lowers every kxk conv as `plan_conv` says (trimmed dead taps, explicit padding,
    7x7 depthwise split into <=25-tap row bands summed) - the graph ExecuTorch hands to XNNPACK,
    which has no fast 49-tap depthwise kernel. False: one plain nn.Conv2d per conv (eager torch).
    """
    torch = import_torch()
    nn = torch.nn
    F = torch.nn.functional

    class BandedConv(nn.Module):
        """pad -> per row band: slice rows, VALID conv -> sum (+ bias in band 0) -> ReLU6."""

        def __init__(self, plan: ConvPlan) -> None:
            super().__init__()
            c = plan.conv
            self.pads = (plan.pad_before, plan.pad_after) * 2
            # None: the band reads every padded row (a no-op slice would export as an undelegated alias)
            self.rows = [None if plan.band_rows(band) == (0, plan.padded_size) else plan.band_rows(band)
                         for band in plan.bands]
            self.stride, self.groups, self.relu6 = c.stride, c.groups, c.relu6
            for b, (lo, hi) in enumerate(plan.bands):
                self.register_buffer(f"w{b}", _tensor(torch, plan.weight[:, :, lo:hi, :]))
            self.register_buffer("bias", _tensor(torch, c.bias))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if any(self.pads):
                x = F.pad(x, self.pads)
            y = None
            for b, rows in enumerate(self.rows):
                band = x if rows is None else x[:, :, rows[0]:rows[0] + rows[1], :]
                part = F.conv2d(band, getattr(self, f"w{b}"),
                                self.bias if b == 0 else None, self.stride, 0, 1, self.groups)
                y = part if y is None else y + part
            return F.relu6(y) if self.relu6 else y

    def conv(c: FoldedConv, in_size: int) -> tuple[nn.Module, int]:
        out_size = c.out_size(in_size)
        if xnnpack and c.kernel > 1:
            plan = plan_conv(c, in_size, XNNPACK_MAX_DW_TAPS)
            if not (plan.same_padding and len(plan.bands) == 1 and plan.taps == c.kernel):
                return BandedConv(plan), out_size
        layer = nn.Conv2d(c.in_channels, c.out_channels, c.kernel, c.stride, c.padding, groups=c.groups, bias=True)
        layer.weight.data = _tensor(torch, c.weight)
        layer.bias.data = _tensor(torch, c.bias)
        return (nn.Sequential(layer, nn.ReLU6()) if c.relu6 else layer), out_size

    class Block(nn.Module):
        def __init__(self, block: FoldedBlock, in_size: int) -> None:
            super().__init__()
            expand, _ = conv(block.expand, in_size)
            dw, self.out_size = conv(block.dw, in_size)
            project, _ = conv(block.project, self.out_size)
            self.body = nn.Sequential(expand, dw, project)
            self.residual = block.residual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.residual else y

    class FoldedModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, size = conv(folded.stem, folded.input_shape[1])
            blocks = []
            for b in folded.blocks:
                blocks.append(Block(b, size))
                size = blocks[-1].out_size
            self.blocks = nn.Sequential(*blocks)
            self.head, _ = conv(folded.head, size)
            self.classifier = nn.Linear(folded.classifier_weight.shape[1], folded.num_classes)
            self.classifier.weight.data = _tensor(torch, folded.classifier_weight)
            self.classifier.bias.data = _tensor(torch, folded.classifier_bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.head(self.blocks(self.stem(x)))
            # keepdim mean over H, W is the form XNNPACK delegates; flatten afterwards.
            return self.classifier(torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1))

    return FoldedModule().eval().requires_grad_(False)


def _tensor(torch, array: np.ndarray):  # type: ignore[no-untyped-def]
    return torch.from_numpy(np.array(array, dtype=np.float32))


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
