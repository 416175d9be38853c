"""A FoldedNet as a torch module: the eager torch engine runs it, the ExecuTorch engine lowers it.

The module is the FoldedNet's ops translated one by one (`translate`): bilinear resize of the
input / plain biased convs (BN already folded) / activation / add / mean / linear.
For ExecuTorch it is built in XNNPACK form (`xnnpack=True`: the same `plan_conv` lowering as the
TFLite builder), and the whole graph lands in one XNNPACK delegate.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.folded import (XNNPACK_MAX_DW_TAPS, ConvPlan, FoldedBlock, FoldedConv, FoldedNet, GlobalAvgPool,
                                 Linear, Op, Resize, SqueezeExcite, plan_conv)
from edge_eas.torchnet.activations import torch_activation


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


class SqueezeExciteModule(nn.Module):
    """mean (keepdim) -> 1x1 conv -> ReLU -> 1x1 conv -> relu6(z + 3) / 6 -> multiply: ops
    XNNPACK delegates (hardsigmoid written out as add, hardtanh, mul)."""

    def __init__(self, op: SqueezeExcite) -> None:
        super().__init__()
        mid, c = op.reduce_w.shape
        self.register_buffer("w1", _tensor(op.reduce_w.reshape(mid, c, 1, 1)))
        self.register_buffer("b1", _tensor(op.reduce_b))
        self.register_buffer("w2", _tensor(op.expand_w.reshape(c, mid, 1, 1)))
        self.register_buffer("b2", _tensor(op.expand_b))

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
        self.stride, self.groups, self.act = c.stride, c.groups, torch_activation(c.act)
        for b, (lo, hi) in enumerate(plan.bands):
            self.register_buffer(f"w{b}", _tensor(plan.weight[:, :, lo:hi, :]))
        self.register_buffer("bias", _tensor(c.bias))

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
    """A FoldedBlock: its ops in order, plus the input when residual."""

    def __init__(self, body: list[nn.Module], residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class Bilinear(nn.Module):
    """A `Resize`: F.interpolate bilinear with half-pixel centres (align_corners=False), no
    antialiasing; `edge_eas.net.folded.bilinear_resize` is its numpy twin."""

    def __init__(self, out_size: int) -> None:
        super().__init__()
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)


class Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # keepdim mean over H, W is the form XNNPACK delegates; flatten afterwards.
        return torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1)


class AppModule(nn.Module):
    """A standalone export's edges around `net`: uint8 NHWC image in, `image * scale + shift` per
    channel (the normalisation), softmax probabilities out."""

    def __init__(self, net: nn.Module, scale: np.ndarray, shift: np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", torch.from_numpy(scale).reshape(1, 1, 1, -1))
        self.register_buffer("shift", torch.from_numpy(shift).reshape(1, 1, 1, -1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32) * self.scale + self.shift
        return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=1)


def _with_activation(layer: nn.Module, act: str) -> nn.Module:
    return layer if act == "none" else nn.Sequential(layer, torch_activation(act))


def _conv(op: FoldedConv, in_size: int, xnnpack: bool) -> nn.Module:
    if xnnpack and op.kernel > 1:
        plan = plan_conv(op, in_size, XNNPACK_MAX_DW_TAPS)
        if not (plan.same_padding and len(plan.bands) == 1 and plan.taps == op.kernel):
            return BandedConv(plan)
    layer = nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.padding, groups=op.groups, bias=True)
    layer.weight.data = _tensor(op.weight)
    layer.bias.data = _tensor(op.bias)
    return _with_activation(layer, op.act)


def translate(op: Op, in_size: int, xnnpack: bool = False) -> tuple[nn.Module, int]:
    """One op as a module on an in_size x in_size map, and the size it leaves."""
    if isinstance(op, FoldedConv):
        return _conv(op, in_size, xnnpack), op.out_size(in_size)
    if isinstance(op, FoldedBlock):
        body = []
        for sub in op.ops:
            module, in_size = translate(sub, in_size, xnnpack)
            body.append(module)
        return Block(body, op.residual), in_size
    if isinstance(op, GlobalAvgPool):
        return Pool(), 1
    if isinstance(op, Linear):
        linear = nn.Linear(op.weight.shape[1], op.weight.shape[0])
        linear.weight.data = _tensor(op.weight)
        linear.bias.data = _tensor(op.bias)
        return _with_activation(linear, op.act), 1
    if isinstance(op, SqueezeExcite):
        return SqueezeExciteModule(op), in_size
    if isinstance(op, Resize):
        if op.in_size != in_size:
            raise ValueError(f"{op.name}: resizes a {op.in_size}x{op.in_size} map, got {in_size}x{in_size}")
        return Bilinear(op.out_size), op.out_size
    raise TypeError(f"the torch engine has no translation for {type(op).__name__}")


def build_module(folded: FoldedNet, xnnpack: bool = False) -> nn.Module:
    """A float32 eval-mode module computing the same logits as `folded`.

    xnnpack=True lowers every kxk conv as `plan_conv` says (trimmed dead taps, explicit padding,
    7x7 depthwise split into <=25-tap row bands summed) - the graph ExecuTorch hands to XNNPACK,
    which has no fast 49-tap depthwise kernel. False: one plain nn.Conv2d per conv (eager torch).
    """
    modules = []
    size = folded.input_shape[1]
    for op in folded.ops:
        module, size = translate(op, size, xnnpack)
        modules.append(module)
    return nn.Sequential(*modules).eval().requires_grad_(False)


def build_app_module(folded: FoldedNet, scale: np.ndarray, shift: np.ndarray, xnnpack: bool = False) -> nn.Module:
    """`build_module` inside an `AppModule` (uint8 NHWC in, `* scale + shift`, softmax out)."""
    return AppModule(build_module(folded, xnnpack=xnnpack), scale, shift).eval().requires_grad_(False)
