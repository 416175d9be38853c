"""Plain (static) sub-network modules: what `Supernet.extract(arch)` returns.

Built by walking the sub-network description (`edge_eas.net.subnet.subnet_layers`), so its module
names are that description's weight names, which `Supernet.extract_weights` fills.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import (BN_EPS, BlockLayer, ConvLayer, Layer, LinearLayer, PoolLayer, ResizeLayer, SELayer,
                                 subnet_layers)
from edge_eas.torchnet.activations import torch_activation
from edge_eas.torchnet.folded import Bilinear


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm + activation, as one `ConvLayer` describes it."""

    def __init__(self, layer: ConvLayer) -> None:
        super().__init__()
        self.conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.kernel // 2,
                              groups=layer.groups, bias=False)
        self.bn = nn.BatchNorm2d(layer.out_channels, eps=BN_EPS)
        self.act = torch_activation(layer.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """An `SELayer`: x * hardsigmoid(expand(relu(reduce(mean over H, W of x))))."""

    def __init__(self, layer: SELayer) -> None:
        super().__init__()
        self.reduce = nn.Linear(layer.channels, layer.mid)
        self.expand = nn.Linear(layer.mid, layer.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class DenseAct(nn.Module):
    """A `LinearLayer` with an activation (the mbv3 feature mix): `{name}.0.weight` would break
    the weight names, so the linear layer is this module itself."""

    def __init__(self, layer: LinearLayer) -> None:
        super().__init__()
        assert layer.out_features is not None
        self.weight = nn.Parameter(torch.empty(layer.out_features, layer.in_features))
        self.bias = nn.Parameter(torch.zeros(layer.out_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.act = torch_activation(layer.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.linear(x, self.weight, self.bias))


def _module(layer: Layer, num_classes: int) -> nn.Module:
    if isinstance(layer, ConvLayer):
        return ConvBN(layer)
    if isinstance(layer, SELayer):
        return SqueezeExcite(layer)
    if isinstance(layer, BlockLayer):
        return Block(layer)
    if isinstance(layer, LinearLayer):
        return nn.Linear(layer.in_features, num_classes) if layer.out_features is None else DenseAct(layer)
    if isinstance(layer, ResizeLayer):  # no weights: the native input at the side the arch runs at
        return Bilinear(layer.out_size)
    raise TypeError(f"SubNet has no module for {type(layer).__name__}")


class Block(nn.Module):
    """A `BlockLayer`: its layers in order (named by their last name part), plus the input
    when residual."""

    def __init__(self, layer: BlockLayer) -> None:
        super().__init__()
        self.parts = [sub.name.rsplit(".", 1)[-1] for sub in layer.body]
        for part, sub in zip(self.parts, layer.body):
            self.add_module(part, _module(sub, 0))
        self.residual = layer.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for part in self.parts:
            h = getattr(self, part)(h)
        return x + h if self.residual else h


class SubNet(nn.Module):
    """A standalone network for one arch of a space (optionally with a task-sliced classifier),
    its modules named as the sub-network description names their weights."""

    def __init__(self, space: SearchSpace, arch: Arch, num_classes: int) -> None:
        super().__init__()
        self.space, self.arch = space, arch
        self.layers = subnet_layers(space, arch)
        blocks = []
        for layer in self.layers:
            if isinstance(layer, BlockLayer) and layer.name.startswith("blocks."):
                blocks.append(Block(layer))
            elif not isinstance(layer, PoolLayer):
                self.add_module(layer.name, _module(layer, num_classes))
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the classifier (the pooled, and in mbv3 mixed, features)."""
        for layer in self.layers[:-1]:
            x = x.mean(dim=(2, 3)) if isinstance(layer, PoolLayer) else self.get_submodule(layer.name)(x)
        return x

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
