"""Plain (static) sub-network modules: what `Supernet.extract(arch)` returns.

Built from a space + arch alone and filled from `Supernet.extract_weights(arch)`, so the
weight names here are the contract shared with the bundle and the device runtime.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..space import Arch, SearchSpace


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm + optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.expand = ConvBN(cin, hidden, 1)
        self.dw = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(self.dw(self.expand(x)))
        return x + h if self.residual else h


class SubNet(nn.Module):
    """A standalone network for one arch of a space (optionally with a task-sliced classifier)."""

    def __init__(self, space: SearchSpace, arch: Arch, num_classes: int) -> None:
        super().__init__()
        self.space, self.arch = space, arch
        self.stem = ConvBN(space.in_channels, space.stem_channels, 3, space.stem_stride)
        self.blocks = nn.Sequential(*[MBConv(b.in_channels, b.out_channels, b.kernel, b.expand, b.stride)
                                      for b in space.active_blocks(arch)])
        self.head = ConvBN(space.last_channels, space.head_channels, 1)
        self.classifier = nn.Linear(space.head_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def recalibrate_bn(model: nn.Module, batches: Sequence[torch.Tensor] | "torch.utils.data.DataLoader") -> None:
    """Re-estimate every BatchNorm's running statistics for this exact network (OFA-style):
    cumulative average over the given batches, then back to eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(bn.momentum,) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = model.training
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn, (momentum,) in zip(bns, saved):
        bn.momentum = momentum
    model.train(was_training)
