"""Hypothesis strategies for archs of a search space."""

from hypothesis import strategies as st

from edge_eas.space import Arch, SearchSpace


@st.composite
def archs(draw: st.DrawFn, space: SearchSpace) -> Arch:
    depths, kernels, expands = [], [], []
    for stage in space.stages:
        d = draw(st.sampled_from(stage.depth_choices))
        depths.append(d)
        kernels.append(tuple(draw(st.sampled_from(space.kernel_choices)) for _ in range(d)))
        expands.append(tuple(draw(st.sampled_from(space.expand_choices)) for _ in range(d)))
    return Arch(tuple(depths), tuple(kernels), tuple(expands))
