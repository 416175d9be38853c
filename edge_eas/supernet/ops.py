"""Dynamic (elastic) layers in the Once-for-All style: each runs on an active slice of its
full-size weights — the first k channels, the centre crop of the kernel — so every
sub-network shares one set of parameters.

Each op also has a *soft* path for the generator: a mixture over choices driven by
per-decision probabilities, which equals the hard path when the probabilities are one-hot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.subnet import BN_EPS


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre kernel x kernel window of a (..., K, K) weight."""
    full = weight.shape[-1]
    start = (full - kernel) // 2
    return weight[..., start:start + kernel, start:start + kernel]


def kernel_masks(max_kernel: int, choices: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(n_choices, K, K) masks with ones on each choice's centre window."""
    masks = torch.zeros(len(choices), max_kernel, max_kernel, device=device)
    for i, k in enumerate(choices):
        start = (max_kernel - k) // 2
        masks[i, start:start + k, start:start + k] = 1.0
    return masks


class DynamicPointwiseConv(nn.Module):
    """1x1 conv whose input and output widths follow the active slice."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[:out_channels, : x.shape[1]].contiguous())


class DynamicDepthwiseConv(nn.Module):
    """Depthwise conv with elastic kernel (centre crop of the largest kernel) and channels."""

    def __init__(self, max_channels: int, max_kernel: int, stride: int) -> None:
        super().__init__()
        self.max_kernel = max_kernel
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, max_kernel, max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        c = x.shape[1]
        weight = centre_crop(self.weight[:c], kernel).contiguous()
        return F.conv2d(x, weight, stride=self.stride, padding=kernel // 2, groups=c)

    def forward_soft(self, x: torch.Tensor, kernel_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mixture over kernel sizes: the weight is the probability-weighted sum of centre crops."""
        c = x.shape[1]
        mix = torch.einsum("k,kij->ij", kernel_probs, masks)
        weight = self.weight[:c] * mix
        return F.conv2d(x, weight, stride=self.stride, padding=self.max_kernel // 2, groups=c)


class DynamicBatchNorm(nn.Module):
    """BatchNorm over the first c channels, sharing running statistics with the full layer."""

    def __init__(self, max_channels: int, momentum: float = 0.1, eps: float = BN_EPS) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels, momentum=momentum, eps=eps)
        # When set, normalise with the batch's own statistics and leave running stats untouched:
        # how the frozen supernet is run under the generator (a per-task BN recalibration).
        self.batch_stats_only = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        bn = self.bn
        if self.batch_stats_only:
            return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)
        if c == bn.num_features:
            return bn(x)
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            self.training, bn.momentum if bn.momentum is not None else 0.0, bn.eps)
