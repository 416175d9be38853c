"""The weight-sharing supernet: every arch of a `SearchSpace` is a slice of it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.net.slicing import slice_subnet
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.subnet import BN_EPS, head_layers, stem_layers
from edge_eas.supernet.blocks import ElasticMBConv
from edge_eas.supernet.ops import DynamicBatchNorm, kernel_masks
from edge_eas.torchnet.activations import torch_activation
from edge_eas.supernet.static import SubNet


@dataclass
class SoftArch:
    """Per-decision probabilities (one-hot for a hard arch) driving `Supernet.forward_soft`.

    depth: one (n_depth_choices,) tensor per stage; kernel: (max_blocks, n_kernels);
    expand: (max_blocks, n_expands); width: one (n_width_choices,) tensor per stage, or none
    when the space has no width choice; resolution: (n_resolutions,) or None. Block slots are
    in `space.block_slots()` order.
    """

    depth: list[torch.Tensor]
    kernel: torch.Tensor
    expand: torch.Tensor
    width: list[torch.Tensor] = field(default_factory=list)
    resolution: torch.Tensor | None = None

    @classmethod
    def from_decisions(cls, space: SearchSpace, per_decision: list[torch.Tensor]) -> "SoftArch":
        """From one tensor per decision, in the space's decision-vector order."""
        depth, kernel, expand = space.decisions.split(per_decision)
        width, resolution = space.decisions.split_extra(per_decision)
        return cls(depth, torch.stack(kernel), torch.stack(expand), width, resolution)

    @classmethod
    def from_arch(cls, space: SearchSpace, arch: Arch, device: torch.device | None = None) -> "SoftArch":
        sizes = space.decision_sizes()
        vec = space.encode(arch)
        return cls.from_decisions(space, [F.one_hot(torch.tensor(int(v)), n).float().to(device)
                                          for v, n in zip(vec, sizes)])


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """The native input at the side an arch runs at (`edge_eas.net.subnet.ResizeLayer`)."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


class Supernet(nn.Module):
    """Stem (-> fixed first block) -> elastic MBConv stages -> 1x1 head -> pool (-> feature mix)
    -> classifier over all classes."""

    def __init__(self, space: SearchSpace, num_classes: int) -> None:
        super().__init__()
        self.space, self.num_classes = space, num_classes
        stem = stem_layers(space)[0]  # the stem conv; the fixed first block (mbv3) follows it
        self.stem = nn.Conv2d(stem.in_channels, stem.out_channels, stem.kernel, stem.stride, stem.kernel // 2,
                              bias=False)
        self.stem_bn = nn.BatchNorm2d(stem.out_channels, eps=BN_EPS)
        self.stem_act = torch_activation(stem.act)
        self.first_config = space.first_block_config()
        self.first = None if self.first_config is None else ElasticMBConv.of(self.first_config)
        self.blocks = nn.ModuleList(ElasticMBConv.of(slot.largest) for slot in space.slot_configs())
        head, _, *linears = head_layers(space)  # head 1x1, pool, [feature mix], classifier
        self.head = nn.Conv2d(head.in_channels, head.out_channels, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head.out_channels, eps=BN_EPS)
        self.head_act = torch_activation(head.act)
        mix = linears[0] if len(linears) > 1 else None
        self.mix = None if mix is None else nn.Linear(mix.in_features, mix.out_features)
        self.mix_act = torch_activation(mix.act if mix is not None else "none")
        self.classifier = nn.Linear(linears[-1].in_features, num_classes)
        self.register_buffer("_kernel_masks", kernel_masks(space.max_kernel, space.kernel_choices, torch.device("cpu")),
                             persistent=False)

    # ---- hard (one arch) ------------------------------------------------------------------
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        return x if self.first is None else self.first(x, self.first_config)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        # the last stage may run narrower than the supernet (a width choice): its first inputs
        x = self.head(x) if x.shape[1] == self.head.in_channels else F.conv2d(x, self.head.weight[:, :x.shape[1]])
        x = self.head_act(self.head_bn(x)).mean(dim=(2, 3))
        return x if self.mix is None else self.mix_act(self.mix(x))

    def features(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self._stem(resize(x, self.space.arch_resolution(arch)))
        for slot, _, cfg in self.space.slots(arch):  # validates the arch
            x = self.blocks[slot](x, cfg)
        return self._head(x)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.classifier(self.features(x, arch))

    # ---- soft (generator) -----------------------------------------------------------------
    def forward_soft(self, x: torch.Tensor, soft: SoftArch, side: int | None = None) -> torch.Tensor:
        """Differentiable mixture over archs; equals `forward(x, arch)` when `soft` is one-hot.
        Depth, kernel, expand and width mix inside one full-width pass (widths as channel
        masks). Input sides cannot mix (maps of different sizes): the pass runs at `side`, or
        at the one-hot choice of `soft.resolution` with the logits multiplied by that entry (1
        in value, a straight-through gradient); the generator's trainer instead takes the
        expected loss over sides, one pass per side."""
        space = self.space
        one = torch.ones(1, dtype=x.dtype, device=x.device)
        res_gate: torch.Tensor | float = 1.0
        if side is None:
            res_gate, side = _hard_choice(soft.resolution, space.resolutions)
        x = self._stem(resize(x, side))
        in_widths, in_p = (space.stem_channels,), one
        for s, slots in groupby(space.slot_configs(), key=lambda slot: slot.stage):
            stage = space.stages[s]
            widths, w_p = stage.widths, (soft.width[s] if soft.width else one)
            out_mask = w_p @ _below(widths, stage.out_channels, x)
            stage_out = torch.zeros((), dtype=x.dtype, device=x.device)
            for slot in slots:
                block, i = self.blocks[slot.slot], slot.slot
                cin, cin_p = (in_widths, in_p) if slot.pos == 0 else (widths, w_p)
                joint = soft.expand[i][:, None] * cin_p[None, :]                     # (expand, input width)
                hidden = [e * w for e in space.expand_choices for w in cin]
                channel_mask = joint.reshape(-1) @ _below(hidden, block.in_channels * space.max_expand, x)
                se_mix = list(zip(hidden, joint.reshape(-1)))
                # the residual exists when the block's input and output widths are equal: always
                # inside a stage (one width decision), else with the probability that they match
                same = 1.0 if slot.pos > 0 else 0.0 if block.stride != 1 else sum(
                    (cin_p[a] * w_p[b] for a, u in enumerate(cin) for b, v in enumerate(widths) if u == v),
                    torch.zeros((), dtype=x.dtype, device=x.device))
                x = block.forward_soft(x, soft.kernel[i], self._kernel_masks.to(x.dtype), channel_mask, se_mix,
                                       out_mask, same)
                depth_index = [j for j, d in enumerate(stage.depth_choices) if d == slot.pos + 1]
                if depth_index:
                    stage_out = stage_out + soft.depth[s][depth_index[0]] * x
            x = stage_out
            in_widths, in_p = widths, w_p
        return self.classifier(self._head(x)) * res_gate

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


def _hard_choice(onehot: torch.Tensor | None, choices: tuple[int, ...]) -> tuple[torch.Tensor | float, int]:
    """(the chosen entry of a one-hot straight-through sample, the choice it picks); (1.0, the
    largest choice) when the decision does not exist in the space."""
    if onehot is None:
        return 1.0, choices[-1]
    index = int(onehot.argmax())
    return onehot[index], choices[index]


def _below(limits: Sequence[int], channels: int, like: torch.Tensor) -> torch.Tensor:
    """(len(limits), channels): 1 where channel c < limit, one row per limit."""
    lim = torch.tensor(list(limits), device=like.device).view(-1, 1)
    return (torch.arange(channels, device=like.device).view(1, -1) < lim).to(like.dtype)
