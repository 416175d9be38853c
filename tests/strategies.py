"""Shared test helpers: hypothesis strategies for archs, and non-trivial supernets."""

from dataclasses import replace

import numpy as np
import torch
from hypothesis import strategies as st

from edge_eas.net.space import Arch, SearchSpace
from edge_eas.supernet import Supernet


@st.composite
def archs(draw: st.DrawFn, space: SearchSpace) -> Arch:
    depths, kernels, expands = [], [], []
    for stage in space.stages:
        d = draw(st.sampled_from(stage.depth_choices))
        depths.append(d)
        kernels.append(tuple(draw(st.sampled_from(space.kernel_choices)) for _ in range(d)))
        expands.append(tuple(draw(st.sampled_from(space.expand_choices)) for _ in range(d)))
    widths = tuple(draw(st.sampled_from(stage.widths)) for stage in space.stages) if space.has_widths else ()
    side = draw(st.sampled_from(space.resolution_choices)) if space.resolution_choices else 0
    return Arch(tuple(depths), tuple(kernels), tuple(expands), widths, side)


def every_side_and_width(space: SearchSpace, seed: int) -> dict[str, Arch]:
    """The largest and the smallest arch, and at every input side two sampled archs whose stage
    widths alternate narrowest / full in opposite phase: every width of every stage at every side."""
    rng = np.random.default_rng(seed)
    archs = {"largest": space.largest(), "smallest": space.smallest()}
    for side in space.resolutions:
        for phase in (0, 1):
            widths = tuple(s.widths[0] if (i + phase) % 2 else s.widths[-1] for i, s in enumerate(space.stages))
            archs[f"r{side}-{phase}"] = replace(space.sample(rng), widths=widths, resolution=side)
    return archs


TEST_RESOLUTION = {"mbv3": 64}  # mbv3's layers at 64 px instead of 224: the same ops, ~12x less work


def space_for_tests(preset: str) -> SearchSpace:
    space = SearchSpace.preset(preset)
    return space.at_resolution(TEST_RESOLUTION[preset]) if preset in TEST_RESOLUTION else space


def perturbed_supernet(preset: str | SearchSpace, seed: int = 0, logit_scale: float = 1.0) -> Supernet:
    """A supernet (of a preset, or of a space given whole) in eval mode whose BN running
    statistics and affine parameters are not the defaults, so a slicing or BN-folding mistake
    changes the logits."""
    torch.manual_seed(seed)
    space = preset if isinstance(preset, SearchSpace) else space_for_tests(preset)
    net = Supernet(space, num_classes=10)
    rng = np.random.default_rng(seed)
    net.train()
    with torch.no_grad():
        for arch in (space.sample(rng), space.largest()):
            net(torch.randn(4, *space.input_shape) * 2 + 0.5, arch)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
        net.classifier.weight.mul_(logit_scale)
    return net.eval()
