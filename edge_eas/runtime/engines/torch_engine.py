"""Eager torch engine, and the FoldedNet -> torch module builder that the ExecuTorch engine exports.

The module is the FoldedNet's ops translated one by one (`translate`): plain biased convs (BN
already folded) / hardtanh / add / mean / linear.
For ExecuTorch it is built in XNNPACK form (`xnnpack=True`: the same `plan_conv` lowering as the
TFLite builder), and the whole graph lands in one XNNPACK delegate.
torch is imported lazily (when a module or engine is built), never at import time.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_eas.runtime.engines import EngineUnavailable, as_input
from edge_eas.runtime.app_io import AppIO
from edge_eas.net.folded import (XNNPACK_MAX_DW_TAPS, ConvPlan, FoldedBlock, FoldedConv, FoldedNet, GlobalAvgPool, Linear, Op,
                      SqueezeExcite, plan_conv)


def import_torch():  # type: ignore[no-untyped-def]
    """torch, or EngineUnavailable saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailable(f"this engine needs torch: pip install torch ({exc})") from None
    return torch


def torch_activation(act: str):  # type: ignore[no-untyped-def]
    """The torch module for one of space.ACTIVATIONS (shared with the host's SubNet)."""
    nn = import_torch().nn
    modules = {"relu6": nn.ReLU6, "relu": nn.ReLU, "hswish": nn.Hardswish, "none": nn.Identity}
    if act not in modules:
        raise ValueError(f"no torch activation {act!r}")
    return modules[act]()


def build_module(folded: FoldedNet, xnnpack: bool = False):  # type: ignore[no-untyped-def]
    """A float32 eval-mode `torch.nn.Module` computing the same logits as `folded`.

    xnnpack=True lowers every kxk conv as `plan_conv` says (trimmed dead taps, explicit padding,
    7x7 depthwise split into <=25-tap row bands summed) - the graph ExecuTorch hands to XNNPACK,
    which has no fast 49-tap depthwise kernel. False: one plain nn.Conv2d per conv (eager torch).
    """
    torch = import_torch()
    nn = torch.nn
    F = torch.nn.functional

    activation = torch_activation

    class SqueezeExciteModule(nn.Module):
        """mean (keepdim) -> 1x1 conv -> ReLU -> 1x1 conv -> relu6(z + 3) / 6 -> multiply: ops
        XNNPACK delegates (hardsigmoid written out as add, hardtanh, mul)."""

        def __init__(self, op: SqueezeExcite) -> None:
            super().__init__()
            mid, c = op.reduce_w.shape
            self.register_buffer("w1", _tensor(torch, op.reduce_w.reshape(mid, c, 1, 1)))
            self.register_buffer("b1", _tensor(torch, op.reduce_b))
            self.register_buffer("w2", _tensor(torch, op.expand_w.reshape(c, mid, 1, 1)))
            self.register_buffer("b2", _tensor(torch, op.expand_b))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = F.relu(F.conv2d(x.mean(dim=(2, 3), keepdim=True), self.w1, self.b1))
            return x * (F.relu6(F.conv2d(s, self.w2, self.b2) + 3.0) * (1.0 / 6.0))

    class BandedConv(nn.Module):
        """pad -> per row band: slice rows, VALID conv -> sum (+ bias in band 0) -> activation."""

        def __init__(self, plan: ConvPlan) -> None:
            super().__init__()
            c = plan.conv
            self.pads = (plan.pad_before, plan.pad_after) * 2
            # None: the band reads every padded row (a no-op slice would export as an undelegated alias)
            self.rows = [None if plan.band_rows(band) == (0, plan.padded_size) else plan.band_rows(band)
                         for band in plan.bands]
            self.stride, self.groups, self.act = c.stride, c.groups, activation(c.act)
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
            return self.act(y)

    class Block(nn.Module):
        def __init__(self, body: list[nn.Module], residual: bool) -> None:
            super().__init__()
            self.body = nn.Sequential(*body)
            self.residual = residual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.residual else y

    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # keepdim mean over H, W is the form XNNPACK delegates; flatten afterwards.
            return torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1)

    def translate(op: Op, in_size: int) -> tuple[nn.Module, int]:
        """One op as a module on an in_size x in_size map, and the size it leaves."""
        if isinstance(op, FoldedConv):
            out_size = op.out_size(in_size)
            if xnnpack and op.kernel > 1:
                plan = plan_conv(op, in_size, XNNPACK_MAX_DW_TAPS)
                if not (plan.same_padding and len(plan.bands) == 1 and plan.taps == op.kernel):
                    return BandedConv(plan), out_size
            layer = nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.padding, groups=op.groups,
                              bias=True)
            layer.weight.data = _tensor(torch, op.weight)
            layer.bias.data = _tensor(torch, op.bias)
            return (layer if op.act == "none" else nn.Sequential(layer, activation(op.act))), out_size
        if isinstance(op, FoldedBlock):
            body = []
            for sub in op.ops:
                module, in_size = translate(sub, in_size)
                body.append(module)
            return Block(body, op.residual), in_size
        if isinstance(op, GlobalAvgPool):
            return Pool(), 1
        if isinstance(op, Linear):
            linear = nn.Linear(op.weight.shape[1], op.weight.shape[0])
            linear.weight.data = _tensor(torch, op.weight)
            linear.bias.data = _tensor(torch, op.bias)
            return (linear if op.act == "none" else nn.Sequential(linear, activation(op.act))), 1
        if isinstance(op, SqueezeExcite):
            return SqueezeExciteModule(op), in_size
        raise TypeError(f"the torch engine has no translation for {type(op).__name__}")

    modules = []
    size = folded.input_shape[1]
    for op in folded.ops:
        module, size = translate(op, size)
        modules.append(module)
    return nn.Sequential(*modules).eval().requires_grad_(False)


def build_app_module(folded: FoldedNet, app: AppIO, xnnpack: bool = False):  # type: ignore[no-untyped-def]
    """`build_module` with a standalone export's edges (runtime/app_io.py): uint8 NHWC image in,
    normalised inside, softmax probabilities out."""
    torch = import_torch()
    net = build_module(folded, xnnpack=xnnpack)
    scale, shift = app.scale_and_shift()

    class AppModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("scale", torch.from_numpy(scale).reshape(1, 1, 1, -1))
            self.register_buffer("shift", torch.from_numpy(shift).reshape(1, 1, 1, -1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = image.to(torch.float32) * self.scale + self.shift
            return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=1)

    return AppModule().eval().requires_grad_(False)


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
