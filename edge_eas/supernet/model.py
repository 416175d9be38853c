"""The weight-sharing supernet: every arch of a `SearchSpace` is a slice of it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.slicing import slice_subnet
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import BN_EPS
from edge_eas.supernet.blocks import ElasticMBConv
from edge_eas.supernet.static import activation
from edge_eas.supernet.ops import DynamicBatchNorm, kernel_masks
from edge_eas.supernet.static import SubNet


@dataclass
class SoftArch:
    """Per-decision probabilities (one-hot for a hard arch) driving `Supernet.forward_soft`.

    depth: one (n_depth_choices,) tensor per stage; kernel: (max_blocks, n_kernels);
    expand: (max_blocks, n_expands). Block slots are in `space.block_slots()` order.
    """

    depth: list[torch.Tensor]
    kernel: torch.Tensor
    expand: torch.Tensor

    @classmethod
    def from_arch(cls, space: SearchSpace, arch: Arch, device: torch.device | None = None) -> "SoftArch":
        sizes = space.decision_sizes()
        vec = space.encode(arch)
        onehots = [F.one_hot(torch.tensor(int(v)), n).float().to(device) for v, n in zip(vec, sizes)]
        depth, kernel, expand = space.decisions.split(onehots)
        return cls(depth, torch.stack(kernel), torch.stack(expand))


class Supernet(nn.Module):
    """Stem (-> fixed first block) -> elastic MBConv stages -> 1x1 head -> pool (-> feature mix)
    -> classifier over all classes."""

    def __init__(self, space: SearchSpace, num_classes: int) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.stem = nn.Conv2d(space.in_channels, space.stem_channels, 3, space.stem_stride, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(space.stem_channels, eps=BN_EPS)
        self.stem_act = activation(space.stem_act)
        first = space.first_block_config()
        self.first = None if first is None else ElasticMBConv(first.in_channels, first.out_channels, first.stride,
                                                               first.kernel, first.expand, first.act, first.se)
        self.blocks = nn.ModuleList(
            ElasticMBConv(cin, cout, stride, space.max_kernel, space.max_expand, space.stages[s].act,
                          space.stages[s].se)
            for s, _, cin, cout, stride in space.block_slots())
        self.head = nn.Conv2d(space.last_channels, space.head_channels, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(space.head_channels, eps=BN_EPS)
        self.head_act = activation(space.head_act)
        self.mix = nn.Linear(space.head_channels, space.mix_channels) if space.mix_channels else None
        self.classifier = nn.Linear(space.mix_channels or space.head_channels, num_classes)
        self.register_buffer("_kernel_masks", kernel_masks(space.max_kernel, space.kernel_choices, torch.device("cpu")),
                             persistent=False)

    # ---- hard (one arch) ------------------------------------------------------------------
    def _stage_slices(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for stage in self.space.stages:
            out.append((start, stage.max_depth))
            start += stage.max_depth
        return out

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        return x if self.first is None else self.first(x, self.first.max_kernel, self.first.max_expand)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_act(self.head_bn(self.head(x))).mean(dim=(2, 3))
        return x if self.mix is None else F.hardswish(self.mix(x))

    def features(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        self.space.validate(arch)
        x = self._stem(x)
        for s, (start, _) in enumerate(self._stage_slices()):
            for b in range(arch.depths[s]):
                x = self.blocks[start + b](x, arch.kernels[s][b], arch.expands[s][b])
        return self._head(x)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.classifier(self.features(x, arch))

    # ---- soft (generator) -----------------------------------------------------------------
    def forward_soft(self, x: torch.Tensor, soft: SoftArch) -> torch.Tensor:
        """Differentiable mixture over archs; equals `forward(x, arch)` when `soft` is one-hot."""
        space = self.space
        expand_choices = torch.tensor(space.expand_choices, dtype=x.dtype, device=x.device)
        x = self._stem(x)
        for s, (start, max_depth) in enumerate(self._stage_slices()):
            depth_probs = soft.depth[s]
            stage_out = torch.zeros((), dtype=x.dtype, device=x.device)
            for b in range(max_depth):
                block = self.blocks[start + b]
                hidden = block.in_channels * space.max_expand
                # channel c of the hidden layer is active when expand * in_channels > c
                limits = expand_choices * block.in_channels
                active = (torch.arange(hidden, device=x.device).view(1, -1) < limits.view(-1, 1)).to(x.dtype)
                channel_mask = soft.expand[start + b] @ active
                x = block.forward_soft(x, soft.kernel[start + b], self._kernel_masks.to(x.dtype), channel_mask,
                                       soft.expand[start + b], space.expand_choices)
                depth_index = [i for i, d in enumerate(space.stages[s].depth_choices) if d == b + 1]
                if depth_index:
                    stage_out = stage_out + depth_probs[depth_index[0]] * x
            x = stage_out
        return self.classifier(self._head(x))

    @contextmanager
    def batch_stats(self) -> Iterator[None]:
        """Normalise with each batch's own statistics, leaving running statistics untouched."""
        bns = [m for m in self.modules() if isinstance(m, DynamicBatchNorm)]
        plain = [self.stem_bn, self.head_bn]
        saved = [bn.training for bn in plain]
        for bn in bns:
            bn.batch_stats_only = True
        for bn in plain:  # plain BN in train mode with momentum 0 keeps its running stats
            bn.train()
        momenta = [bn.momentum for bn in plain]
        for bn in plain:
            bn.momentum = 0.0
        try:
            yield
        finally:
            for bn in bns:
                bn.batch_stats_only = False
            for bn, was, m in zip(plain, saved, momenta):
                bn.train(was)
                bn.momentum = m

    # ---- extraction -----------------------------------------------------------------------
    def extract_weights(self, arch: Arch, classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Copies of the active slices, named as in `edge_eas.net.subnet` (and so `SubNet`): the
        device's own `slice_subnet` applied to this supernet's state; `classes` keeps only
        those logits."""
        state = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        return {k: v.copy() for k, v in slice_subnet(state, self.space, arch, classes).items()}

    def extract(self, arch: Arch, classes: Sequence[int] | None = None) -> SubNet:
        """A standalone module with copies of the weights; eval output equals `self(x, arch)`."""
        self.space.validate(arch)
        n = self.num_classes if classes is None else len(classes)
        sub = SubNet(self.space, arch, n)
        state = {k: torch.from_numpy(v) for k, v in self.extract_weights(arch, classes).items()}
        missing, unexpected = sub.load_state_dict(state, strict=False)
        real_missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if real_missing or unexpected:
            raise RuntimeError(f"extraction mismatch: missing {real_missing}, unexpected {unexpected}")
        return sub.to(next(self.parameters()).device).train(self.training)
