"""The elastic inverted-residual (MBConv) block: expand 1x1 -> depthwise kxk -> project 1x1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import DynamicBatchNorm, DynamicDepthwiseConv, DynamicPointwiseConv


class ElasticMBConv(nn.Module):
    """MBConv whose kernel (centre crop) and expand ratio (first in*e hidden channels) are elastic."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, max_kernel: int, max_expand: int) -> None:
        super().__init__()
        hidden = in_channels * max_expand
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = DynamicPointwiseConv(in_channels, hidden)
        self.expand_bn = DynamicBatchNorm(hidden)
        self.dw = DynamicDepthwiseConv(hidden, max_kernel, stride)
        self.dw_bn = DynamicBatchNorm(hidden)
        self.project = DynamicPointwiseConv(hidden, out_channels)
        self.project_bn = DynamicBatchNorm(out_channels)

    def forward(self, x: torch.Tensor, kernel: int, expand: int) -> torch.Tensor:
        hidden = self.in_channels * expand
        h = F.relu6(self.expand_bn(self.expand(x, hidden)))
        h = F.relu6(self.dw_bn(self.dw(h, kernel)))
        h = self.project_bn(self.project(h, self.out_channels))
        return x + h if self.residual else h

    def forward_soft(self, x: torch.Tensor, kernel_probs: torch.Tensor, kernel_masks: torch.Tensor,
                     channel_mask: torch.Tensor) -> torch.Tensor:
        """Full-width pass; kernel mixture in the depthwise weight, expand mixture as a channel mask."""
        h = F.relu6(self.expand_bn(self.expand(x, self.expand.weight.shape[0])))
        h = F.relu6(self.dw_bn(self.dw.forward_soft(h, kernel_probs, kernel_masks)))
        h = h * channel_mask.view(1, -1, 1, 1)
        h = self.project_bn(self.project(h, self.out_channels))
        return x + h if self.residual else h
