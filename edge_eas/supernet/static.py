"""Plain (static) sub-network modules: what `Supernet.extract(arch)` returns.

Built by walking the sub-network description (`edge_eas.subnet.subnet_layers`), so its module
names are that description's weight names, which `Supernet.extract_weights` fills.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..space import Arch, SearchSpace
from ..subnet import BN_EPS, BlockLayer, ConvLayer, LinearLayer, PoolLayer, subnet_layers


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm + activation, as one `ConvLayer` describes it."""

    def __init__(self, layer: ConvLayer) -> None:
        super().__init__()
        self.conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.kernel // 2,
                              groups=layer.groups, bias=False)
        self.bn = nn.BatchNorm2d(layer.out_channels, eps=BN_EPS)
        self.act = layer.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.act == "relu6":
            return F.relu6(x)
        if self.act != "none":
            raise ValueError(f"SubNet has no activation {self.act!r}")
        return x


class Block(nn.Module):
    """A `BlockLayer`: its layers in order (named by their last name part), plus the input
    when residual."""

    def __init__(self, layer: BlockLayer) -> None:
        super().__init__()
        self.parts = [sub.name.rsplit(".", 1)[-1] for sub in layer.body]
        for part, sub in zip(self.parts, layer.body):
            if not isinstance(sub, ConvLayer):
                raise TypeError(f"SubNet blocks hold convs, got {type(sub).__name__}")
            self.add_module(part, ConvBN(sub))
        self.residual = layer.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for part in self.parts:
            h = getattr(self, part)(h)
        return x + h if self.residual else h


class SubNet(nn.Module):
    """A standalone network for one arch of a space (optionally with a task-sliced classifier)."""

    def __init__(self, space: SearchSpace, arch: Arch, num_classes: int) -> None:
        super().__init__()
        self.space, self.arch = space, arch
        self.layers = subnet_layers(space, arch)
        blocks = []
        for layer in self.layers:
            if isinstance(layer, ConvLayer):
                self.add_module(layer.name, ConvBN(layer))
            elif isinstance(layer, BlockLayer):
                blocks.append(Block(layer))
            elif isinstance(layer, LinearLayer):
                self.add_module(layer.name, nn.Linear(layer.in_features, num_classes))
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything up to the classifier: the pooled features."""
        for layer in self.layers:
            if isinstance(layer, PoolLayer):
                return x.mean(dim=(2, 3))
            x = self.get_submodule(layer.name)(x)
        raise ValueError("a sub-network description has a pool layer")

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
