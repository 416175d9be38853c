"""The elastic inverted-residual (MBConv) block: expand 1x1 -> depthwise kxk -> [squeeze-excite]
-> project 1x1, with the block's activation after expand and depthwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.block import BlockConfig, se_channels
from edge_eas.supernet.ops import DynamicBatchNorm, DynamicDepthwiseConv, DynamicPointwiseConv
from edge_eas.torchnet.activations import torch_activation


class DynamicSE(nn.Module):
    """Squeeze-excite over the first c channels (OFA's DynamicSE): its bottleneck is
    se_channels(c) wide, taken as the first rows of the reduce layer and the first columns of
    the expand layer, so every expand ratio shares the weights of the smaller ones."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        mid = se_channels(max_channels)
        self.reduce = nn.Linear(max_channels, mid)
        self.expand = nn.Linear(mid, max_channels)

    def gate(self, pooled: torch.Tensor, channels: int) -> torch.Tensor:
        """(N, channels) gates from the first `channels` of the pooled (N, >= channels) map."""
        c, mid = channels, se_channels(channels)
        h = F.relu(F.linear(pooled[:, :c], self.reduce.weight[:mid, :c], self.reduce.bias[:mid]))
        return F.hardsigmoid(F.linear(h, self.expand.weight[:c, :mid], self.expand.bias[:c]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3)), x.shape[1])[:, :, None, None]

    def forward_soft(self, x: torch.Tensor, mix: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """The SEs of each hidden width mixed by its probability ((width, p) pairs; each gate zero
        beyond its width, where the channel mask has already zeroed the map): equals `forward`
        on a one-hot choice."""
        pooled = x.mean(dim=(2, 3))
        gate = torch.zeros_like(pooled)
        for width, p in mix:
            gate = gate + p * F.pad(self.gate(pooled, width), (0, pooled.shape[1] - width))
        return x * gate[:, :, None, None]


class ElasticMBConv(nn.Module):
    """MBConv whose kernel (centre crop) and expand ratio (first in*e hidden channels) are elastic.
    With max_expand 1 there is no expand conv (mbv3's fixed first block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, max_kernel: int, max_expand: int,
                 act: str = "relu6", se: bool = False) -> None:
        super().__init__()
        hidden = in_channels * max_expand
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.max_kernel, self.max_expand = max_kernel, max_expand
        self.residual = stride == 1 and in_channels == out_channels
        self.act = torch_activation(act)
        if max_expand != 1:
            self.expand = DynamicPointwiseConv(in_channels, hidden)
            self.expand_bn = DynamicBatchNorm(hidden)
        self.dw = DynamicDepthwiseConv(hidden, max_kernel, stride)
        self.dw_bn = DynamicBatchNorm(hidden)
        self.se = DynamicSE(hidden) if se else None
        self.project = DynamicPointwiseConv(hidden, out_channels)
        self.project_bn = DynamicBatchNorm(out_channels)

    @classmethod
    def of(cls, largest: BlockConfig) -> "ElasticMBConv":
        """The elastic block that runs every config up to `largest` (a slot's largest config)."""
        return cls(largest.in_channels, largest.out_channels, largest.stride, largest.kernel, largest.expand,
                   largest.act, largest.se)

    def _expand(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        return x if self.max_expand == 1 else self.act(self.expand_bn(self.expand(x, hidden)))

    def forward(self, x: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
        """The block as `cfg` runs it: its kernel, hidden width (input width x expand), output
        width and residual."""
        h = self._expand(x, cfg.hidden)
        h = self.act(self.dw_bn(self.dw(h, cfg.kernel)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project(h, cfg.out_channels))
        return x + h if cfg.residual else h

    def forward_soft(self, x: torch.Tensor, kernel_probs: torch.Tensor, kernel_masks: torch.Tensor,
                     channel_mask: torch.Tensor, se_mix: list[tuple[int, torch.Tensor]], out_mask: torch.Tensor,
                     residual: torch.Tensor | float) -> torch.Tensor:
        """The full-width block with every choice a mask: kernel mixture in the depthwise weight,
        hidden width (expand x input width) as a channel mask (with squeeze-excite, a mixture of
        each hidden width's SE), output width as a channel mask, and the residual weighted by
        the probability that it exists (input and output widths equal). BN is per channel, so on
        one-hot choices this equals `forward` on the narrow block."""
        h = self._expand(x, self.in_channels * self.max_expand)
        h = self.act(self.dw_bn(self.dw.forward_soft(h, kernel_probs, kernel_masks)))
        h = h * channel_mask.view(1, -1, 1, 1)
        if self.se is not None:
            h = self.se.forward_soft(h, se_mix)
        h = self.project_bn(self.project(h, self.out_channels)) * out_mask.view(1, -1, 1, 1)
        if self.stride != 1:
            return h
        # the full input and output widths may differ (a wider previous stage) while the chosen
        # ones match: the input, zero beyond its chosen width, cropped or padded to the output's
        cin, cout = x.shape[1], h.shape[1]
        skip = x[:, :cout] if cin >= cout else F.pad(x, (0, 0, 0, 0, 0, cout - cin))
        return h + residual * skip
